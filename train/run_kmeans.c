/* The product quantizer's k-means over the ranks (docs/scale.md): each rank holds the
 * embeddings of its own shard of the rows only (whole DML_RUN_EMBED_BLOCKs, so they are the
 * bits one process computes). The k-means++ start is nn/kmeans.c's, distributed: every rank
 * draws from the run's generator as one process does, sums the distances of its rows, and the
 * sums of the ranks, added in rank order, say which rank holds the row drawn; that rank sends
 * it. Each Lloyd iteration assigns the rank's rows, and the per-cluster sums and counts are
 * summed over the ranks (in double, one allreduce per sub-space and iteration); an empty
 * cluster takes the farthest row of the largest one, compared across the ranks. So the
 * codebooks are one process's within the rounding of the sums' order. */
#include <math.h>
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
    const float *x;       /* [nl, d] one sub-space of this rank's rows */
    int n, d, k, lo, nl;  /* rows in all; this rank's are [lo, lo + nl) */
    int *begin;           /* [size + 1] every rank's first row */
    float *c, *c_norms;   /* [k, d], [k] */
    int *lab;             /* [nl] */
    float *dist, *scores; /* [nl] (k-means++: the distance to the nearest centroid), GEMM scratch */
    float *x_norms;       /* [nl] */
    double *sums;         /* [k, d] sums, then [k] counts; k-means++: [size] each rank's total */
    far_row *far;         /* [size] */
    float *rows;          /* [size + 1, d] a row from each rank, then this rank's offer */
    int32_t *picks;       /* [size, 2] */
} km_ctx;

void dml_run_shard_rows(int n, int rank, int size, int *lo, int *hi)
{
    long blocks = ((long)n + DML_RUN_EMBED_BLOCK - 1) / DML_RUN_EMBED_BLOCK;
    long a = DML_RUN_EMBED_BLOCK * (blocks * rank / size);
    long b = DML_RUN_EMBED_BLOCK * (blocks * (rank + 1) / size);
    *lo = a < n ? (int)a : n;
    *hi = b < n ? (int)b : n;
}

/* Global row `row` of the sub-space into out[d], sent by the rank that holds it. */
static void fetch_row(km_ctx *q, int row, float *out)
{
    const dml_comm *c = q->comm;
    float *offer = q->rows + (size_t)c->size * q->d;
    int owner = 0;
    while (row >= q->begin[owner + 1])
        owner++;
    if (owner == c->rank)
        memcpy(offer, q->x + (size_t)(row - q->lo) * q->d, (size_t)q->d * sizeof *offer);
    else
        memset(offer, 0, (size_t)q->d * sizeof *offer);
    c->allgather(c->ctx, offer, q->rows, (size_t)q->d * sizeof *offer);
    memcpy(out, q->rows + (size_t)owner * q->d, (size_t)q->d * sizeof *out);
}

static float sq_norm(const float *v, int d)
{
    float s = 0.0f;
    for (int t = 0; t < d; t++)
        s += v[t] * v[t];
    return s;
}

/* The row of the draw r in the distances of every rank, summed in row order (this rank's
 * begins at prefix): the first row whose running sum passes r, or (r in the rounding slack
 * at the end) the last row not on a centroid. */
static int drawn_row(km_ctx *q, double prefix, double r)
{
    const dml_comm *c = q->comm;
    int32_t mine[2] = {-1, -1};
    double acc = prefix;
    for (int i = 0; i < q->nl && mine[0] < 0; i++) {
        acc += q->dist[i];
        if (acc > r)
            mine[0] = q->lo + i;
    }
    for (int i = q->nl - 1; i >= 0 && mine[1] < 0; i--)
        if (q->dist[i] != 0.0f)
            mine[1] = q->lo + i;
    c->allgather(c->ctx, mine, q->picks, sizeof mine);
    for (int k = 0; k < c->size; k++)
        if (q->picks[2 * k] >= 0)
            return q->picks[2 * k];
    int last = -1;
    for (int k = 0; k < c->size; k++)
        last = q->picks[2 * k + 1] >= 0 ? q->picks[2 * k + 1] : last;
    return last;
}

