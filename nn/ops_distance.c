/* The pairwise distance matrix of two row sets from one GEMM, shared by every loss and
 * miner that needs distances: D[i,j]^2 = |a_i|^2 + |b_j|^2 - 2 a_i.b_j, clamped at 0. */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

typedef struct dist_cache {
    float *sq_a, *sq_b; /* [n], [m]: squared row norms */
    float *w;           /* [n, m]: backward scratch, d(loss)/d(squared distance) */
} dist_cache;

/* Each row's squared norm: one float chain per row, the order the distances were always
 * computed in (so the chain is spread over rows, not cut). */
typedef struct {
    float *out;
    const dml_tensor *x;
} sq_norms_job;

static void sq_norm_rows(void *ctx, int first, int end)
{
    const sq_norms_job *job = ctx;
    for (int i = first; i < end; i++) {
        const float *r = job->x->data + (size_t)i * job->x->cols;
        float s = 0.0f;
        for (int j = 0; j < job->x->cols; j++)
            s += r[j] * r[j];
        job->out[i] = s;
    }
}

static void row_sq_norms(float *out, const dml_tensor *x)
{
    sq_norms_job job = {out, x};
    dml_pool_run_rows(sq_norm_rows, &job, x->rows, x->cols);
}

/* row[j] = -2 a.b_j + |a|^2 + |b_j|^2 clamped at 0, or its square root. */
DML_SIMD_CLONES static void finish_row(float *restrict row, float sq_a, const float *restrict sq_b,
                                       int m, int squared)
{
    for (int j = 0; j < m; j++) {
        float d2 = row[j] + sq_a + sq_b[j];
        d2 = d2 < 0.0f ? 0.0f : d2; /* NaN passes through, and divergence is caught */
        row[j] = squared ? d2 : sqrtf(d2);
    }
}

/* w = d(loss)/d(squared distance): dy, or dy / (2 dist); 0 where the distance is 0 (the
 * diagonal, clamped pairs). Written without a branch, so the loop vectorises. */
DML_SIMD_CLONES static void squared_distance_grad(float *restrict w, const float *restrict dist,
                                                  const float *restrict dy, size_t n, int squared)
{
    for (size_t k = 0; k < n; k++) {
        float live = (float)(dist[k] > 0.0f);
        w[k] = live * dy[k] * (squared ? 1.0f : 0.5f / (dist[k] + (1.0f - live)));
    }
}

static void finish_rows(void *ctx, int first, int end)
{
    dml_tensor *out = ctx;
    const dist_cache *c = out->cache;
    int m = out->cols, self = out->src[0] == out->src[1];
    for (int i = first; i < end; i++) {
        float *row = out->data + (size_t)i * m;
        finish_row(row, c->sq_a[i], c->sq_b, m, out->iparam[0]);
        if (self)
            row[i] = 0.0f; /* exactly, where rounding leaves a little */
    }
}

static void pairwise_dist_forward(dml_tensor *out)
{
    dml_tensor *a = out->src[0], *b = out->src[1];
    dist_cache *c = out->cache;
    int n = out->rows, m = out->cols;
    row_sq_norms(c->sq_a, a);
    if (b == a)
        memcpy(c->sq_b, c->sq_a, (size_t)n * sizeof(float));
    else
        row_sq_norms(c->sq_b, b);
    dml_gemm(0, 1, n, m, a->cols, -2.0f, a->data, a->cols, b->data, b->cols, 0.0f, out->data, m);
    dml_pool_run_rows(finish_rows, out, n, m);
}

/* 2 s_i x_i added to dx_i, s_i the sum of row i of w [n, m]: rows [first, end). */
typedef struct {
    float *dx;
    const float *x, *w;
    int m, d;
} row_sums_job;

static void add_row_sums_rows(void *ctx, int first, int end)
{
    const row_sums_job *job = ctx;
    const int m = job->m, d = job->d;
    for (int i = first; i < end; i++) {
        const float *wi = job->w + (size_t)i * m;
        float s = 0.0f;
        for (int j = 0; j < m; j++)
            s += wi[j];
        float *restrict dx = job->dx + (size_t)i * d;
        const float *restrict x = job->x + (size_t)i * d;
        for (int k = 0; k < d; k++)
            dx[k] += 2.0f * s * x[k];
    }
}

