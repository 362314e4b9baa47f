/* Blocked nearest-neighbour search: one GEMM scores a block of queries against every reference,
 * then each query selects its k best (eval/select.c). Memory is O(block x references), never
 * queries x references. ADC over codes has no GEMM to share: each query's scan runs just before
 * its selection, into its thread's own score row, so the row is still in cache when selected. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define SCORE_BYTES (32u << 20) /* the block's score matrix */
#define MAX_BLOCK 1024

int dml_searcher_pick_block(int block, int n_ref)
{
    if (block > 0)
        return block;
    size_t fit = SCORE_BYTES / sizeof(float) / (size_t)(n_ref > 0 ? n_ref : 1);
    return fit < 1 ? 1 : fit > MAX_BLOCK ? MAX_BLOCK : (int)fit;
}

/* Rows scaled to unit length; a zero row stays zero. */
static void normalise_rows(float *x, const float *src, int n, int d)
{
    for (int i = 0; i < n; i++) {
        const float *r = src + (size_t)i * d;
        double s = 0.0;
        for (int t = 0; t < d; t++)
            s += (double)r[t] * r[t];
        float inv = s > 0.0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int t = 0; t < d; t++)
            x[(size_t)i * d + t] = r[t] * inv;
    }
}

static dml_status alloc_common(dml_searcher *s, int d, int max_k, dml_error *err)
{
    size_t n_ref = (size_t)(s->n_cap > 0 ? s->n_cap : 1);
    size_t score_rows = (size_t)(s->pq ? s->threads : s->block);
    s->scores = malloc(score_rows * n_ref * sizeof(float));
    s->q = malloc((size_t)s->block * (size_t)(d > 0 ? d : 1) * sizeof(float));
    s->max_k = max_k;
    int ok = s->scores && s->q, radix = max_k > DML_SELECT_HEAP_MAX_K;
    if (radix) {
        s->sel = calloc((size_t)s->threads, sizeof *s->sel);
        ok = ok && s->sel;
    }
    for (int t = 0; ok && radix && t < s->threads; t++)
        ok = dml_select_buf_init(&s->sel[t], s->n_ref, NULL) == DML_OK;
    if (!ok) {
        int block = s->block, n = s->n_ref;
        dml_searcher_free(s);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                             "out of memory for the search scores (%d queries x %d references)",
                             block, n);
    }
    return DML_OK;
}

dml_status dml_searcher_init(dml_searcher *s, const float *ref, int n_ref, int d,
                             dml_eval_distance distance, int block, int threads, int max_k,
                             dml_error *err)
{
    memset(s, 0, sizeof *s);
    if (!ref || n_ref < 1 || d < 1)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "search: expected at least one reference row of width >= 1 "
                             "(got %d rows of width %d)", n_ref, d);
    s->d = d;
    s->n_ref = s->n_cap = n_ref;
    s->distance = distance;
    s->block = s->tile_q = dml_searcher_pick_block(block, n_ref);
    s->threads = dml_eval_threads(threads);
    dml_status st = alloc_common(s, d, max_k, err);
    if (st != DML_OK)
        return st;
    if (distance == DML_EVAL_COSINE)
        s->ref_copy = malloc((size_t)n_ref * d * sizeof(float));
    else if (distance == DML_EVAL_L2SQ || distance == DML_EVAL_L2)
        s->ref_norms = malloc((size_t)n_ref * sizeof(float));
    if ((distance == DML_EVAL_COSINE && !s->ref_copy) || (distance <= DML_EVAL_L2 && !s->ref_norms)) {
        dml_searcher_free(s);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the search");
    }
    dml_searcher_set_refs(s, ref, n_ref);
    return DML_OK;
}

void dml_searcher_set_refs(dml_searcher *s, const float *ref, int n_ref)
{
    DML_ASSERT(!s->pq && ref && n_ref >= 1 && n_ref <= s->n_cap);
    int d = s->d;
    s->n_ref = n_ref;
    s->ref = ref;
    if (s->distance == DML_EVAL_COSINE) {
        normalise_rows(s->ref_copy, ref, n_ref, d);
        s->ref = s->ref_copy;
    }
    for (int j = 0; s->ref_norms && j < n_ref; j++) {
        float acc = 0.0f;
        for (int t = 0; t < d; t++)
            acc += ref[(size_t)j * d + t] * ref[(size_t)j * d + t];
        s->ref_norms[j] = acc;
    }
}