/* nn/kmeans.c's k-means++ start over the ranks' rows, with its draws from rng. */
static void plusplus(km_ctx *q, dml_rng *rng)
{
    const dml_comm *c = q->comm;
    int block = dml_kmeans_block_rows(q->nl > 0 ? q->nl : 1, q->k);
    for (int i = 0; i < q->nl; i++) {
        q->x_norms[i] = sq_norm(q->x + (size_t)i * q->d, q->d);
        q->dist[i] = INFINITY;
    }
    int pick = (int)dml_rng_below(rng, (uint32_t)q->n);
    for (int j = 0;; j++) {
        float *cj = q->c + (size_t)j * q->d;
        fetch_row(q, pick, cj);
        if (j + 1 == q->k)
            return;
        float cn = sq_norm(cj, q->d);
        double total = 0.0;
        for (int i0 = 0; i0 < q->nl; i0 += block) {
            int rows = q->nl - i0 < block ? q->nl - i0 : block;
            dml_gemm(0, 1, rows, 1, q->d, 1.0f, q->x + (size_t)i0 * q->d, q->d, cj, q->d, 0.0f,
                     q->scores, 1);
            for (int r = 0; r < rows; r++) {
                float e = q->x_norms[i0 + r] + cn - 2.0f * q->scores[r];
                e = e > 0.0f ? e : 0.0f;
                if (e < q->dist[i0 + r])
                    q->dist[i0 + r] = e;
                total += q->dist[i0 + r];
            }
        }
        if (pick >= q->lo && pick < q->lo + q->nl) { /* the pick's own distance: exactly 0 */
            total -= q->dist[pick - q->lo];
            q->dist[pick - q->lo] = 0.0f;
        }
        c->allgather(c->ctx, &total, q->sums, sizeof total);
        double all = 0.0, prefix = 0.0;
        for (int k = 0; k < c->size; k++) {
            prefix = k == c->rank ? all : prefix;
            all += q->sums[k];
        }
        if (!(all > 0.0)) { /* every row sits on a centroid already: any row will do */
            pick = (int)dml_rng_below(rng, (uint32_t)q->n);
            continue;
        }
        pick = drawn_row(q, prefix, (double)dml_rng_uniform(rng) * all);
    }
}

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
        for (int i = 0; i < q->nl; i++)
            if (q->lab[i] == big && (mine.row < 0 || q->dist[i] > mine.dist))
                mine = (far_row){q->dist[i], q->lo + i};
        c->allgather(c->ctx, &mine, q->far, sizeof mine);
        far_row best = {0.0f, -1};
        for (int r = 0; r < c->size; r++) /* ranks in row order: the first of equals wins */
            if (q->far[r].row >= 0 && (best.row < 0 || q->far[r].dist > best.dist))
                best = q->far[r];
        DML_ASSERT(best.row >= 0);
        fetch_row(q, best.row, q->c + (size_t)j * q->d);
        if (best.row >= q->lo && best.row < q->lo + q->nl) {
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
        for (int j = 0; j < q->k; j++)
            q->c_norms[j] = sq_norm(q->c + (size_t)j * q->d, q->d);
        if (q->nl > 0)
            dml_kmeans_assign(q->x, q->nl, q->d, q->c, q->k, q->c_norms, q->lab, q->dist,
                              q->scores);
        memset(q->sums, 0, (kd + (size_t)q->k) * sizeof *q->sums);
        for (int i = 0; i < q->nl; i++) {
            const float *xi = q->x + (size_t)i * q->d;
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

dml_status dml_run_pq_fit_ranks(dml_run *r, const float *z, int n, int lo, int nl, int fresh,
                                dml_error *err)
{
    dml_pq *pq = &r->pq;
    const dml_comm *c = r->comm;
    if (n < pq->ksub)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "PQ training needs at least ksub = %d rows, got %d", pq->ksub, n);
    km_ctx q = {.comm = c, .n = n, .d = pq->dsub, .k = pq->ksub, .lo = lo, .nl = nl};
    size_t rows = (size_t)nl + 1, k = (size_t)q.k, size = (size_t)c->size;
    int block = dml_kmeans_block_rows(nl > 0 ? nl : 1, q.k);
    size_t sums = k * q.d + k > size ? k * q.d + k : size;
    float *sub = malloc(rows * q.d * sizeof(float));
    q.begin = malloc((size + 1) * sizeof *q.begin);
    q.c_norms = malloc(k * sizeof(float));
    q.lab = malloc(rows * sizeof(int));
    q.dist = malloc(rows * sizeof(float));
    q.x_norms = malloc(rows * sizeof(float));
    q.scores = malloc((size_t)block * k * sizeof(float));
    q.sums = malloc(sums * sizeof(double));
    q.far = malloc(size * sizeof *q.far);
    q.rows = malloc((size + 1) * q.d * sizeof(float));
    q.picks = malloc(2 * size * sizeof *q.picks);
    if (!sub || !q.begin || !q.c_norms || !q.lab || !q.dist || !q.x_norms || !q.scores ||
        !q.sums || !q.far || !q.rows || !q.picks)
        abort(); /* as dml_run_comm_open: a rank that cannot take part stops the job */
    for (int k = 0; k < c->size; k++)
        dml_run_shard_rows(n, k, c->size, &q.begin[k], &q.begin[k + 1]);
    q.x = sub;
    float bad = 0.0f; /* as dml_kmeans, non-finite input is refused: by every rank */
    for (size_t i = 0; i < (size_t)nl * pq->d; i++)
        bad += !isfinite(z[i]);
    c->allreduce_sum(c->ctx, &bad, 1);
    dml_status st = bad > 0.0f ? dml_error_set(err, DML_ERR_DATA, NULL, 0, 0,
                                               "k-means input: %.0f embeddings of the training "
                                               "rows are not finite (expected finite numbers)",
                                               (double)bad)
                               : DML_OK;
    for (int m = 0; st == DML_OK && m < pq->m; m++) {
        for (int i = 0; i < nl; i++) /* sub-space m, contiguous, as nn/pq.c trains it */
            memcpy(sub + (size_t)i * q.d, z + (size_t)i * pq->d + (size_t)m * q.d,
                   (size_t)q.d * sizeof(float));
        q.c = pq->centroids + (size_t)m * k * q.d;
        if (fresh) /* the start only; the same on every rank */
            plusplus(&q, &r->rng);
        lloyd(&q, r->cfg->pq.iters);
    }
    free(sub);
    free(q.begin);
    free(q.c_norms);
    free(q.lab);
    free(q.dist);
    free(q.x_norms);
    free(q.scores);
    free(q.sums);
    free(q.far);
    free(q.rows);
    free(q.picks);
    return st;
}
