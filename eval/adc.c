/* ADC top-k of a group of queries over 8-bit PQ codes, the scan dml_pq_search and the PQ
 * searcher run when k <= DML_SELECT_HEAP_MAX_K. The group's DML_ADC_GROUP tables are
 * interleaved, [m][code][query], so one code byte fetches every query's term with one vector
 * load, and the codes are read once a group instead of once a query. Each query's sums are the
 * ones dml_pq_adc_distances makes (0 + t[0][c0] + t[1][c1] + ..., in order of m), and its
 * top-k is dml_select_k's: the k smallest (distance, row), so the results are the per-query
 * scan's, bit for bit. Rows are scored a chunk at a time into a buffer that stays in L1; the
 * scan lists the rows that beat some query's current k-th, and only those are looked at. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define G DML_ADC_GROUP
#define CHUNK 256 /* rows scored before selecting (hits are int16_t) */
#define KSUB 256
#define CAND_PER_K 4 /* a lane holds up to this many times k candidates */

dml_status dml_adc_work_init(dml_adc_work *w, const dml_pq *pq)
{
    memset(w, 0, sizeof *w);
    w->tables = malloc((size_t)pq->m * KSUB * G * sizeof(float));
    w->books = malloc((size_t)pq->d * KSUB * sizeof(float));
    w->dist = malloc((size_t)CHUNK * G * sizeof(float));
    w->lanes = malloc(CHUNK);
    w->hits = malloc(CHUNK * sizeof *w->hits);
    w->keys = malloc((size_t)G * CAND_PER_K * DML_SELECT_HEAP_MAX_K * sizeof(uint64_t));
    if (!w->tables || !w->books || !w->dist || !w->lanes || !w->hits || !w->keys) {
        dml_adc_work_free(w);
        return DML_ERR_NOMEM;
    }
    for (int m = 0; m < pq->m; m++) /* [m][k][t] -> [m][t][k] */
        for (int k = 0; k < KSUB; k++)
            for (int t = 0; t < pq->dsub; t++)
                w->books[((size_t)m * pq->dsub + t) * KSUB + k] =
                    pq->centroids[((size_t)m * KSUB + k) * pq->dsub + t];
    return DML_OK;
}

void dml_adc_work_free(dml_adc_work *w)
{
    free(w->tables);
    free(w->books);
    free(w->dist);
    free(w->lanes);
    free(w->hits);
    free(w->keys);
    memset(w, 0, sizeof *w);
}

/* GCC/clang vector extensions: SSE on x86-64's baseline, NEON on arm64, plain code elsewhere;
 * GCC does not vectorise the loops over the group's lanes by itself. */
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f load4(const float *p)
{
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The lanes of a where a < th, as bits 0-3: the four compare masks folded without a shuffle. */
static inline unsigned below_bits(v4f a, v4f th)
{
    const v4i bit = {1, 2, 4, 8};
    v4i m = (a < th) & bit;
    uint64_t lo, hi;
    memcpy(&lo, &m, sizeof lo);
    memcpy(&hi, (const char *)&m + sizeof lo, sizeof hi);
    lo |= hi;
    return (unsigned)(lo | lo >> 32);
}

/* Rows [0, n) of codes[n, M] into dist[n][G], four rows at a time so four chains of vector
 * additions overlap; the rows with a lane below its thr are listed in hits (their lanes as
 * bits in lanes[row]), without a branch. Returns how many. Inlined with M a constant for the
 * usual M. */
static inline __attribute__((always_inline)) int scan_m(int M, const float *tables,
                                                        const uint8_t *codes, int n,
                                                        const float *thr, float *dist,
                                                        uint8_t *lanes, int16_t *hits)
{
    v4f th = load4(thr);
    int r = 0, nh = 0;
    for (; r + 4 <= n; r += 4) {
        const uint8_t *c = codes + (size_t)r * M;
        v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int m = 0; m < M; m++) {
            const float *t = tables + (size_t)m * KSUB * G;
            a0 += load4(t + (size_t)c[m] * G);
            a1 += load4(t + (size_t)c[M + m] * G);
            a2 += load4(t + (size_t)c[2 * M + m] * G);
            a3 += load4(t + (size_t)c[3 * M + m] * G);
        }
        float *o = dist + (size_t)r * G;
        memcpy(o, &a0, sizeof a0);
        memcpy(o + G, &a1, sizeof a1);
        memcpy(o + 2 * G, &a2, sizeof a2);
        memcpy(o + 3 * G, &a3, sizeof a3);
        const v4f a[4] = {a0, a1, a2, a3};
        for (int j = 0; j < 4; j++) {
            unsigned b = below_bits(a[j], th);
            lanes[r + j] = (uint8_t)b;
            hits[nh] = (int16_t)(r + j);
            nh += b != 0;
        }
    }
    for (; r < n; r++) {
        const uint8_t *c = codes + (size_t)r * M;
        v4f a = {0};
        for (int m = 0; m < M; m++)
            a += load4(tables + ((size_t)m * KSUB + c[m]) * G);
        memcpy(dist + (size_t)r * G, &a, sizeof a);
        unsigned b = below_bits(a, th);
        lanes[r] = (uint8_t)b;
        hits[nh] = (int16_t)r;
        nh += b != 0;
    }
    return nh;
}

