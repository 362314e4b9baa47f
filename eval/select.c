/* The k nearest of one query's scores, ordered by (score, row) so ties keep the lower row first.
 * Small k: a bounded max-heap over one scan. Large k (map_at_r wants k = the largest class, map_all
 * the whole ranking): a radix select on the scores' bits, whose cost stays O(n) where a heap's
 * insertions would grow with k log k, then a stable radix sort of the k selected. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define DIGIT_BITS 11
#define BUCKETS (1 << DIGIT_BITS)
#define SORT_BITS 8 /* the final sort: 256 write streams stay in L1 */
#define SORT_BUCKETS (1 << SORT_BITS)

dml_status dml_select_buf_init(dml_select_buf *b, int n, dml_error *err)
{
    memset(b, 0, sizeof *b);
    size_t m = (size_t)(n > 0 ? n : 1);
    int ok = 1;
    for (int t = 0; t < 3; t++) {
        b->keys[t] = malloc(m * sizeof(uint32_t));
        b->rows[t] = malloc(m * sizeof(int32_t));
        ok = ok && b->keys[t] && b->rows[t];
    }
    if (!ok) {
        dml_select_buf_free(b);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the top-k");
    }
    return DML_OK;
}

void dml_select_buf_free(dml_select_buf *b)
{
    for (int t = 0; t < 3; t++) {
        free(b->keys[t]);
        free(b->rows[t]);
    }
    memset(b, 0, sizeof *b);
}

/* A float's bits as an unsigned key with the same order (NaN sorts past +inf). */
static uint32_t sortable(float f)
{
    if (f == 0.0f)
        f = 0.0f; /* -0 equals +0: the same key, so row order decides */
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

uint64_t dml_select_key(float score, int32_t row)
{
    return (uint64_t)sortable(score) << 32 | (uint32_t)row;
}

#define EMPTY_SLOT UINT64_MAX /* worse than any (score, row), +inf scores included */

void dml_select_sift(uint64_t *h, int i, int n)
{
    uint64_t v = h[i];
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && h[c + 1] > h[c])
            c++;
        if (h[c] <= v)
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
}

static int select_heap(const float *row, int n, int skip, int k, int32_t *idx, float *score)
{
    enum { SCAN_BLOCK = 32 };
    uint64_t heap[DML_SELECT_HEAP_MAX_K];
    for (int t = 0; t < k; t++)
        heap[t] = EMPTY_SLOT;
    int found = 0;
    for (int j = 0; j < n;) {
        int end = n - j > SCAN_BLOCK ? j + SCAN_BLOCK : n;
        if (heap[0] != EMPTY_SLOT) { /* heap full: most blocks hold nothing below its root; one
                                      * vectorised count says so without a branch per score */
            const float root = row[(uint32_t)heap[0]];
            int below = 0;
            for (int t = j; t < end; t++)
                below += row[t] < root;
            if (!below) {
                j = end;
                continue;
            }
        }
        for (; j < end; j++) {
            if (j == skip || isnan(row[j]))
                continue;
            uint64_t key = dml_select_key(row[j], j);
            if (key >= heap[0])
                continue;
            heap[0] = key;
            dml_select_sift(heap, 0, k);
            found++;
        }
    }
    for (int last = k - 1; last > 0; last--) { /* heap sort: nearest first */
        uint64_t top = heap[0];
        heap[0] = heap[last];
        heap[last] = top;
        dml_select_sift(heap, 0, last);
    }
    found = found < k ? found : k;
    for (int t = 0; t < found; t++) {
        idx[t] = (int32_t)(uint32_t)heap[t];
        score[t] = row[idx[t]];
    }
    return found;
}

/* Stable LSD radix sort of keys[n] carrying rows[n]; tk/tr are scratch of n. The sorted arrays
 * end in *keys / *rows (the pointers may swap with the scratch). */