void dml_searcher_set_codes(dml_searcher *s, const uint8_t *codes, int n_ref)
{
    DML_ASSERT(s->pq && codes && n_ref >= 1 && n_ref <= s->n_cap);
    s->codes = codes;
    s->n_ref = n_ref;
}

dml_status dml_searcher_init_pq(dml_searcher *s, const dml_pq *pq, const uint8_t *codes, int n_ref,
                                int block, int threads, int max_k, dml_error *err)
{
    memset(s, 0, sizeof *s);
    if (!pq || !codes || n_ref < 1)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "PQ search: expected codebooks and at least one code (got %d)", n_ref);
    s->d = pq->d;
    s->n_ref = s->n_cap = n_ref;
    s->distance = DML_EVAL_L2SQ;
    s->block = s->tile_q = block > 0 ? block : MAX_BLOCK; /* only queries are held per block */
    s->threads = dml_eval_threads(threads);
    s->pq = pq;
    s->codes = codes;
    dml_status st = alloc_common(s, pq->d, max_k, err);
    if (st != DML_OK)
        return st;
    s->tables = malloc((size_t)s->threads * pq->m * pq->ksub * sizeof(float));
    int ok = s->tables != NULL;
    if (ok && pq->nbits == 8) {
        s->adc = calloc((size_t)s->threads, sizeof *s->adc);
        ok = s->adc != NULL;
        for (int t = 0; ok && t < s->threads; t++)
            ok = dml_adc_work_init(&s->adc[t], pq) == DML_OK;
    }
    if (!ok) {
        dml_searcher_free(s);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the ADC tables");
    }
    return DML_OK;
}

void dml_searcher_free(dml_searcher *s)
{
    for (int t = 0; s->sel && t < s->threads; t++)
        dml_select_buf_free(&s->sel[t]);
    free(s->sel);
    for (int t = 0; s->adc && t < s->threads; t++)
        dml_adc_work_free(&s->adc[t]);
    free(s->adc);
    free(s->ref_copy);
    free(s->ref_norms);
    free(s->q);
    free(s->tables);
    free(s->scores);
    memset(s, 0, sizeof *s);
}

/* Rows [begin, end) of the block after the GEMM: squared distances from -2 q.r. */
static void finish_l2(void *ctx, int begin, int end, int thread)
{
    (void)thread;
    dml_searcher *s = ctx;
    for (int i = begin; i < end; i++) {
        const float *q = s->q + (size_t)i * s->d;
        float qn = 0.0f;
        for (int t = 0; t < s->d; t++)
            qn += q[t] * q[t];
        float *row = s->scores + (size_t)i * s->n_ref;
        for (int j = 0; j < s->n_ref; j++) {
            float v = row[j] + qn + s->ref_norms[j];
            row[j] = v > 0.0f ? v : 0.0f; /* rounding can dip below 0 for (near) duplicates */
        }
    }
}

static void finish_cosine(void *ctx, int begin, int end, int thread)
{
    (void)thread;
    dml_searcher *s = ctx;
    for (size_t k = (size_t)begin * s->n_ref; k < (size_t)end * s->n_ref; k++)
        s->scores[k] += 1.0f;
}

void dml_searcher_score(dml_searcher *s, const float *q, int n)
{
    DML_ASSERT(n >= 0 && n <= s->block);
    s->n_scored = n;
    if (s->distance == DML_EVAL_COSINE)
        normalise_rows(s->q, q, n, s->d);
    else
        memcpy(s->q, q, (size_t)n * s->d * sizeof(float));
    if (s->pq)
        return; /* scanned query by query in dml_searcher_topk */
    int l2 = s->distance == DML_EVAL_L2SQ || s->distance == DML_EVAL_L2;
    /* Fixed tiles, not one GEMM: sgemm's rounding depends on the call's shape, and a database
     * searched chunk by chunk (eval/stream.c) issues these very calls, so both give the same
     * scores. References outer: a tile stays in cache across the query tiles. */
    for (int j0 = 0; j0 < s->n_ref; j0 += DML_SEARCH_REF_TILE) {
        int nj = s->n_ref - j0 < DML_SEARCH_REF_TILE ? s->n_ref - j0 : DML_SEARCH_REF_TILE;
        for (int i0 = 0; i0 < n; i0 += s->tile_q) {
            int ni = n - i0 < s->tile_q ? n - i0 : s->tile_q;
            dml_gemm(0, 1, ni, nj, s->d, l2 ? -2.0f : -1.0f, s->q + (size_t)i0 * s->d, s->d,
                     s->ref + (size_t)j0 * s->d, s->d, 0.0f,
                     s->scores + (size_t)i0 * s->n_ref + j0, s->n_ref);
        }
    }
    if (l2)
        dml_parallel_for(s->threads, n, finish_l2, s);
    else if (s->distance == DML_EVAL_COSINE)
        dml_parallel_for(s->threads, n, finish_cosine, s);
}

