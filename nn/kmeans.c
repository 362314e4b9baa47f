/* Lloyd's k-means with a GEMM assignment step: |x - c|^2 = |x|^2 + |c|^2 - 2 x.c, in blocks
 * of rows so memory stays at block x k. */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

#define BLOCK 4096

static void sq_norms(const float *x, int n, int d, float *out)
{
    for (int i = 0; i < n; i++) {
        float s = 0.0f;
        for (int j = 0; j < d; j++)
            s += x[(size_t)i * d + j] * x[(size_t)i * d + j];
        out[i] = s;
    }
}

/* Nearest centroid of every row; returns the summed squared distance. scratch: [BLOCK * k]. */
double dml_kmeans_assign(const float *x, int n, int d, const float *c, int k, const float *c_norms,
                         int *assign, float *dist, float *scratch)
{
    double inertia = 0.0;
    for (int i0 = 0; i0 < n; i0 += BLOCK) {
        int rows = n - i0 < BLOCK ? n - i0 : BLOCK;
        dml_gemm(0, 1, rows, k, d, -2.0f, x + (size_t)i0 * d, d, c, d, 0.0f, scratch, k);
        for (int r = 0; r < rows; r++) {
            const float *row = scratch + (size_t)r * k;
            int best = 0;
            float best_v = row[0] + c_norms[0];
            for (int j = 1; j < k; j++) {
                float v = row[j] + c_norms[j];
                if (v < best_v) {
                    best_v = v;
                    best = j;
                }
            }
            const float *xi = x + (size_t)(i0 + r) * d;
            float xx = 0.0f;
            for (int t = 0; t < d; t++)
                xx += xi[t] * xi[t];
            float d2 = best_v + xx > 0.0f ? best_v + xx : 0.0f;
            if (assign)
                assign[i0 + r] = best;
            if (dist)
                dist[i0 + r] = d2;
            inertia += d2;
        }
    }
    return inertia;
}

/* k-means++ (Arthur & Vassilvitskii 2007): each next centroid drawn with probability
 * proportional to the squared distance to the nearest one chosen so far. */
static void init_plusplus(const float *x, int n, int d, int k, dml_rng *rng, float *c, float *mind)
{
    int first = (int)dml_rng_below(rng, (uint32_t)n);
    memcpy(c, x + (size_t)first * d, (size_t)d * sizeof(float));
    for (int i = 0; i < n; i++) {
        float s = 0.0f;
        for (int t = 0; t < d; t++) {
            float e = x[(size_t)i * d + t] - c[t];
            s += e * e;
        }
        mind[i] = s;
    }
    for (int j = 1; j < k; j++) {
        double total = 0.0;
        for (int i = 0; i < n; i++)
            total += mind[i];
        double r = (double)dml_rng_uniform(rng) * total, acc = 0.0;
        int pick = n - 1;
        for (int i = 0; i < n && total > 0.0; i++) {
            acc += mind[i];
            if (acc > r) {
                pick = i;
                break;
            }
        }
        if (total <= 0.0)
            pick = (int)dml_rng_below(rng, (uint32_t)n);
        float *cj = c + (size_t)j * d;
        memcpy(cj, x + (size_t)pick * d, (size_t)d * sizeof(float));
        for (int i = 0; i < n; i++) {
            float s = 0.0f;
            for (int t = 0; t < d; t++) {
                float e = x[(size_t)i * d + t] - cj[t];
                s += e * e;
            }
            if (s < mind[i])
                mind[i] = s;
        }
    }
}

/* k distinct rows, by a partial Fisher-Yates shuffle of the row numbers. */
static int init_random_rows(const float *x, int n, int d, int k, dml_rng *rng, float *c)
{
    int *perm = malloc((size_t)n * sizeof *perm);
    if (!perm)
        return 0;
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int j = 0; j < k; j++) {
        int r = j + (int)dml_rng_below(rng, (uint32_t)(n - j));
        int t = perm[j];
        perm[j] = perm[r];
        perm[r] = t;
        memcpy(c + (size_t)j * d, x + (size_t)perm[j] * d, (size_t)d * sizeof(float));
    }
    free(perm);
    return 1;
}

/* An empty cluster takes a copy of the largest cluster's centroid, both nudged apart by a
 * small symmetric perturbation, so the next assignment splits that cluster (FAISS does the
 * same). */
static void reseed_empty(float *c, int k, int d, int *count)
{
    const float eps = 1.0f / 1024.0f;
    for (int j = 0; j < k; j++) {
        if (count[j] > 0)
            continue;
        int big = 0;
        for (int t = 1; t < k; t++)
            if (count[t] > count[big])
                big = t;
        float *cj = c + (size_t)j * d, *cb = c + (size_t)big * d;
        for (int t = 0; t < d; t++) {
            float s = t % 2 ? 1.0f + eps : 1.0f - eps;
            cj[t] = cb[t] * s;
            cb[t] = cb[t] * (2.0f - s);
        }
        count[j] = count[big] / 2;
        count[big] -= count[j];
    }
}

dml_status dml_kmeans_from(const float *x, int n, int d, int k, int iters, float *centroids,
                           int *assign, double *inertia, dml_error *err)
{
    float *c_norms = malloc((size_t)k * sizeof(float));
    float *scratch = malloc((size_t)(n < BLOCK ? n : BLOCK) * k * sizeof(float) + sizeof(float));
    int *lab = assign ? assign : malloc((size_t)n * sizeof(int));
    int *count = malloc((size_t)k * sizeof(int));
    double *sum = malloc((size_t)k * d * sizeof(double));
    dml_status st = DML_OK;
    if (!c_norms || !scratch || !lab || !count || !sum) {
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for k-means");
        goto done;
    }
    double obj = 0.0;
    for (int it = 0; it <= iters; it++) {
        sq_norms(centroids, k, d, c_norms);
        obj = dml_kmeans_assign(x, n, d, centroids, k, c_norms, lab, NULL, scratch);
        if (it == iters)
            break; /* the final assignment matches the returned centroids */
        memset(sum, 0, (size_t)k * d * sizeof(double));
        memset(count, 0, (size_t)k * sizeof(int));
        for (int i = 0; i < n; i++) {
            count[lab[i]]++;
            double *s = sum + (size_t)lab[i] * d;
            for (int t = 0; t < d; t++)
                s[t] += x[(size_t)i * d + t];
        }
        for (int j = 0; j < k; j++)
            for (int t = 0; count[j] && t < d; t++)
                centroids[(size_t)j * d + t] = (float)(sum[(size_t)j * d + t] / count[j]);
        reseed_empty(centroids, k, d, count);
    }
    if (inertia)
        *inertia = obj;
done:
    free(c_norms);
    free(scratch);
    if (lab != assign)
        free(lab);
    free(count);
    free(sum);
    return st;
}

dml_status dml_kmeans(const float *x, int n, int d, int k, int iters, dml_kmeans_init init,
                      dml_rng *rng, float *centroids, int *assign, double *inertia,
                      dml_error *err)
{
    if (k < 1 || n < k)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "k-means needs at least as many rows as clusters (%d rows, k = %d)",
                             n, k);
    if (init == DML_KMEANS_PLUSPLUS) {
        float *mind = malloc((size_t)n * sizeof(float));
        if (!mind)
            return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for k-means");
        init_plusplus(x, n, d, k, rng, centroids, mind);
        free(mind);
    } else if (!init_random_rows(x, n, d, k, rng, centroids)) {
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for k-means");
    }
    return dml_kmeans_from(x, n, d, k, iters, centroids, assign, inertia, err);
}
