/* dml_pq_search (include/dml.h): ADC top-k over packed codes, what a search library serves.
 * The searcher's blocked ADC scan and top-k selection, on one thread (the caller decides how to
 * parallelise); with 8-bit codes and k <= DML_SELECT_HEAP_MAX_K, DML_ADC_GROUP queries a scan. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>

#include "eval/eval.h"

dml_status dml_pq_search(const dml_pq *pq, const uint8_t *codes, size_t n_db, const float *queries,
                         size_t n_q, int k, float *distances, int64_t *labels)
{
    if (!pq || k < 1 || n_q > INT_MAX || n_db > INT_MAX || (n_q && (!queries || !distances || !labels)))
        return DML_ERR_USAGE;
    for (size_t i = 0; i < n_q * (size_t)k; i++) {
        distances[i] = INFINITY;
        labels[i] = -1;
    }
    if (n_db == 0 || n_q == 0)
        return DML_OK;
    if (!codes)
        return DML_ERR_USAGE;
    dml_searcher s;
    dml_status st = dml_searcher_init_pq(&s, pq, codes, (int)n_db, 0, 1, k, NULL);
    int g = dml_searcher_group(&s, k), found[DML_ADC_GROUP];
    int32_t *idx = malloc((size_t)g * (size_t)k * sizeof *idx);
    if (st != DML_OK || !idx) {
        free(idx);
        dml_searcher_free(&s);
        return st != DML_OK ? st : DML_ERR_NOMEM;
    }
    for (size_t q0 = 0; q0 < n_q; q0 += (size_t)s.block) {
        int n = n_q - q0 < (size_t)s.block ? (int)(n_q - q0) : s.block;
        dml_searcher_score(&s, queries + q0 * (size_t)pq->d, n);
        for (int i = 0; i < n; i += g) {
            int nq = n - i < g ? n - i : g;
            size_t at = (q0 + (size_t)i) * (size_t)k;
            dml_searcher_topk_n(&s, i, nq, -1, k, 0, idx, distances + at, found);
            for (int j = 0; j < nq; j++)
                for (int t = 0; t < found[j]; t++)
                    labels[at + (size_t)j * k + t] = idx[(size_t)j * k + t];
        }
    }
    free(idx);
    dml_searcher_free(&s);
    return DML_OK;
}