int dml_searcher_topk(dml_searcher *s, int i, int skip, int k, int thread, int32_t *idx,
                      float *score)
{
    DML_ASSERT(i >= 0 && i < s->n_scored && thread >= 0 && thread < s->threads && k <= s->max_k);
    float *row = s->scores + (size_t)i * s->n_ref;
    if (s->pq) {
        float *table = s->tables + (size_t)thread * s->pq->m * s->pq->ksub;
        row = s->scores + (size_t)thread * s->n_ref;
        dml_pq_adc_table(s->pq, s->q + (size_t)i * s->d, table);
        dml_pq_adc_distances(s->pq, table, s->codes, (size_t)s->n_ref, row);
    }
    return dml_select_k(row, s->n_ref, skip, k, s->sel ? &s->sel[thread] : NULL, idx, score);
}

int dml_searcher_group(const dml_searcher *s, int k)
{
    return s->adc && k <= DML_SELECT_HEAP_MAX_K ? DML_ADC_GROUP : 1;
}

void dml_searcher_topk_n(dml_searcher *s, int i, int n, int skip, int k, int thread, int32_t *idx,
                         float *score, int *found)
{
    DML_ASSERT(n >= 1 && n <= dml_searcher_group(s, k) && i + n <= s->n_scored);
    if (n == 1 || !s->adc) { /* one query: its own scan costs less than a group's four lanes */
        for (int j = 0; j < n; j++)
            found[j] = dml_searcher_topk(s, i + j, skip < 0 ? -1 : skip + j, k, thread,
                                         idx + (size_t)j * k, score + (size_t)j * k);
        return;
    }
    int skips[DML_ADC_GROUP];
    for (int j = 0; j < n; j++)
        skips[j] = skip < 0 ? -1 : skip + j;
    dml_adc_topk(s->pq, s->codes, s->n_ref, s->q + (size_t)i * s->d, n, skips, k, &s->adc[thread],
                 idx, score, found);
}

float dml_searcher_distance(const dml_searcher *s, float score)
{
    if (s->distance == DML_EVAL_L2 && !s->pq)
        return sqrtf(score);
    if (s->distance == DML_EVAL_IP)
        return -score;
    return score;
}

typedef struct knn_ctx {
    dml_searcher *s;
    int q0, k, exclude_self;
    int32_t *idx;
    float *dist;
} knn_ctx;

static void knn_rows(void *arg, int begin, int end, int thread)
{
    knn_ctx *c = arg;
    int g = dml_searcher_group(c->s, c->k), found[DML_ADC_GROUP];
    for (int i = begin; i < end; i += g) {
        int n = end - i < g ? end - i : g;
        size_t at = (size_t)(c->q0 + i) * c->k;
        dml_searcher_topk_n(c->s, i, n, c->exclude_self ? c->q0 + i : -1, c->k, thread, c->idx + at,
                            c->dist + at, found);
        for (int j = 0; j < n; j++)
            for (int t = 0; t < found[j]; t++)
                c->dist[at + (size_t)j * c->k + t] =
                    dml_searcher_distance(c->s, c->dist[at + (size_t)j * c->k + t]);
    }
}

dml_status dml_knn_search(dml_searcher *s, const float *q, int n_q, int k, int exclude_self,
                          int32_t *idx, float *dist, dml_error *err)
{
    if (n_q < 0 || k < 1 || k > s->max_k || (n_q > 0 && (!q || !idx || !dist)))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "search: expected 1 <= k <= %d (the searcher's max_k) and "
                             "query/output buffers (k = %d)", s->max_k, k);
    if (exclude_self && n_q > s->n_ref)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "search: excluding self needs the queries to be the %d references, "
                             "got %d queries", s->n_ref, n_q);
    knn_ctx c = {s, 0, k, exclude_self, idx, dist};
    for (c.q0 = 0; c.q0 < n_q; c.q0 += s->block) {
        int n = n_q - c.q0 < s->block ? n_q - c.q0 : s->block;
        dml_searcher_score(s, q + (size_t)c.q0 * s->d, n);
        dml_parallel_for(s->threads, n, knn_rows, &c);
    }
    return DML_OK;
}
