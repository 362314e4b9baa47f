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

/* The pixel at real coordinates (x, y) of img[h, w], bilinear, 0 outside. */
static float sample(const float *img, int h, int w, float x, float y)
{
    float fx = floorf(x), fy = floorf(y);
    int x0 = (int)fx, y0 = (int)fy;
    float ax = x - fx, ay = y - fy, v = 0.0f;
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
 * point the inverse map sends it to. Integer shifts without rotation or zoom copy exactly. */
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
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float u = (float)(x - tx) - cx, v = (float)(y - ty) - cy;
            float sx = c * u + s * v + cx, sy = -s * u + c * v + cy;
            if (flip)
                sx = (float)(w - 1) - sx;
            out[y * w + x] = sample(img, h, w, sx, sy);
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

void dml_augment_rows(const dml_augment *a, float *x, int n, int d, float *scratch, dml_rng *rng)
{
    int moves = a->shift > 0 || a->rotate > 0.0f || a->scale > 0.0f || a->flip > 0.0f;
    for (int i = 0; i < n; i++) {
        float *row = x + (size_t)i * d;
        if (moves) {
            affine(a, row, scratch, rng);
            memcpy(row, scratch, (size_t)d * sizeof(float));
        }
        if (a->cutout > 0)
            cutout(a, row, rng);
        if (a->brightness > 0.0f || a->contrast > 0.0f)
            photometric(a, row, d, rng);
        if (a->noise > 0.0f)
            for (int j = 0; j < d; j++)
                row[j] += a->noise * dml_rng_normal(rng);
        if (a->dropout > 0.0f)
            for (int j = 0; j < d; j++)
                if (dml_rng_uniform(rng) < a->dropout)
                    row[j] = 0.0f;
    }
}