static int scan(int M, const float *tables, const uint8_t *codes, int n, const float *thr,
                float *dist, uint8_t *lanes, int16_t *hits)
{
    switch (M) {
    case 4: return scan_m(4, tables, codes, n, thr, dist, lanes, hits);
    case 8: return scan_m(8, tables, codes, n, thr, dist, lanes, hits);
    case 16: return scan_m(16, tables, codes, n, thr, dist, lanes, hits);
    default: return scan_m(M, tables, codes, n, thr, dist, lanes, hits);
    }
}

/* The group's tables, interleaved: tables[m][k][q] = dml_pq_adc_table's table[m][k] for query
 * q, the same sum in the same order (0 + e0 * e0 + e1 * e1 + ...), eight centroids a step in
 * two vectors. Idle lanes (q >= nq) repeat query 0. */
static void group_tables(const dml_pq *pq, const float *books, const float *queries, int nq,
                         float *tables)
{
    int dsub = pq->dsub;
    for (int q = 0; q < G; q++) {
        const float *x = queries + (size_t)(q < nq ? q : 0) * pq->d;
        for (int m = 0; m < pq->m; m++) {
            const float *b = books + (size_t)m * dsub * KSUB, *xm = x + (size_t)m * dsub;
            float *out = tables + (size_t)m * KSUB * G + q;
            for (int k = 0; k < KSUB; k += 8) {
                v4f s0 = {0}, s1 = {0};
                for (int t = 0; t < dsub; t++) {
                    v4f e0 = xm[t] - load4(b + (size_t)t * KSUB + k);
                    v4f e1 = xm[t] - load4(b + (size_t)t * KSUB + k + 4);
                    s0 += e0 * e0;
                    s1 += e1 * e1;
                }
                for (int j = 0; j < 4; j++) {
                    out[(size_t)(k + j) * G] = s0[j];
                    out[(size_t)(k + 4 + j) * G] = s1[j];
                }
            }
        }
    }
}

/* A key's distance: the inverse of the sortable bits dml_select_key stores. */
static float key_score(uint64_t key)
{
    uint32_t u = (uint32_t)(key >> 32);
    u = u & 0x80000000u ? u & 0x7fffffffu : ~u;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Rearranges a[n] (distinct keys) so that a[0, k) are its k smallest, in no order: quickselect
 * with a median-of-three pivot and a partition without a data-dependent branch (the keys come
 * in no order, so a branch on each would be mispredicted half the time). */
static void keep_smallest(uint64_t *a, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        uint64_t x = a[lo], y = a[mid], z = a[hi];
        int pick = x < y ? (y < z ? mid : x < z ? hi : lo) : (x < z ? lo : y < z ? hi : mid);
        uint64_t p = a[pick];
        a[pick] = a[hi];
        a[hi] = p;
        int store = lo;
        for (int i = lo; i < hi; i++) {
            uint64_t v = a[i];
            a[i] = a[store];
            a[store] = v;
            store += v < p;
        }
        a[hi] = a[store];
        a[store] = p; /* a[lo, store) < p < a(store, hi] */
        if (store == k - 1 || store == k)
            return;
        if (store > k)
            hi = store - 1;
        else
            lo = store + 1;
    }
    if (hi > lo && a[hi] < a[lo]) {
        uint64_t t = a[lo];
        a[lo] = a[hi];
        a[hi] = t;
    }
}

