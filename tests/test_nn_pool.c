/* dml's threads (nn/pool.c) and what runs on them: every part and chunk of a job runs once, a
 * job started inside a job runs on its caller; Adam, the gradient norm and the ops' row passes
 * give the same bits on 1, 2 and 3 threads, and a product split between threads is within float
 * rounding of the whole one (the same bits under some OpenBLAS kernels, not under others). */
#include <float.h>
#include <math.h>
#include "tests/testutil.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "losses/losses.h"
#include "optim/optim.h"

static void test_range_covers_once_and_aligned(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 15, 16, 17, 100, 784, 1000};
    for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++)
        for (int parts = 1; parts <= 5; parts++) {
            size_t expect = 0, s, e;
            for (int p = 0; p < parts; p++) {
                dml_pool_range(sizes[t], 16, p, parts, &s, &e);
                assert_true(s <= e);
                if (s < e) {
                    assert_int_equal(s, expect); /* contiguous, in order */
                    assert_int_equal(s % 16, 0);
                    expect = e;
                }
            }
            assert_int_equal(expect, sizes[t]);
        }
}

/* Parts run on the workers too, so they count and flag; the test asserts afterwards. */
typedef struct {
    atomic_int runs[8];
    atomic_int nested_parts;
    atomic_int bad;
} counts;

static void nested(void *ctx, int part, int parts)
{
    counts *c = ctx;
    if (part != 0 || parts != 1)
        atomic_store(&c->bad, 1);
    atomic_fetch_add(&c->nested_parts, 1);
}

static void count_part(void *ctx, int part, int parts)
{
    counts *c = ctx;
    if (part < 0 || part >= parts || parts > 8) {
        atomic_store(&c->bad, 1);
        return;
    }
    atomic_fetch_add(&c->runs[part], 1);
    dml_pool_run(nested, ctx); /* the pool is busy: runs whole here */
}

static void count_chunk(void *ctx, int chunk, int n_chunks)
{
    counts *c = ctx;
    if (n_chunks != 8 || chunk < 0 || chunk >= 8) {
        atomic_store(&c->bad, 1);
        return;
    }
    atomic_fetch_add(&c->runs[chunk], 1);
}

static void test_every_part_and_chunk_runs_once(void **state)
{
    (void)state;
    for (int threads = 1; threads <= 3; threads++) {
        assert_int_equal(dml_set_threads(threads), threads);
        for (int job = 0; job < 50; job++) {
            counts c = {0};
            dml_pool_run(count_part, &c);
            assert_int_equal(atomic_load(&c.bad), 0);
            for (int p = 0; p < 8; p++)
                assert_int_equal(atomic_load(&c.runs[p]), p < threads ? 1 : 0);
            assert_int_equal(atomic_load(&c.nested_parts), threads);
            counts d = {0};
            dml_pool_run_chunks(count_chunk, &d, 8, DML_POOL_MIN_ELEMENTS);
            assert_int_equal(atomic_load(&d.bad), 0);
            for (int k = 0; k < 8; k++)
                assert_int_equal(atomic_load(&d.runs[k]), 1);
        }
    }
}

typedef struct {
    int ta, tb, m, n, k, ldc_pad;
    float beta;
} shape;

/* Each shape's C on `threads` threads (alpha 0.5, C starting from N(0, 1) values). */
static float *product_on(int threads, const shape *s, const float *a, const float *b)
{
    dml_set_threads(threads);
    int ldc = s->n + s->ldc_pad;
    float *c = malloc(sizeof(float) * (size_t)s->m * ldc);
    tu_fill_normal(c, (size_t)s->m * ldc, 1.0f, 9);
    dml_gemm(s->ta, s->tb, s->m, s->n, s->k, 0.5f, a, s->ta ? s->m : s->k, b, s->tb ? s->k : s->n,
             s->beta, c, ldc);
    return c;
}

/* |C1 - C2| <= 2 k eps (0.5 sum_l |a_il b_lj| + |beta c_ij|), the textbook bound on two float
 * summation orders of the same dot product, element by element; the padding between rows is
 * untouched. K = 784 is a sum that OpenBLAS's kernels block differently from thread to thread;
 * odd sizes leave short last blocks. Returns the largest difference over its bound. */
