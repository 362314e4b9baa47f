#include "data/augment.h"

#include <math.h>
#include <string.h>

#define PI 3.14159265358979323846

int dml_augment_geometric(const dml_augment *a)
{
    return a->shift > 0 || a->rotate > 0.0f || a->scale > 0.0f || a->flip > 0.0f || a->cutout > 0;
}

int dml_augment_on(const dml_augment *a)
{
    return dml_augment_geometric(a) || a->brightness > 0.0f || a->contrast > 0.0f ||
           a->noise > 0.0f || a->dropout > 0.0f;
}

/* A uniform draw in [-r, r]. */
static float symmetric(dml_rng *rng, float r)
{
    return r > 0.0f ? r * (2.0f * dml_rng_uniform(rng) - 1.0f) : 0.0f;
}

/* floorf without a libm call (coordinates stay far inside int's range: zoom > 0). */
static int floor_int(float x)
{
    int i = (int)x;
    return (float)i > x ? i - 1 : i;
}

/* The pixel at real coordinates (x, y) of img[h, w], bilinear, 0 outside. */
static float sample(const float *img, int h, int w, float x, float y)
{
    int x0 = floor_int(x), y0 = floor_int(y);
    float ax = x - (float)x0, ay = y - (float)y0;
    if (x0 >= 0 && y0 >= 0 && x0 + 1 < w && y0 + 1 < h) { /* all four neighbours inside */
        const float *p = img + y0 * w + x0;
        float top = p[0] + ax * (p[1] - p[0]), bottom = p[w] + ax * (p[w + 1] - p[w]);
        return top + ay * (bottom - top);
    }
    if (x0 < -1 || x0 >= w || y0 < -1 || y0 >= h) /* all four outside: a tenth of the pixels */
        return 0.0f;
    float v = 0.0f;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            int xi = x0 + dx, yi = y0 + dy;
            float wgt = (dx ? ax : 1.0f - ax) * (dy ? ay : 1.0f - ay);
            if (wgt != 0.0f && xi >= 0 && xi < w && yi >= 0 && yi < h)
                v += wgt * img[yi * w + xi];
        }
    return v;
}

/* out = img under a random affine map about the centre: each output pixel reads the source
 * point the inverse map sends it to, which moves by (c, -s) from one column to the next.
 * Integer shifts without rotation or zoom copy exactly. */
static void affine(const dml_augment *a, const float *img, float *out, dml_rng *rng)
{
    int h = a->height, w = a->width;
    float theta = symmetric(rng, a->rotate) * (float)(PI / 180.0);
    float zoom = 1.0f + symmetric(rng, a->scale);
    int tx = a->shift ? (int)dml_rng_below(rng, 2u * (unsigned)a->shift + 1u) - a->shift : 0;
    int ty = a->shift ? (int)dml_rng_below(rng, 2u * (unsigned)a->shift + 1u) - a->shift : 0;
    int flip = a->flip > 0.0f && dml_rng_uniform(rng) < a->flip;
    float c = cosf(theta) / zoom, s = sinf(theta) / zoom;
    float cx = 0.5f * (float)(w - 1), cy = 0.5f * (float)(h - 1);
    for (int y = 0; y < h; y++) {
        float u = (float)(-tx) - cx, v = (float)(y - ty) - cy;
        float sx = c * u + s * v + cx, sy = -s * u + c * v + cy;
        for (int x = 0; x < w; x++, sx += c, sy -= s)
            out[y * w + x] = sample(img, h, w, flip ? (float)(w - 1) - sx : sx, sy);
    }
}

static void cutout(const dml_augment *a, float *img, dml_rng *rng)
{
    int h = a->height, w = a->width, half = a->cutout / 2;
    int cy = (int)dml_rng_below(rng, (unsigned)h), cx = (int)dml_rng_below(rng, (unsigned)w);
    for (int y = cy - half; y < cy - half + a->cutout; y++)
        for (int x = cx - half; x < cx - half + a->cutout; x++)
            if (y >= 0 && y < h && x >= 0 && x < w)
                img[y * w + x] = 0.0f;
}

/* Brightness and contrast, one draw each per row. Without them a self-supervised loss can tell
 * two rows apart by their overall grey level alone, a shortcut SimCLR's colour distortion
 * removes (Chen et al. 2020, section 3). */
static void photometric(const dml_augment *a, float *row, int d, dml_rng *rng)
{
    float bright = 1.0f + symmetric(rng, a->brightness), con = 1.0f + symmetric(rng, a->contrast);
    double sum = 0.0;
    if (a->contrast > 0.0f)
        for (int j = 0; j < d; j++)
            sum += row[j];
    float mean = (float)(sum / d);
    for (int j = 0; j < d; j++)
        row[j] = bright * (mean + con * (row[j] - mean));
}

/* Each value set to 0 with probability p (to 1/65536): four 16-bit draws from each 64-bit one.
 * The value's bits are masked rather than branched on: a branch taken at random, p of the time,
 * mispredicts often enough to cost more than the draws (half the time of this function). */
static void drop(float *row, int d, float p, dml_rng *rng)
{
    uint32_t cut = (uint32_t)(p * 65536.0f);
    for (int j = 0; j < d; j += 4) {
        uint64_t u = dml_rng_u64(rng);
        for (int k = 0; k < 4 && j + k < d; k++, u >>= 16) {
            uint32_t bits, keep = 0u - (uint32_t)((uint32_t)(u & 0xffff) >= cut);
            memcpy(&bits, &row[j + k], sizeof bits);
            bits &= keep;
            memcpy(&row[j + k], &bits, sizeof bits);
        }
    }
}

static void augment_row(const dml_augment *a, float *row, int d, float *scratch, dml_rng *rng)
{
    if (a->shift > 0 || a->rotate > 0.0f || a->scale > 0.0f || a->flip > 0.0f) {
        affine(a, row, scratch, rng);
        memcpy(row, scratch, (size_t)d * sizeof(float));
    }
    if (a->cutout > 0)
        cutout(a, row, rng);
    if (a->brightness > 0.0f || a->contrast > 0.0f)
        photometric(a, row, d, rng);
    if (a->noise > 0.0f) {
        dml_rng_normals(rng, scratch, d);
        for (int j = 0; j < d; j++)
            row[j] += a->noise * scratch[j];
    }
    if (a->dropout > 0.0f)
        drop(row, d, a->dropout, rng);
}

void dml_augment_rows(const dml_augment *a, uint64_t seed, int first, float *x, int n, int d,
                      float *scratch)
{
    for (int i = 0; i < n; i++) {
        dml_rng row_rng;
        dml_rng_seed(&row_rng, seed + (uint64_t)(first + i));
        augment_row(a, x + (size_t)i * d, d, scratch, &row_rng);
    }
}
