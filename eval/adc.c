/* ADC top-k of a group of queries over 8-bit PQ codes, the scan dml_pq_search and the PQ
 * searcher run when k fits the heap. The group's DML_ADC_GROUP tables are interleaved,
 * [m][code][query], so one code byte fetches every query's term with one vector load; codes
 * are read once per group instead of once per query. Each query's sums are the ones
 * dml_pq_adc_distances makes (0 + t[0][c0] + t[1][c1] + ..., in order of m), and its top-k is
 * dml_select_k's: the k smallest (distance, row), so the results are those of the per-query
 * scan. Rows are scored a chunk at a time into a small buffer; a chunk's rows reach a query's
 * heap only when they beat its current k-th distance. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define G DML_ADC_GROUP
#define CHUNK 256 /* rows scored before selecting: [CHUNK][G] floats stay in L1 */
#define KSUB 256

dml_status dml_adc_work_init(dml_adc_work *w, const dml_pq *pq)
{
    memset(w, 0, sizeof *w);
    w->tables = malloc((size_t)pq->m * KSUB * G * sizeof(float));
    w->raw = malloc((size_t)pq->m * KSUB * sizeof(float));
    w->dist = malloc((size_t)CHUNK * G * sizeof(float));
    w->heap = malloc((size_t)G * DML_SELECT_HEAP_MAX_K * sizeof(uint64_t));
    if (!w->tables || !w->raw || !w->dist || !w->heap) {
        dml_adc_work_free(w);
        return DML_ERR_NOMEM;
    }
    return DML_OK;
}

void dml_adc_work_free(dml_adc_work *w)
{
    free(w->tables);
    free(w->raw);
    free(w->dist);
    free(w->heap);
    memset(w, 0, sizeof *w);
}

/* Rows [0, n) of codes[n, M] into dist[n][G]: four rows at a time, so four chains of vector
 * additions overlap. Inlined with M a constant for the usual M. */
static inline __attribute__((always_inline)) void scan_m(int M, const float *tables,
                                                         const uint8_t *codes, int n, float *dist)
{
    int r = 0;
    for (; r + 4 <= n; r += 4) {
        const uint8_t *c = codes + (size_t)r * M;
        float a0[G] = {0}, a1[G] = {0}, a2[G] = {0}, a3[G] = {0};
        for (int m = 0; m < M; m++) {
            const float *t = tables + (size_t)m * KSUB * G;
            const float *t0 = t + c[m] * G, *t1 = t + c[M + m] * G, *t2 = t + c[2 * M + m] * G,
                        *t3 = t + c[3 * M + m] * G;
            for (int q = 0; q < G; q++) {
                a0[q] += t0[q];
                a1[q] += t1[q];
                a2[q] += t2[q];
                a3[q] += t3[q];
            }
        }
        float *o = dist + (size_t)r * G;
        for (int q = 0; q < G; q++) {
            o[q] = a0[q];
            o[G + q] = a1[q];
            o[2 * G + q] = a2[q];
            o[3 * G + q] = a3[q];
        }
    }
    for (; r < n; r++) {
        const uint8_t *c = codes + (size_t)r * M;
        float a[G] = {0};
        for (int m = 0; m < M; m++) {
            const float *t = tables + ((size_t)m * KSUB + c[m]) * G;
            for (int q = 0; q < G; q++)
                a[q] += t[q];
        }
        memcpy(dist + (size_t)r * G, a, sizeof a);
    }
}

static void scan(int M, const float *tables, const uint8_t *codes, int n, float *dist)
{
    switch (M) {
    case 4: scan_m(4, tables, codes, n, dist); break;
    case 8: scan_m(8, tables, codes, n, dist); break;
    case 16: scan_m(16, tables, codes, n, dist); break;
    default: scan_m(M, tables, codes, n, dist); break;
    }
}

/* A heap key's score: the inverse of the sortable bits dml_select_key stores. */
static float key_score(uint64_t key)
{
    uint32_t u = (uint32_t)(key >> 32);
    u = u & 0x80000000u ? u & 0x7fffffffu : ~u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

void dml_adc_topk(const dml_pq *pq, const uint8_t *codes, int n_ref, const float *queries, int nq,
                  const int *skip, int k, dml_adc_work *w, int32_t *idx, float *score, int *found)
{
    DML_ASSERT(pq->nbits == 8 && nq >= 1 && nq <= G && k >= 1 && k <= DML_SELECT_HEAP_MAX_K);
    size_t ts = (size_t)pq->m * KSUB;
    for (int q = 0; q < G; q++) { /* idle lanes repeat query 0: scanned, never selected */
        if (q < nq)
            dml_pq_adc_table(pq, queries + (size_t)q * pq->d, w->raw);
        for (size_t e = 0; e < ts; e++)
            w->tables[e * G + q] = w->raw[e];
    }
    float thr[G]; /* a lane's k-th distance once its heap is full: only rows below it enter */
    int count[G];
    for (int q = 0; q < G; q++) {
        thr[q] = q < nq ? INFINITY : -INFINITY;
        count[q] = 0;
        for (int t = 0; t < k; t++)
            w->heap[q * k + t] = DML_SELECT_EMPTY;
    }
    size_t cs = (size_t)pq->m;
    for (int r0 = 0; r0 < n_ref; r0 += CHUNK) {
        int n = n_ref - r0 < CHUNK ? n_ref - r0 : CHUNK;
        scan(pq->m, w->tables, codes + (size_t)r0 * cs, n, w->dist);
        int filling = 0;
        for (int q = 0; q < nq; q++)
            filling |= count[q] < k;
        for (int r = 0; r < n; r++) {
            const float *d = w->dist + (size_t)r * G;
            int hit = filling;
            for (int q = 0; q < G; q++)
                hit |= d[q] < thr[q];
            if (!hit)
                continue;
            for (int q = 0; q < nq; q++) {
                uint64_t *h = w->heap + q * k;
                if (r0 + r == skip[q] || isnan(d[q]) || !(count[q] < k || d[q] < thr[q]))
                    continue;
                uint64_t key = dml_select_key(d[q], r0 + r);
                if (key >= h[0])
                    continue;
                h[0] = key;
                dml_select_sift_down(h, k);
                if (++count[q] >= k)
                    thr[q] = key_score(h[0]);
            }
        }
    }
    for (int q = 0; q < nq; q++) {
        found[q] = dml_select_heap_sort(w->heap + q * k, k, count[q], idx + (size_t)q * k);
        for (int t = 0; t < k; t++) {
            if (t >= found[q])
                idx[(size_t)q * k + t] = -1;
            score[(size_t)q * k + t] = t < found[q] ? key_score(w->heap[q * k + t]) : INFINITY;
        }
    }
}