static double worst_over_bound(const shape *s, const float *a, const float *b, const float *one,
                               const float *many)
{
    float *c0 = malloc(sizeof(float) * (size_t)s->m * (s->n + s->ldc_pad));
    tu_fill_normal(c0, (size_t)s->m * (s->n + s->ldc_pad), 1.0f, 9);
    int ldc = s->n + s->ldc_pad, lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    double worst = 0.0;
    for (int i = 0; i < s->m; i++)
        for (int j = 0; j < ldc; j++) {
            size_t at = (size_t)i * ldc + j;
            if (j >= s->n) { /* padding */
                assert_true(one[at] == c0[at] && many[at] == c0[at]);
                continue;
            }
            double mag = fabs((double)s->beta * c0[at]);
            for (int l = 0; l < s->k; l++) {
                double x = s->ta ? a[(size_t)l * lda + i] : a[(size_t)i * lda + l];
                double y = s->tb ? b[(size_t)j * ldb + l] : b[(size_t)l * ldb + j];
                mag += 0.5 * fabs(x * y);
            }
            double bound = 2.0 * s->k * FLT_EPSILON * mag;
            worst = fmax(worst, fabs((double)one[at] - many[at]) / bound);
        }
    free(c0);
    return worst;
}

static void test_products_on_any_thread_count(void **state)
{
    (void)state;
    static const shape shapes[] = {{0, 1, 256, 512, 784, 0, 0.0f}, {1, 0, 512, 784, 256, 0, 1.0f},
                                   {0, 0, 300, 97, 784, 3, 0.0f},  {1, 1, 77, 333, 500, 0, 1.0f},
                                   {0, 1, 1024, 64, 48, 5, 0.0f},  {0, 0, 40, 40, 40, 0, 0.0f}};
    float *a = malloc(sizeof(float) * 1024 * 784), *b = malloc(sizeof(float) * 1024 * 784);
    tu_fill_normal(a, 1024 * 784, 1.0f, 1);
    tu_fill_normal(b, 1024 * 784, 1.0f, 2);
    double worst = 0.0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        size_t bytes = sizeof(float) * (size_t)s->m * (s->n + s->ldc_pad);
        float *one = product_on(1, s, a, b);
        for (int threads = 2; threads <= 3; threads++) {
            float *many = product_on(threads, s, a, b), *again = product_on(threads, s, a, b);
            assert_memory_equal(many, again, bytes); /* the same count: the same bits */
            worst = fmax(worst, worst_over_bound(s, a, b, one, many));
            free(many);
            free(again);
        }
        free(one);
    }
    tu_assert_measured("products on 2 and 3 threads against 1, largest difference / its bound",
                       worst, 1.0);
    free(a);
    free(b);
}

/* Three parameters of awkward sizes; the state after 3 Adam steps (and the norms on the way)
 * on `threads` threads. */
enum { N_A = 100003, N_B = 17, N_C = 40000 };
static void adam_on(int threads, float *out, float *norms)
{
    dml_set_threads(threads);
    static const size_t n[3] = {N_A, N_B, N_C};
    float *w[3], *g[3];
    dml_param_view views[3];
    for (int i = 0; i < 3; i++) {
        w[i] = malloc(n[i] * sizeof(float));
        g[i] = malloc(n[i] * sizeof(float));
        tu_fill_normal(w[i], n[i], 1.0f, 10 + (uint64_t)i);
        views[i] = (dml_param_view){.data = w[i], .grad = g[i], .n = n[i]};
    }
    dml_optim o;
    dml_optim_spec spec = {.kind = DML_OPTIM_ADAMW, .weight_decay = 0.01f};
    dml_error err = {0};
    assert_int_equal(dml_optim_init(&o, &spec, views, 3, &err), DML_OK);
    dml_optim_set_lr_scale(&o, 1, 10.0f);
    for (int step = 0; step < 3; step++) {
        dml_optim_zero_grad(&o);
        for (int i = 0; i < 3; i++) {
            for (size_t k = 0; k < n[i]; k++)
                assert_true(g[i][k] == 0.0f);
            tu_fill_normal(g[i], n[i], 3.0f, 100 + (uint64_t)(step * 3 + i));
        }
        norms[step] = dml_clip_grad_norm(views, 3, 50.0f);
        dml_optim_step(&o, 1e-3f);
    }
    for (int i = 0, at = 0; i < 3; i++) {
        memcpy(out + at, w[i], n[i] * sizeof(float));
        at += (int)n[i];
        free(w[i]);
        free(g[i]);
    }
    dml_optim_free(&o);
}

static void test_adam_and_norm_same_bits_on_any_thread_count(void **state)
{
    (void)state;
    size_t total = N_A + N_B + N_C;
    float *one = malloc(total * sizeof(float)), *many = malloc(total * sizeof(float));
    float norms_one[3], norms_many[3];
    adam_on(1, one, norms_one);
    assert_true(norms_one[0] > 50.0f); /* the clipping path runs too */
    for (int threads = 2; threads <= 3; threads++) {
        adam_on(threads, many, norms_many);
        assert_memory_equal(norms_one, norms_many, sizeof norms_one);
        assert_memory_equal(one, many, total * sizeof(float));
    }
    free(one);
    free(many);
}