/* a[n] in increasing order, in place (heap sort: glibc's qsort may allocate). */
static void sort_keys(uint64_t *a, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        dml_select_sift(a, i, n);
    for (int last = n - 1; last > 0; last--) {
        uint64_t top = a[0];
        a[0] = a[last];
        a[last] = top;
        dml_select_sift(a, 0, last);
    }
}

void dml_adc_topk(const dml_pq *pq, const uint8_t *codes, int n_ref, const float *queries, int nq,
                  const int *skip, int k, dml_adc_work *w, int32_t *idx, float *score, int *found)
{
    DML_ASSERT(pq->nbits == 8 && nq >= 1 && nq <= G && k >= 1 && k <= DML_SELECT_HEAP_MAX_K);
    group_tables(pq, w->books, queries, nq, w->tables);
    /* Each lane keeps candidate (distance, row) keys, dml_select_key's, in keys[q][0, cap):
     * rows below its threshold go in; a full list keeps its k smallest (a selection, far
     * cheaper than a heap insertion per row) and the threshold becomes the k-th. Rows come in
     * increasing order, so a row whose distance equals the k-th has a larger key: "below" is
     * exact. While fewer than k are held every row goes in (+inf distances too). A chunk's
     * rows are listed against the thresholds it started with (they only fall). */
    int cap = CAND_PER_K * k;
    float thr[G];
    int held[G];
    for (int q = 0; q < G; q++) {
        thr[q] = q < nq ? INFINITY : -INFINITY;
        held[q] = 0;
    }
    size_t cs = (size_t)pq->m;
    for (int r0 = 0; r0 < n_ref; r0 += CHUNK) {
        int n = n_ref - r0 < CHUNK ? n_ref - r0 : CHUNK;
        int nh = scan(pq->m, w->tables, codes + (size_t)r0 * cs, n, thr, w->dist, w->lanes,
                      w->hits);
        int filling = 0;
        for (int q = 0; q < nq; q++)
            filling |= held[q] < k;
        for (int h = 0; h < (filling ? n : nh); h++) {
            int r = filling ? h : w->hits[h];
            unsigned bits = filling ? (1u << nq) - 1 : w->lanes[r];
            const float *d = w->dist + (size_t)r * G;
            for (; bits; bits &= bits - 1) {
                int q = __builtin_ctz(bits);
                if (r0 + r == skip[q] || isnan(d[q]) || !(held[q] < k || d[q] < thr[q]))
                    continue;
                uint64_t *keys = w->keys + (size_t)q * cap;
                keys[held[q]++] = dml_select_key(d[q], r0 + r);
                if (held[q] == cap) {
                    keep_smallest(keys, cap, k);
                    held[q] = k;
                    uint64_t kth = keys[0];
                    for (int t = 1; t < k; t++)
                        kth = keys[t] > kth ? keys[t] : kth;
                    thr[q] = key_score(kth);
                }
            }
        }
    }
    for (int q = 0; q < nq; q++) {
        uint64_t *keys = w->keys + (size_t)q * cap;
        if (held[q] > k)
            keep_smallest(keys, held[q], k);
        found[q] = held[q] < k ? held[q] : k;
        sort_keys(keys, found[q]);
        for (int t = 0; t < k; t++) {
            idx[(size_t)q * k + t] = t < found[q] ? (int32_t)(uint32_t)keys[t] : -1;
            score[(size_t)q * k + t] = t < found[q] ? key_score(keys[t]) : INFINITY;
        }
    }
}
