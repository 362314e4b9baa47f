/* One ranking pass of the evaluation: every query's top-k from the blocked search, and from it
 * (metrics.md) precision_at_1, r_precision, map_at_r, knn_accuracy, recall_at_k, mrr_at_10,
 * pq_recall_at_r and nn_recall_at_k; for map_all the "top-k" is the whole ranking (k = every
 * reference). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define PAIRED_K 10 /* recall_at_1/5/10 and mrr_at_10 look at the first 10 */

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

/* The majority class of the first k results; a tie goes to the class of the nearest among the
 * tied. Scanning in rank order and switching only on a strictly larger count picks, among the
 * classes with the top count, the one seen first. */
static int knn_vote(const dml_eval_pass *p, const int32_t *idx, int k, int *votes)
{
    for (int t = 0; t < k; t++)
        votes[p->ref_class[idx[t]]]++;
    int best = -1, best_count = 0;
    for (int t = 0; t < k; t++) {
        int c = p->ref_class[idx[t]];
        if (votes[c] > best_count) {
            best_count = votes[c];
            best = c;
        }
    }
    for (int t = 0; t < k; t++)
        votes[p->ref_class[idx[t]]] = 0;
    return best;
}

static void label_metrics(const dml_eval_pass *p, const int32_t *idx, int *votes, int q, int self,
                          int found, double *v)
{
    int c = p->q_class[q];
    int r = c < 0 ? 0 : p->class_size[c] - (self >= 0);
    if (r == 0) { /* skipped: no relevant reference */
        v[DML_QV_P1] = v[DML_QV_RPREC] = v[DML_QV_MAPR] = v[DML_QV_MAPALL] = v[DML_QV_KNN] = NAN;
        return;
    }
    /* k >= the largest R (every reference for map_all), so all R relevant rows are found. */
    DML_ASSERT(!(p->want & (1u << DML_QV_RPREC | 1u << DML_QV_MAPR | 1u << DML_QV_MAPALL)) ||
               found >= r);
    int hits = 0, hits_r = 0;
    double ap_r = 0.0, ap_all = 0.0;
    int limit = p->want & 1u << DML_QV_MAPALL ? found : (r < found ? r : found);
    for (int t = 0; t < limit && hits < r; t++)
        if (p->ref_class[idx[t]] == c) {
            double precision = (double)++hits / (t + 1);
            ap_all += precision;
            if (t < r) {
                ap_r += precision;
                hits_r++;
            }
        }
    v[DML_QV_P1] = found > 0 && p->ref_class[idx[0]] == c;
    v[DML_QV_RPREC] = (double)hits_r / r;
    v[DML_QV_MAPR] = ap_r / r;
    v[DML_QV_MAPALL] = ap_all / r;
    if (p->want & 1u << DML_QV_KNN)
        v[DML_QV_KNN] = knn_vote(p, idx, found < p->knn_k ? found : p->knn_k, votes) == c;
}

/* ann-benchmarks' k-nn recall: the share of the query's k true nearest rows (by the raw
 * vectors) among its first k results. */
static double nn_recall(const int32_t *found_idx, int found, const int32_t *truth, int k)
{
    int hits = 0;
    for (int t = 0; t < k && t < found; t++)
        for (int j = 0; j < k; j++)
            if (found_idx[t] == truth[j]) {
                hits++;
                break;
            }
    return (double)hits / k;
}

void dml_eval_query_values(const dml_eval_pass *p, int q, const int32_t *idx, int found,
                           int *votes)
{
    int self = p->protocol1 ? q : -1;
    double *v = p->qv + (size_t)q * DML_QV_COUNT;
    if (p->exact_nn && !p->over_codes)
        p->exact_nn[q] = found > 0 ? idx[0] : -1;
    if (p->want & 1u << DML_QV_PQREC) {
        v[DML_QV_PQREC] = 0.0;
        for (int t = 0; t < found && t < DML_PQ_RECALL_R; t++)
            if (idx[t] == p->exact_nn[q])
                v[DML_QV_PQREC] = 1.0;
    }
    if (p->want & (1u << DML_QV_R1 | 1u << DML_QV_MRR)) { /* the own positive is row q */
        int rank = 0;
        for (int t = 0; t < found && t < PAIRED_K && !rank; t++)
            if (idx[t] == q)
                rank = t + 1;
        v[DML_QV_R1] = rank == 1;
        v[DML_QV_R5] = rank >= 1 && rank <= 5;
        v[DML_QV_R10] = rank >= 1;
        v[DML_QV_MRR] = rank ? 1.0 / rank : 0.0;
    }
    static const int NN_K[3] = {1, 10, 100};
    for (int t = 0; t < 3; t++)
        if (p->want & 1u << (DML_QV_NN1 + t))
            v[DML_QV_NN1 + t] = nn_recall(idx, found, p->truth + (size_t)q * p->truth_k, NN_K[t]);
    if (p->q_class)
        label_metrics(p, idx, votes, q, self, found, v);
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
