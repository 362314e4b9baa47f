/* data.augment's transforms on small images: integer shifts and flips copy pixels exactly,
 * rotation keeps a centred round blob, cutout zeroes one square, noise and dropout have the
 * asked-for strength, brightness and contrast are one scale per row within their range, and
 * a seed gives the same draws however a batch is split. */
#include <math.h>
#include <string.h>

#include "data/data.h"
#include "tests/testutil.h"

#define H 7
#define W 9
#define D (H * W)

static void ramp(float *img)
{
    for (int i = 0; i < D; i++)
        img[i] = (float)(i + 1);
}

static void augment_one(const dml_augment *a, float *img, uint64_t seed)
{
    float scratch[D];
    dml_rng rng;
    dml_rng_seed(&rng, seed);
    dml_augment_rows(a, dml_rng_u64(&rng), 0, img, 1, D, scratch);
}

/* Every draw is the image moved by some (tx, ty) in [-2, 2]^2 with zeros brought in, and over
 * many draws every one of the 25 moves occurs. */
static void test_shift_is_an_exact_translation(void **state)
{
    (void)state;
    dml_augment a = {.height = H, .width = W, .shift = 2};
    int seen[5][5] = {{0}};
    for (uint64_t seed = 0; seed < 400; seed++) {
        float img[D], src[D];
        ramp(src);
        memcpy(img, src, sizeof img);
        augment_one(&a, img, seed);
        int matched = 0;
        for (int ty = -2; ty <= 2 && !matched; ty++)
            for (int tx = -2; tx <= 2 && !matched; tx++) {
                int same = 1;
                for (int y = 0; y < H && same; y++)
                    for (int x = 0; x < W && same; x++) {
                        int sx = x - tx, sy = y - ty;
                        float want = sx >= 0 && sx < W && sy >= 0 && sy < H ? src[sy * W + sx] : 0;
                        same = img[y * W + x] == want;
                    }
                if (same) {
                    matched = 1;
                    seen[ty + 2][tx + 2]++;
                }
            }
        assert_true(matched);
    }
    for (int i = 0; i < 25; i++)
        assert_true(seen[i / 5][i % 5] > 0);
}

static void test_flip_mirrors_rows(void **state)
{
    (void)state;
    dml_augment a = {.height = H, .width = W, .flip = 1.0f};
    float img[D], src[D];
    ramp(src);
    memcpy(img, src, sizeof img);
    augment_one(&a, img, 1);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            assert_true(img[y * W + x] == src[y * W + (W - 1 - x)]);
}

/* A round blob at the centre (of an odd-sided image) hardly changes under any rotation. */
static void test_rotation_keeps_a_centred_blob(void **state)
{
    (void)state;
    enum { S = 15 };
    float img[S * S], src[S * S], scratch[S * S];
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            src[y * S + x] = expf(-((x - 7.0f) * (x - 7.0f) + (y - 7.0f) * (y - 7.0f)) / 8.0f);
    dml_augment a = {.height = S, .width = S, .rotate = 90.0f};
    dml_rng rng;
    dml_rng_seed(&rng, 3);
    for (int k = 0; k < 20; k++) {
        memcpy(img, src, sizeof img);
        dml_augment_rows(&a, dml_rng_u64(&rng), 0, img, 1, S * S, scratch);
        float worst = 0.0f;
        for (int i = 0; i < S * S; i++)
            worst = fmaxf(worst, fabsf(img[i] - src[i]));
        assert_true(worst < 0.05f); /* bilinear sampling of a smooth blob */
        assert_float_equal(img[7 * S + 7], 1.0f, 1e-6);
    }
}

static void test_cutout_zeroes_one_square(void **state)
{
    (void)state;
    dml_augment a = {.height = H, .width = W, .cutout = 3};
    for (uint64_t seed = 0; seed < 50; seed++) {
        float img[D];
        for (int i = 0; i < D; i++)
            img[i] = 1.0f;
        augment_one(&a, img, seed);
        int zeros = 0, x0 = W, x1 = -1, y0 = H, y1 = -1;
        for (int i = 0; i < D; i++)
            if (img[i] == 0.0f) {
                zeros++;
                x0 = i % W < x0 ? i % W : x0, x1 = i % W > x1 ? i % W : x1;
                y0 = i / W < y0 ? i / W : y0, y1 = i / W > y1 ? i / W : y1;
            } else {
                assert_true(img[i] == 1.0f);
            }
        assert_true(zeros >= 1 && zeros <= 9);
        assert_int_equal(zeros, (x1 - x0 + 1) * (y1 - y0 + 1)); /* one rectangle, clipped */
    }
}

