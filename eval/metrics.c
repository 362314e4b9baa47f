/* One ranking pass of the evaluation: every query's top-k from the blocked search, and from it
 * (metrics.md) precision_at_1, r_precision, map_at_r, knn_accuracy, recall_at_k, mrr_at_10 and
 * pq_recall_at_r; map_all ranks the whole reference set by a radix sort of the query's scores. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define RADIX_BITS 11
#define RADIX_SIZE (1 << RADIX_BITS)
#define PAIRED_K 10 /* recall_at_1/5/10 and mrr_at_10 look at the first 10 */

/* One thread's scratch. */
typedef struct scratch {
    int32_t *idx;        /* [k] */
    float *score;        /* [k] */
    int *votes;          /* [n_classes], zero between queries */
    uint32_t *keys[2];   /* [n_ref] map_all's sort */
    uint8_t *rel[2];     /* [n_ref] */
} scratch;

typedef struct block_ctx {
    dml_eval_pass *p;
    scratch *sc;
    int q0;
} block_ctx;

/* A float's bits as an unsigned key with the same order. */
static uint32_t sortable(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* AP over the whole ranking: the references other than skip sorted by score (stable LSD radix
 * sort from row order, so ties keep the lower row first), then P(k) at each relevant rank. */
static double average_precision(const dml_eval_pass *p, scratch *sc, const float *row, int skip,
                                int c, int r)
{
    uint32_t *k = sc->keys[0], *kt = sc->keys[1];
    uint8_t *rel = sc->rel[0], *rt = sc->rel[1];
    int n = 0;
    for (int j = 0; j < p->s->n_ref; j++)
        if (j != skip) {
            k[n] = sortable(row[j]);
            rel[n++] = p->ref_class[j] == c;
        }
    for (int shift = 0; shift < 32; shift += RADIX_BITS) {
        int count[RADIX_SIZE] = {0};
        for (int j = 0; j < n; j++)
            count[(k[j] >> shift) & (RADIX_SIZE - 1)]++;
        if (count[(k[0] >> shift) & (RADIX_SIZE - 1)] == n)
            continue; /* one digit for every key: this pass would not move anything */
        for (int b = 0, sum = 0; b < RADIX_SIZE; b++) {
            int here = count[b];
            count[b] = sum;
            sum += here;
        }
        for (int j = 0; j < n; j++) {
            int to = count[(k[j] >> shift) & (RADIX_SIZE - 1)]++;
            kt[to] = k[j];
            rt[to] = rel[j];
        }
        uint32_t *tk = k;
        k = kt;
        kt = tk;
        uint8_t *tr = rel;
        rel = rt;
        rt = tr;
    }
    double ap = 0.0;
    int hits = 0;
    for (int j = 0; j < n && hits < r; j++)
        if (rel[j])
            ap += (double)++hits / (j + 1);
    return ap / r;
}

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

static void label_metrics(const dml_eval_pass *p, scratch *sc, const float *row, int q, int self,
                          int found, double *v)
{
    int c = p->q_class[q];
    int r = c < 0 ? 0 : p->class_size[c] - (self >= 0);
    if (r == 0) { /* skipped: no relevant reference */
        v[DML_QV_P1] = v[DML_QV_RPREC] = v[DML_QV_MAPR] = v[DML_QV_MAPALL] = v[DML_QV_KNN] = NAN;
        return;
    }
    /* k >= the largest R, so the first R results are all in the top-k. */
    DML_ASSERT(!(p->want & (1u << DML_QV_MAPR | 1u << DML_QV_RPREC)) || found >= r);
    int hits = 0;
    double ap_r = 0.0;
    for (int t = 0; t < r && t < found; t++)
        if (p->ref_class[sc->idx[t]] == c)
            ap_r += (double)++hits / (t + 1);
    v[DML_QV_P1] = found > 0 && p->ref_class[sc->idx[0]] == c;
    v[DML_QV_RPREC] = (double)hits / r;
    v[DML_QV_MAPR] = ap_r / r;
    if (p->want & 1u << DML_QV_KNN)
        v[DML_QV_KNN] = knn_vote(p, sc->idx, found < p->knn_k ? found : p->knn_k, sc->votes) == c;
    if (p->want & 1u << DML_QV_MAPALL)
        v[DML_QV_MAPALL] = average_precision(p, sc, row, self, c, r);
}

static void score_queries(void *arg, int begin, int end, int thread)
{
    block_ctx *b = arg;
    dml_eval_pass *p = b->p;
    scratch *sc = &b->sc[thread];
    for (int i = begin; i < end; i++) {
        int q = b->q0 + i, self = p->protocol1 ? q : -1;
        double *v = p->qv + (size_t)q * DML_QV_COUNT;
        int found = dml_searcher_topk(p->s, i, self, p->k, sc->idx, sc->score);
        if (p->exact_nn && !p->s->pq)
            p->exact_nn[q] = found > 0 ? sc->idx[0] : -1;
        if (p->want & 1u << DML_QV_PQREC) {
            v[DML_QV_PQREC] = 0.0;
            for (int t = 0; t < found && t < DML_PQ_RECALL_R; t++)
                if (sc->idx[t] == p->exact_nn[q])
                    v[DML_QV_PQREC] = 1.0;
        }
        if (p->want & (1u << DML_QV_R1 | 1u << DML_QV_MRR)) { /* the own positive is row q */
            int rank = 0;
            for (int t = 0; t < found && t < PAIRED_K && !rank; t++)
                if (sc->idx[t] == q)
                    rank = t + 1;
            v[DML_QV_R1] = rank == 1;
            v[DML_QV_R5] = rank >= 1 && rank <= 5;
            v[DML_QV_R10] = rank >= 1;
            v[DML_QV_MRR] = rank ? 1.0 / rank : 0.0;
        }
        if (p->q_class)
            label_metrics(p, sc, p->s->scores + (size_t)i * p->s->n_ref, q, self, found, v);
    }
}

static void free_scratch(scratch *sc, int n)
{
    for (int t = 0; sc && t < n; t++) {
        free(sc[t].idx);
        free(sc[t].score);
        free(sc[t].votes);
        for (int h = 0; h < 2; h++) {
            free(sc[t].keys[h]);
            free(sc[t].rel[h]);
        }
    }
    free(sc);
}

dml_status dml_eval_pass_run(dml_eval_pass *p, dml_error *err)
{
    int threads = p->s->threads, full = (p->want & 1u << DML_QV_MAPALL) != 0;
    size_t n_ref = (size_t)p->s->n_ref;
    scratch *sc = calloc((size_t)threads, sizeof *sc);
    int ok = sc != NULL;
    for (int t = 0; ok && t < threads; t++) {
        sc[t].idx = malloc((size_t)p->k * sizeof(int32_t));
        sc[t].score = malloc((size_t)p->k * sizeof(float));
        sc[t].votes = calloc((size_t)(p->n_classes > 0 ? p->n_classes : 1), sizeof(int));
        ok = sc[t].idx && sc[t].score && sc[t].votes;
        for (int h = 0; full && h < 2; h++) {
            sc[t].keys[h] = malloc(n_ref * sizeof(uint32_t));
            sc[t].rel[h] = malloc(n_ref);
            ok = ok && sc[t].keys[h] && sc[t].rel[h];
        }
    }
    if (!ok) {
        free_scratch(sc, threads);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the metrics");
    }
    block_ctx b = {p, sc, 0};
    for (b.q0 = 0; b.q0 < p->n_queries; b.q0 += p->s->block) {
        int n = p->n_queries - b.q0 < p->s->block ? p->n_queries - b.q0 : p->s->block;
        dml_searcher_score(p->s, p->queries + (size_t)b.q0 * p->s->d, n);
        dml_parallel_for(threads, n, score_queries, &b);
    }
    free_scratch(sc, threads);
    return DML_OK;
}