static void radix_sort(uint32_t **keys, int32_t **rows, uint32_t **tk, int32_t **tr, int n)
{
    int count[SORT_BUCKETS];
    for (int shift = 0; shift < 32; shift += SORT_BITS) {
        uint32_t *k = *keys, *ko = *tk;
        int32_t *r = *rows, *ro = *tr;
        memset(count, 0, sizeof count);
        for (int j = 0; j < n; j++)
            count[(k[j] >> shift) & (SORT_BUCKETS - 1)]++;
        if (n == 0 || count[(k[0] >> shift) & (SORT_BUCKETS - 1)] == n)
            continue; /* one digit for every key: the pass would move nothing */
        for (int b = 0, sum = 0; b < SORT_BUCKETS; b++) {
            int here = count[b];
            count[b] = sum;
            sum += here;
        }
        for (int j = 0; j < n; j++) {
            int to = count[(k[j] >> shift) & (SORT_BUCKETS - 1)]++;
            ko[to] = k[j];
            ro[to] = r[j];
        }
        *tk = k;
        *keys = ko;
        *tr = r;
        *rows = ro;
    }
}

/* Most significant digit first: the candidates whose digit is below the bucket holding the
 * k-th smallest are in, those in that bucket go on to the next digit, the rest are out. Every
 * list stays in row order, so equal keys keep it through the final stable sort. */
static int select_radix(const float *row, int n, int skip, int k, dml_select_buf *b,
                        int32_t *idx, float *score)
{
    uint32_t *ck = b->keys[0], *nk = b->keys[1], *sk = b->keys[2];
    int32_t *cr = b->rows[0], *nr = b->rows[1], *sr = b->rows[2];
    int m = 0;
    for (int j = 0; j < n; j++)
        if (j != skip) {
            ck[m] = sortable(row[j]);
            cr[m++] = j;
        }
    int chosen = 0, need = k < m ? k : m;
    if (need == m) { /* everything: just sort */
        memcpy(sk, ck, (size_t)m * sizeof *sk);
        memcpy(sr, cr, (size_t)m * sizeof *sr);
        chosen = m;
        need = 0;
    }
    int count[BUCKETS];
    for (int shift = 32 - DIGIT_BITS; need > 0; shift -= DIGIT_BITS) {
        int lo = shift < 0 ? 0 : shift, width = shift < 0 ? DIGIT_BITS + shift : DIGIT_BITS;
        if (width <= 0) { /* every bit seen: the candidates are equal, take them in row order */
            memcpy(sk + chosen, ck, (size_t)need * sizeof *sk);
            memcpy(sr + chosen, cr, (size_t)need * sizeof *sr);
            chosen += need;
            break;
        }
        uint32_t mask = (1u << width) - 1;
        memset(count, 0, sizeof count);
        for (int j = 0; j < m; j++)
            count[(ck[j] >> lo) & mask]++;
        uint32_t edge = 0;
        int below = 0;
        while (below + count[edge] < need)
            below += count[edge++];
        int next = 0;
        for (int j = 0; j < m; j++) {
            uint32_t digit = (ck[j] >> lo) & mask;
            if (digit < edge) {
                sk[chosen] = ck[j];
                sr[chosen++] = cr[j];
            } else if (digit == edge) {
                nk[next] = ck[j];
                nr[next++] = cr[j];
            }
        }
        need -= below;
        if (need == next) { /* the whole edge bucket fits */
            memcpy(sk + chosen, nk, (size_t)next * sizeof *sk);
            memcpy(sr + chosen, nr, (size_t)next * sizeof *sr);
            chosen += next;
            break;
        }
        uint32_t *tk = ck;
        ck = nk;
        nk = tk;
        int32_t *tr = cr;
        cr = nr;
        nr = tr;
        m = next;
    }
    uint32_t *keys = sk, *tk = b->keys[0]; /* candidates are done with: scratch for the sort */
    int32_t *rows = sr, *tr = b->rows[0];
    radix_sort(&keys, &rows, &tk, &tr, chosen);
    for (int t = 0; t < chosen; t++) {
        idx[t] = rows[t];
        score[t] = row[rows[t]];
    }
    return chosen;
}

int dml_select_k(const float *row, int n, int skip, int k, dml_select_buf *b, int32_t *idx,
                 float *score)
{
    for (int t = 0; t < k; t++) {
        score[t] = INFINITY;
        idx[t] = -1;
    }
    if (k < 1)
        return 0;
    if (k <= DML_SELECT_HEAP_MAX_K)
        return select_heap(row, n, skip, k, idx, score);
    DML_ASSERT(b && b->keys[0]);
    return select_radix(row, n, skip, k, b, idx, score);
}