/* The ops whose row passes go to the pool, at sizes that hand them out (32K elements and more)
 * while every product stays under the split (1M multiply-adds), so that each thread count must
 * give the same bits: dense + relu and l2_normalize over [256, 128], the distance matrix with
 * the contrastive loss over it, and MNR, all backpropagated. */
enum { ROWS = 256, WIDE = 128, NARROW = 8 };
/* the three losses, the six inputs' gradients, the normalised layer, the distance matrix */
enum {
    ROW_PASS_FLOATS = 3 + ROWS * NARROW * 4 + WIDE * NARROW + WIDE + ROWS * WIDE + ROWS * ROWS
};

/* Every part waits for all the others: when it returns, every worker has just finished a part
 * and is spinning, so the jobs right after it are shared out, not done by the caller alone
 * while a sleeping worker wakes. */
static void meet(void *ctx, int part, int parts)
{
    (void)part;
    atomic_int *arrived = ctx;
    atomic_fetch_add(arrived, 1);
    while (atomic_load(arrived) < parts)
        ;
}

static void row_passes_on(int threads, float *out)
{
    dml_set_threads(threads);
    static float x[ROWS * NARROW], w[WIDE * NARROW], b[WIDE], e[ROWS * NARROW], a[ROWS * NARROW],
        p[ROWS * NARROW], target[ROWS * WIDE];
    float *data[] = {x, w, b, e, a, p};
    const size_t n[] = {ROWS * NARROW, WIDE * NARROW, WIDE, ROWS * NARROW, ROWS * NARROW,
                        ROWS * NARROW};
    for (int i = 0; i < 6; i++)
        tu_fill_normal(data[i], n[i], 1.0f, 20 + (uint64_t)i);
    tu_fill_normal(target, ROWS * WIDE, 0.1f, 30);
    int32_t labels[ROWS];
    for (int i = 0; i < ROWS; i++)
        labels[i] = i % 10;
    dml_graph g;
    dml_graph_init(&g, 1 << 22);
    dml_tensor *in[6];
    for (int i = 0; i < 6; i++)
        in[i] = dml_leaf_copy(&g, data[i], i == 1 ? WIDE : i == 2 ? 1 : ROWS,
                              i == 1 ? NARROW : i == 2 ? WIDE : NARROW, 1);
    atomic_int arrived = 0;
    dml_pool_run(meet, &arrived);
    dml_tensor *h = dml_l2_normalize(&g, dml_dense_relu(&g, in[0], in[1], in[2]));
    dml_tensor *rec = dml_mse(&g, h, dml_leaf_copy(&g, target, ROWS, WIDE, 0));
    dml_tensor *d = dml_pairwise_dist(&g, in[3], in[3], 0);
    dml_tensor *pairs = dml_loss_contrastive(&g, d, labels, 0.0f, 1.0f, 2, DML_REDUCE_MEAN);
    dml_tensor *mnr = dml_loss_mnr(&g, in[4], in[5], NULL, labels, 20.0f, 1);
    dml_tensor *loss = dml_add(&g, rec, dml_add(&g, pairs, mnr));
    assert_non_null(loss);
    assert_int_equal(dml_backward(&g, loss), DML_OK);
    size_t at = 0;
    out[at++] = rec->data[0];
    out[at++] = pairs->data[0];
    out[at++] = mnr->data[0];
    for (int i = 0; i < 6; i++) {
        memcpy(out + at, in[i]->grad, n[i] * sizeof(float));
        at += n[i];
    }
    memcpy(out + at, h->data, (size_t)ROWS * WIDE * sizeof(float));
    at += (size_t)ROWS * WIDE;
    memcpy(out + at, d->data, (size_t)ROWS * ROWS * sizeof(float));
    assert_int_equal(at + (size_t)ROWS * ROWS, ROW_PASS_FLOATS);
    dml_graph_free(&g);
}

static void test_row_passes_same_bits_on_any_thread_count(void **state)
{
    (void)state;
    size_t total = ROW_PASS_FLOATS;
    float *one = calloc(total, sizeof(float)), *many = calloc(total, sizeof(float));
    row_passes_on(1, one);
    for (int k = 0; k < 3; k++)
        assert_true(isfinite(one[k]) && one[k] > 0.0f);
    for (int threads = 2; threads <= 3; threads++) {
        memset(many, 0, total * sizeof(float));
        row_passes_on(threads, many);
        assert_memory_equal(one, many, total * sizeof(float));
    }
    free(one);
    free(many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_covers_once_and_aligned),
        cmocka_unit_test(test_every_part_and_chunk_runs_once),
        cmocka_unit_test(test_products_on_any_thread_count),
        cmocka_unit_test(test_adam_and_norm_same_bits_on_any_thread_count),
        cmocka_unit_test(test_row_passes_same_bits_on_any_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
