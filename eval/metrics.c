/* One ranking pass of the evaluation: every query's top-k from the blocked search, and from it
 * the values of each per-query metric of the table (eval/metric_table.c); for map_all the
 * "top-k" is the whole ranking (k = every reference). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metric_table.h"

/* One thread's scratch. */
typedef struct scratch {
    int32_t *idx; /* [DML_ADC_GROUP, k] */
    float *score; /* [DML_ADC_GROUP, k] */
    int *votes;   /* [n_classes], zero between queries */
} scratch;

typedef struct block_ctx {
    dml_eval_pass *p;
    scratch *sc;
    int q0;
} block_ctx;

void dml_eval_query_values(const dml_eval_pass *p, int q, const int32_t *idx, int found,
                           int *votes)
{
    if (p->exact_nn && !p->over_codes)
        p->exact_nn[q] = found > 0 ? idx[0] : -1;
    double *v = p->qv + (size_t)q * p->n_cols;
    for (int m = 0; m < DML_METRIC_COUNT; m++)
        if (p->col[m] >= 0)
            dml_metric_rows[m].query(p, q, idx, found, votes, v + p->col[m]);
}

static void score_queries(void *arg, int begin, int end, int thread)
{
    block_ctx *b = arg;
    dml_eval_pass *p = b->p;
    scratch *sc = &b->sc[thread];
    int g = dml_searcher_group(p->s, p->k), found[DML_ADC_GROUP];
    for (int i = begin; i < end; i += g) {
        int n = end - i < g ? end - i : g, q = b->q0 + i;
        dml_searcher_topk_n(p->s, i, n, p->protocol1 ? q : -1, p->k, thread, sc->idx, sc->score,
                            found);
        for (int j = 0; j < n; j++)
            dml_eval_query_values(p, q + j, sc->idx + (size_t)j * p->k, found[j], sc->votes);
    }
}

static void free_scratch(scratch *sc, int n)
{
    for (int t = 0; sc && t < n; t++) {
        free(sc[t].idx);
        free(sc[t].score);
        free(sc[t].votes);
    }
    free(sc);
}

dml_status dml_eval_pass_run(dml_eval_pass *p, dml_error *err)
{
    int threads = p->s->threads;
    scratch *sc = calloc((size_t)threads, sizeof *sc);
    int ok = sc != NULL;
    for (int t = 0; ok && t < threads; t++) {
        sc[t].idx = malloc((size_t)DML_ADC_GROUP * p->k * sizeof(int32_t));
        sc[t].score = malloc((size_t)DML_ADC_GROUP * p->k * sizeof(float));
        sc[t].votes = calloc((size_t)(p->n_classes > 0 ? p->n_classes : 1), sizeof(int));
        ok = sc[t].idx && sc[t].score && sc[t].votes;
    }
    if (!ok) {
        free_scratch(sc, threads);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the metrics");
    }
    block_ctx b = {p, sc, 0};
    for (b.q0 = p->q_begin; b.q0 < p->q_end; b.q0 += p->s->block) {
        int n = p->q_end - b.q0 < p->s->block ? p->q_end - b.q0 : p->s->block;
        dml_searcher_score(p->s, p->queries + (size_t)b.q0 * p->s->d, n);
        dml_parallel_for(threads, n, score_queries, &b);
    }
    free_scratch(sc, threads);
    return DML_OK;
}
