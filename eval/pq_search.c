/* dml_pq_search (include/dml.h): ADC top-k over packed codes, what a search library serves.
 * The same blocked search and top-k selection as the exact search, on one thread (the caller
 * decides how to parallelise). */
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
    int32_t *idx = malloc((size_t)k * sizeof *idx);
    if (st != DML_OK || !idx) {
        free(idx);
        dml_searcher_free(&s);
        return st != DML_OK ? st : DML_ERR_NOMEM;
    }
    for (size_t q0 = 0; q0 < n_q; q0 += (size_t)s.block) {
        int n = n_q - q0 < (size_t)s.block ? (int)(n_q - q0) : s.block;
        dml_searcher_score(&s, queries + q0 * (size_t)pq->d, n);
        for (int i = 0; i < n; i++) {
            float *dist = distances + (q0 + (size_t)i) * (size_t)k;
            int found = dml_searcher_topk(&s, i, -1, k, 0, idx, dist);
            for (int t = 0; t < found; t++)
                labels[(q0 + (size_t)i) * (size_t)k + t] = idx[t];
        }
    }
    free(idx);
    dml_searcher_free(&s);
    return DML_OK;
}
