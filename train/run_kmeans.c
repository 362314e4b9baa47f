/* The product quantizer's k-means over the ranks (docs/scale.md): every rank holds every
 * training embedding and draws the same k-means++ start from the run's generator; each Lloyd
 * iteration then assigns only this rank's contiguous shard of the rows, and the per-cluster
 * sums and counts are summed over the ranks (in double, one allreduce per sub-space and
 * iteration). The steps are nn/kmeans.c's, so the codebooks are one process's within the
 * rounding of the sums' order. */
#include <stdlib.h>
#include <string.h>

#include "train/run_output.h"

/* The farthest row of a cluster on one rank: what reseeding compares across ranks. */
typedef struct far_row {
    float dist;
    int32_t row; /* -1: none on that rank */
} far_row;

typedef struct km_ctx {
    const dml_comm *comm;
    const float *x;      /* [n, d] one sub-space of every row */
    int n, d, k, lo, hi; /* this rank's rows [lo, hi) */
    float *c, *c_norms;  /* [k, d], [k] */
    int *lab;            /* [hi - lo] */
    float *dist, *scores; /* [hi - lo], GEMM scratch */
    double *sums;        /* [k, d] sums, then [k] counts */
    far_row *far;        /* [size] */
} km_ctx;

/* As nn/kmeans.c's: an empty cluster takes the row of the largest cluster farthest from its
 * centroid (the lowest row of equals), which moves to it. */
static void reseed(km_ctx *q, double *count)
{
    const dml_comm *c = q->comm;
    for (int j = 0; j < q->k; j++) {
        if (count[j] > 0.0)
            continue;
        int big = 0;
        for (int t = 1; t < q->k; t++)
            if (count[t] > count[big])
                big = t;
        far_row mine = {0.0f, -1};
        for (int i = 0; i < q->hi - q->lo; i++)
            if (q->lab[i] == big && (mine.row < 0 || q->dist[i] > mine.dist))
                mine = (far_row){q->dist[i], q->lo + i};
        c->allgather(c->ctx, &mine, q->far, sizeof mine);
        far_row best = {0.0f, -1};
        for (int r = 0; r < c->size; r++) /* ranks in row order: the first of equals wins */
            if (q->far[r].row >= 0 && (best.row < 0 || q->far[r].dist > best.dist))
                best = q->far[r];
        DML_ASSERT(best.row >= 0);
        memcpy(q->c + (size_t)j * q->d, q->x + (size_t)best.row * q->d, (size_t)q->d * sizeof(float));
        if (best.row >= q->lo && best.row < q->hi) {
            q->lab[best.row - q->lo] = j;
            q->dist[best.row - q->lo] = 0.0f;
        }
        count[j] = 1.0;
        count[big] -= 1.0;
    }
}

static void lloyd(km_ctx *q, int iters)
{
    size_t kd = (size_t)q->k * q->d;
    double *count = q->sums + kd;
    for (int it = 0; it < iters; it++) {
        for (int j = 0; j < q->k; j++) {
            float s = 0.0f;
            for (int t = 0; t < q->d; t++)
                s += q->c[(size_t)j * q->d + t] * q->c[(size_t)j * q->d + t];
            q->c_norms[j] = s;
        }
        dml_kmeans_assign(q->x + (size_t)q->lo * q->d, q->hi - q->lo, q->d, q->c, q->k,
                          q->c_norms, q->lab, q->dist, q->scores);
        memset(q->sums, 0, (kd + (size_t)q->k) * sizeof *q->sums);
        for (int i = 0; i < q->hi - q->lo; i++) {
            const float *xi = q->x + (size_t)(q->lo + i) * q->d;
            double *s = q->sums + (size_t)q->lab[i] * q->d;
            count[q->lab[i]] += 1.0;
            for (int t = 0; t < q->d; t++)
                s[t] += xi[t];
        }
        q->comm->allreduce_sum_f64(q->comm->ctx, q->sums, kd + (size_t)q->k);
        for (int j = 0; j < q->k; j++)
            for (int t = 0; count[j] > 0.0 && t < q->d; t++)
                q->c[(size_t)j * q->d + t] = (float)(q->sums[(size_t)j * q->d + t] / count[j]);
        reseed(q, count);
    }
}

dml_status dml_run_pq_fit_ranks(dml_run *r, const float *z, int n, int fresh, dml_error *err)
{
    dml_pq *pq = &r->pq;
    const dml_comm *c = r->comm;
    if (n < pq->ksub)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "PQ training needs at least ksub = %d rows, got %d", pq->ksub, n);
    km_ctx q = {.comm = c, .n = n, .d = pq->dsub, .k = pq->ksub,
                .lo = (int)((long)n * c->rank / c->size),
                .hi = (int)((long)n * (c->rank + 1) / c->size)};
    size_t nl = (size_t)(q.hi - q.lo), k = (size_t)q.k;
    int block = dml_kmeans_block_rows(q.hi - q.lo > 0 ? q.hi - q.lo : 1, q.k);
    float *sub = malloc((size_t)n * q.d * sizeof(float));
    q.c_norms = malloc(k * sizeof(float));
    q.lab = malloc((nl + 1) * sizeof(int));
    q.dist = malloc((nl + 1) * sizeof(float));
    q.scores = malloc((size_t)block * k * sizeof(float));
    q.sums = malloc((k * q.d + k) * sizeof(double));
    q.far = malloc((size_t)c->size * sizeof *q.far);
    dml_status st = DML_OK;
    if (!sub || !q.c_norms || !q.lab || !q.dist || !q.scores || !q.sums || !q.far)
        abort(); /* as dml_run_comm_open: a rank that cannot take part stops the job */
    q.x = sub;
    for (int m = 0; st == DML_OK && m < pq->m; m++) {
        for (int i = 0; i < n; i++) /* sub-space m, contiguous, as nn/pq.c trains it */
            memcpy(sub + (size_t)i * q.d, z + (size_t)i * pq->d + (size_t)m * q.d,
                   (size_t)q.d * sizeof(float));
        q.c = pq->centroids + (size_t)m * k * q.d;
        if (fresh) /* the start only (no iterations): the same on every rank */
            st = dml_kmeans(sub, n, q.d, q.k, 0, DML_KMEANS_PLUSPLUS, &r->rng, q.c, NULL, NULL,
                            err);
        if (st == DML_OK)
            lloyd(&q, r->cfg->pq.iters);
    }
    free(sub);
    free(q.c_norms);
    free(q.lab);
    free(q.dist);
    free(q.scores);
    free(q.sums);
    free(q.far);
    return st;
}