static void test_noise_and_dropout_strength(void **state)
{
    (void)state;
    enum { N = 200, WIDE = 100 };
    static float x[N * WIDE], scratch[WIDE];
    dml_rng rng;
    dml_rng_seed(&rng, 9);
    dml_augment noise = {.noise = 0.5f};
    dml_augment_rows(&noise, dml_rng_u64(&rng), 0, x, N, WIDE, scratch);
    double s = 0, s2 = 0;
    for (int i = 0; i < N * WIDE; i++)
        s += x[i], s2 += (double)x[i] * x[i];
    assert_float_equal(s / (N * WIDE), 0.0, 0.02);
    assert_float_equal(sqrt(s2 / (N * WIDE)), 0.5, 0.02);
    for (int i = 0; i < N * WIDE; i++)
        x[i] = 1.0f;
    dml_augment drop = {.dropout = 0.3f};
    dml_augment_rows(&drop, dml_rng_u64(&rng), 0, x, N, WIDE, scratch);
    int zeros = 0;
    for (int i = 0; i < N * WIDE; i++)
        zeros += x[i] == 0.0f;
    assert_float_equal((double)zeros / (N * WIDE), 0.3, 0.02);
}

/* Brightness multiplies a row by one factor in [0.5, 1.5]; contrast keeps the row's mean and
 * scales every value's distance from it by one factor in [0.7, 1.3]; over many rows the
 * factors spread over their ranges. */
static void test_brightness_and_contrast_scale_each_row(void **state)
{
    (void)state;
    dml_augment bright = {.brightness = 0.5f}, con = {.contrast = 0.3f};
    float lo_b = 2, hi_b = 0, lo_c = 2, hi_c = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        float src[D], img[D];
        ramp(src);
        memcpy(img, src, sizeof img);
        augment_one(&bright, img, seed);
        float f = img[0] / src[0];
        for (int i = 0; i < D; i++)
            assert_float_equal(img[i], f * src[i], 1e-4 * src[i]);
        lo_b = fminf(lo_b, f), hi_b = fmaxf(hi_b, f);

        memcpy(img, src, sizeof img);
        augment_one(&con, img, seed);
        float mean = (D + 1) / 2.0f, g = (img[0] - mean) / (src[0] - mean), sum = 0;
        for (int i = 0; i < D; i++) {
            assert_float_equal(img[i] - mean, g * (src[i] - mean), 1e-3);
            sum += img[i];
        }
        assert_float_equal(sum / D, mean, 1e-3);
        lo_c = fminf(lo_c, g), hi_c = fmaxf(hi_c, g);
    }
    assert_true(lo_b >= 0.5f && lo_b < 0.55f && hi_b <= 1.5f && hi_b > 1.45f);
    assert_true(lo_c >= 0.7f && lo_c < 0.73f && hi_c <= 1.3f && hi_c > 1.27f);
}

static void test_same_seed_same_draws(void **state)
{
    (void)state;
    dml_augment a = {.height = H, .width = W, .shift = 1, .rotate = 20.0f, .scale = 0.2f,
                     .flip = 0.5f, .cutout = 2, .brightness = 0.2f, .contrast = 0.2f,
                     .noise = 0.1f, .dropout = 0.1f};
    float x[D], y[D];
    ramp(x);
    ramp(y);
    augment_one(&a, x, 5);
    augment_one(&a, y, 5);
    assert_memory_equal(x, y, sizeof x);
    ramp(y);
    augment_one(&a, y, 6);
    assert_true(memcmp(x, y, sizeof x) != 0);
    assert_true(dml_augment_on(&a) && dml_augment_geometric(&a));
    dml_augment off = {.height = H, .width = W};
    assert_false(dml_augment_on(&off));
}

/* A batch of copies of one image: each row draws its own augmentation, and the batch comes out
 * the same in one call as in two calls over its two parts (as two ranks do it): each row's
 * generator is seeded by the row's index in the batch. */
static void test_rows_differ_and_parts_do_not_matter(void **state)
{
    (void)state;
    enum { N = 11, PART = 4 };
    dml_augment a = {.height = H, .width = W, .shift = 1, .rotate = 20.0f, .scale = 0.2f,
                     .flip = 0.5f, .cutout = 2, .brightness = 0.2f, .contrast = 0.2f,
                     .noise = 0.1f, .dropout = 0.1f};
    float whole[N * D], parts[N * D], scratch[D];
    for (int i = 0; i < N; i++) {
        ramp(whole + i * D);
        ramp(parts + i * D);
    }
    dml_augment_rows(&a, 7, 0, whole, N, D, scratch);
    dml_augment_rows(&a, 7, PART, parts + PART * D, N - PART, D, scratch);
    dml_augment_rows(&a, 7, 0, parts, PART, D, scratch);
    assert_memory_equal(whole, parts, sizeof whole);
    for (int i = 1; i < N; i++)
        assert_true(memcmp(whole, whole + i * D, D * sizeof(float)) != 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shift_is_an_exact_translation),
        cmocka_unit_test(test_rows_differ_and_parts_do_not_matter),
        cmocka_unit_test(test_flip_mirrors_rows),
        cmocka_unit_test(test_rotation_keeps_a_centred_blob),
        cmocka_unit_test(test_cutout_zeroes_one_square),
        cmocka_unit_test(test_noise_and_dropout_strength),
        cmocka_unit_test(test_brightness_and_contrast_scale_each_row),
        cmocka_unit_test(test_same_seed_same_draws),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