static void add_row_sums(float *dx, const float *x, const float *w, int n, int m, int d)
{
    row_sums_job job = {dx, x, w, m, d};
    dml_pool_run_rows(add_row_sums_rows, &job, n, m);
}

/* w = w + w^T in place, tile by tile: a plain walk of the upper triangle reads w^T a column at a
 * time, one cache line per element (at B = 256 that walk took about half as long as the GEMM
 * after it; tiled, ~50 us less). */
static void add_transpose(float *w, int n)
{
    enum { TILE = 32 };
    for (int i0 = 0; i0 < n; i0 += TILE)
        for (int j0 = i0; j0 < n; j0 += TILE) {
            int i1 = i0 + TILE < n ? i0 + TILE : n, j1 = j0 + TILE < n ? j0 + TILE : n;
            for (int i = i0; i < i1; i++)
                for (int j = j0 == i0 ? i : j0; j < j1; j++) {
                    float s = w[(size_t)i * n + j] + w[(size_t)j * n + i];
                    w[(size_t)i * n + j] = w[(size_t)j * n + i] = s;
                }
        }
}

static void pairwise_dist_backward(dml_tensor *out)
{
    dml_tensor *a = out->src[0], *b = out->src[1];
    dist_cache *c = out->cache;
    int n = out->rows, m = out->cols, d = a->cols, squared = out->iparam[0];
    float *w = c->w;
    squared_distance_grad(w, out->data, out->grad, (size_t)n * m, squared);
    /* d|a_i - b_j|^2 / da_i = 2 (a_i - b_j), summed over j with weights w_ij. */
    if (a == b) {
        /* One row set: x_i gets 2 sum_j (w_ij + w_ji)(x_i - x_j), one GEMM with w + w^T. */
        add_transpose(w, n);
        dml_gemm(0, 0, n, d, n, -2.0f, w, n, a->data, d, 1.0f, a->grad, d);
        add_row_sums(a->grad, a->data, w, n, n, d);
        return;
    }
    if (a->grad) {
        dml_gemm(0, 0, n, d, m, -2.0f, w, m, b->data, d, 1.0f, a->grad, d);
        add_row_sums(a->grad, a->data, w, n, m, d);
    }
    if (b->grad) {
        dml_gemm(1, 0, m, d, n, -2.0f, w, m, a->data, d, 1.0f, b->grad, d);
        for (int j = 0; j < m; j++) {
            float s = 0.0f;
            for (int i = 0; i < n; i++)
                s += w[(size_t)i * m + j];
            for (int k = 0; k < d; k++)
                b->grad[(size_t)j * d + k] += 2.0f * s * b->data[(size_t)j * d + k];
        }
    }
}

const dml_op_def dml_op_pairwise_dist = {"pairwise_dist", pairwise_dist_forward,
                                         pairwise_dist_backward};

dml_tensor *dml_pairwise_dist(dml_graph *g, dml_tensor *a, dml_tensor *b, int squared)
{
    if (!a || !b)
        return NULL;
    DML_ASSERT(a->cols == b->cols);
    dml_tensor *out = dml_graph_node(g, &dml_op_pairwise_dist, a->rows, b->rows, a, b, NULL);
    if (!out)
        return NULL;
    out->iparam[0] = squared != 0;
    dist_cache *c = dml_graph_alloc(g, sizeof *c);
    if (!c || !(c->sq_a = dml_graph_alloc(g, (size_t)a->rows * sizeof(float))) ||
        !(c->sq_b = dml_graph_alloc(g, (size_t)b->rows * sizeof(float))))
        return NULL;
    c->w = NULL;
    if (out->grad && !(c->w = dml_graph_alloc(g, (size_t)a->rows * b->rows * sizeof(float))))
        return NULL;
    out->cache = c;
    return dml_graph_run(g, out);
}
