/* dml_eval_run: checks a request, picks the metrics, runs the float pass (and the PQ pass over
 * the references' codes), nmi and quantization_mse, and averages the per-query values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/eval.h"

enum { NEED_LABELS = 1, NEED_Q_LABELS = 2, NEED_PAIRS = 4, NEED_PQ = 8, NEED_TRUTH = 16 };

/* metrics.md's keys in its order: what each needs and the per-query column it averages. */
enum {
    M_P1, M_RPREC, M_MAPR, M_MAPALL, M_RECALL, M_MRR, M_KNN, M_NMI, M_QMSE, M_PQREC, M_NNREC,
    M_COUNT
};
static const struct {
    const char *key;
    int needs;
    int qv; /* -1: not a per-query metric */
} METRICS[M_COUNT] = {
    [M_P1] = {"precision_at_1", NEED_LABELS, DML_QV_P1},
    [M_RPREC] = {"r_precision", NEED_LABELS, DML_QV_RPREC},
    [M_MAPR] = {"map_at_r", NEED_LABELS, DML_QV_MAPR},
    [M_MAPALL] = {"map_all", NEED_LABELS, DML_QV_MAPALL},
    [M_RECALL] = {"recall_at_k", NEED_PAIRS, DML_QV_R1},
    [M_MRR] = {"mrr_at_10", NEED_PAIRS, DML_QV_MRR},
    [M_KNN] = {"knn_accuracy", NEED_LABELS, DML_QV_KNN},
    [M_NMI] = {"nmi", NEED_Q_LABELS, -1},
    [M_QMSE] = {"quantization_mse", NEED_PQ, -1},
    [M_PQREC] = {"pq_recall_at_r", NEED_PQ, DML_QV_PQREC},
    [M_NNREC] = {"nn_recall_at_k", NEED_TRUTH, DML_QV_NN1},
};

#define LABEL_BITS (1u << DML_QV_P1 | 1u << DML_QV_RPREC | 1u << DML_QV_MAPR | \
                    1u << DML_QV_MAPALL | 1u << DML_QV_KNN)

static const char *const RECALL_KEYS[3] = {"recall_at_1", "recall_at_5", "recall_at_10"};
static const char *const NN_KEYS[3] = {"nn_recall_at_1", "nn_recall_at_10", "nn_recall_at_100"};
static const int NN_K[3] = {1, 10, 100};

/* A database to search: in memory, or streamed in chunks. */
static int has_db(const dml_eval_request *req)
{
    return req->db || req->stream;
}

/* nn_recall_at_k for k = NN_K[t]: the ground truth and the database hold k neighbours. */
static int nn_k_fits(const dml_eval_request *req, int t)
{
    return NN_K[t] <= req->truth_k && NN_K[t] <= req->n_db;
}

static int has(const dml_eval_request *req, int needs)
{
    int labels = req->q_labels && (!has_db(req) || req->db_labels);
    return (!(needs & NEED_LABELS) || labels) && (!(needs & NEED_Q_LABELS) || req->q_labels) &&
           (!(needs & NEED_PAIRS) || req->paired) && (!(needs & NEED_PQ) || req->pq) &&
           (!(needs & NEED_TRUTH) || (req->truth && has_db(req)));
}

static dml_status check(const dml_eval_request *req, dml_error *err)
{
    const char *what = NULL;
    if (!req->queries || req->n_queries < 1 || req->d < 1)
        what = "at least one query row of width >= 1";
    else if (has_db(req) && req->n_db < 1)
        what = "a database of at least one row";
    else if (req->stream && (req->db || !req->stream->embed || req->stream->chunk < 1 ||
                             req->db_codes))
        what = "a streamed database: no rows in memory, a chunk size and an embed function";
    else if (req->stream && req->shard_size > 1)
        what = "one process for a streamed database (it is not sharded)";
    else if (req->shard_size > 1 && (!req->slices || !req->share_rows || req->db_codes))
        what = "sharded rows: this process's slices, a way to share rows and no database codes";
    else if (req->slices && req->shard_size < 2)
        what = "two processes or more with sharded rows";
    else if (req->paired && (!has_db(req) || req->n_db != req->n_queries))
        what = "paired data: a database row (the positive) for every query";
    else if (req->pq && req->pq->d != req->d)
        what = "PQ codebooks of the embeddings' width";
    else if (req->db_codes && !req->pq)
        what = "codebooks with the database codes";
    else if (req->truth && (!has_db(req) || req->truth_k < 1))
        what = "a database and at least one neighbour per query with the ground truth";
    else if (req->knn_k < 0)
        what = "knn_k >= 1 (or 0 for the default)";
    else if (req->n_metrics > 0 && !req->metrics)
        what = "the metric names";
    else if (req->distance < DML_EVAL_L2SQ || req->distance > DML_EVAL_COSINE)
        what = "a known distance";
    if (what)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "evaluation: expected %s (%d queries of width %d, %d database rows)",
                             what, req->n_queries, req->d, has_db(req) ? req->n_db : 0);
    for (size_t i = 0; req->truth && i < (size_t)req->n_queries * req->truth_k; i++)
        if (req->truth[i] < 0 || req->truth[i] >= req->n_db)
            return dml_error_set(err, DML_ERR_DATA, NULL, 0, 0,
                                 "evaluation: query %zu's true neighbour %d is not one of the %d "
                                 "database rows",
                                 i / (size_t)req->truth_k, req->truth[i], req->n_db);
    for (int set = 0; set < 2; set++) { /* NaN or Inf would make every ranking meaningless */
        const float *x = set ? req->db : req->queries;
        const dml_eval_slices *sl = req->slices;
        int rows = set ? (sl ? sl->db_hi - sl->db_lo : req->n_db)
                       : (sl ? sl->q_hi - sl->q_lo : req->n_queries);
        size_t n = x ? (size_t)rows * req->d : 0;
        for (size_t i = 0; i < n; i++)
            if (!isfinite(x[i]))
                return dml_error_set(err, DML_ERR_DATA, NULL, 0, 0,
                                     "evaluation: %s row %zu has a non-finite value (%g); "
                                     "expected finite embeddings",
                                     set ? "database" : "query", i / (size_t)req->d, x[i]);
    }
    return DML_OK;
}

static dml_status select_metrics(const dml_eval_request *req, int *want, dml_error *err)
{
    memset(want, 0, M_COUNT * sizeof *want);
    if (!req->metrics) { /* everything the data allow; map_all and knn_accuracy in protocol 2 */
        for (int m = 0; m < M_COUNT; m++)
            want[m] = has(req, METRICS[m].needs) && (has_db(req) || (m != M_MAPALL && m != M_KNN)) &&
                      !(req->stream && m == M_MAPALL);
        return DML_OK;
    }
    for (int i = 0; i < req->n_metrics; i++) {
        int m = 0;
        while (m < M_COUNT && (!req->metrics[i] || strcmp(METRICS[m].key, req->metrics[i]) != 0))
            m++;
        if (m == M_COUNT)
            return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                                 "unknown metric \"%s\": expected one of precision_at_1, "
                                 "r_precision, map_at_r, map_all, recall_at_k, mrr_at_10, "
                                 "knn_accuracy, nmi, quantization_mse, pq_recall_at_r, "
                                 "nn_recall_at_k",
                                 req->metrics[i] ? req->metrics[i] : "(null)");
        int needs = METRICS[m].needs;
        if (!has(req, needs))
            return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0, "metric %s needs %s", METRICS[m].key,
                                 needs & NEED_PAIRS ? "paired data (database row i is query i's "
                                                      "positive)"
                                 : needs & NEED_PQ ? "PQ codebooks"
                                 : needs & NEED_TRUTH ? "a database and its ground-truth neighbours"
                                 : needs & NEED_Q_LABELS ? "labels on the queries"
                                                         : "labels on the queries and the references");
        if (req->stream && m == M_MAPALL)
            return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                                 "metric map_all needs each query's whole ranking: a streamed "
                                 "database keeps its top-k only (raise --memory-limit)");
        want[m] = 1;
    }
    return DML_OK;
}

static void add_value(dml_eval_result *res, const char *prefix, const char *key, double v)
{
    DML_ASSERT(res->n_values < DML_EVAL_MAX_METRICS);
    dml_eval_value *e = &res->values[res->n_values++];
    snprintf(e->name, sizeof e->name, "%s%s", prefix, key);
    e->value = v;
}

/* Mean of column c over the queries where it is a number; NAN when there is none. */
static double column_mean(const double *qv, int n, int c)
{
    double sum = 0.0;
    int counted = 0;
    for (int q = 0; q < n; q++)
        if (!isnan(qv[(size_t)q * DML_QV_COUNT + c])) {
            sum += qv[(size_t)q * DML_QV_COUNT + c];
            counted++;
        }
    return counted ? sum / counted : NAN;
}

/* The per-query averages of one pass, metrics.md's order (pq_recall_at_r is added last). */
static void add_pass_values(dml_eval_result *res, const dml_eval_request *req, const char *prefix,
                            const int *want, const double *qv, int n)
{
    for (int m = 0; m < M_COUNT; m++) {
        if (!want[m] || METRICS[m].qv < 0 || m == M_PQREC)
            continue;
        if (m == M_RECALL)
            for (int t = 0; t < 3; t++)
                add_value(res, prefix, RECALL_KEYS[t], column_mean(qv, n, DML_QV_R1 + t));
        else if (m == M_NNREC)
            for (int t = 0; t < 3; t++) {
                if (nn_k_fits(req, t))
                    add_value(res, prefix, NN_KEYS[t], column_mean(qv, n, DML_QV_NN1 + t));
            }
        else
            add_value(res, prefix, METRICS[m].key, column_mean(qv, n, METRICS[m].qv));
    }
}

/* Everything the passes share: the labels as dense classes of the references' labels. */
typedef struct classes {
    int32_t *q_class;   /* [n_queries] */
    int32_t *ref_class; /* [n_ref] */
    int *size;          /* [n] */
    int n, max_size, skipped;
} classes;

static dml_status make_classes(const dml_eval_request *req, classes *c, dml_error *err)
{
    memset(c, 0, sizeof *c);
    const int32_t *ref_labels = has_db(req) ? req->db_labels : req->q_labels;
    int n_ref = has_db(req) ? req->n_db : req->n_queries;
    int32_t *values = NULL;
    c->n = dml_labels_distinct(ref_labels, n_ref, &values);
    c->q_class = malloc((size_t)req->n_queries * sizeof(int32_t));
    c->ref_class = malloc((size_t)n_ref * sizeof(int32_t));
    c->size = calloc((size_t)(c->n > 0 ? c->n : 1), sizeof(int));
    if (c->n < 0 || !c->q_class || !c->ref_class || !c->size) {
        free(values);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the labels");
    }
    for (int j = 0; j < n_ref; j++)
        c->size[c->ref_class[j] = dml_labels_find(values, c->n, ref_labels[j])]++;
    for (int q = 0; q < req->n_queries; q++) {
        c->q_class[q] = has_db(req) ? dml_labels_find(values, c->n, req->q_labels[q])
                                    : c->ref_class[q];
        int r = c->q_class[q] < 0 ? 0 : c->size[c->q_class[q]] - !has_db(req);
        c->skipped += r == 0;
    }
    for (int k = 0; k < c->n; k++)
        c->max_size = c->size[k] > c->max_size ? c->size[k] : c->max_size;
    free(values);
    return DML_OK;
}

static void free_classes(classes *c)
{
    free(c->q_class);
    free(c->ref_class);
    free(c->size);
}

/* A pass over all queries (of every query, unsharded; s unset): what it computes and the top-k
 * that needs, against the float references or by ADC (over_codes). */
static dml_eval_pass plan_pass(const dml_eval_request *req, const int *want, const classes *c,
                               int over_codes, int32_t *exact_nn, double *qv)
{
    int protocol1 = !has_db(req), n_ref = protocol1 ? req->n_queries : req->n_db;
    int available = n_ref - protocol1, knn_k = req->knn_k > 0 ? req->knn_k : DML_EVAL_KNN_K;
    unsigned bits = 0;
    int k = 1;
    if (want[M_P1])
        bits |= 1u << DML_QV_P1;
    if (want[M_RPREC] || want[M_MAPR]) {
        bits |= 1u << DML_QV_RPREC | 1u << DML_QV_MAPR;
        k = c->max_size > k ? c->max_size : k; /* every query's R <= the largest class */
    }
    if (want[M_KNN]) {
        bits |= 1u << DML_QV_KNN;
        k = knn_k > k ? knn_k : k;
    }
    if (want[M_RECALL] || want[M_MRR]) {
        bits |= 1u << DML_QV_R1 | 1u << DML_QV_R5 | 1u << DML_QV_R10 | 1u << DML_QV_MRR;
        k = k < 10 ? 10 : k;
    }
    if (over_codes && want[M_PQREC]) {
        bits |= 1u << DML_QV_PQREC;
        k = k < DML_PQ_RECALL_R ? DML_PQ_RECALL_R : k;
    }
    if (want[M_NNREC])
        for (int t = 0; t < 3; t++)
            if (nn_k_fits(req, t)) {
                bits |= 1u << (DML_QV_NN1 + t);
                k = k < NN_K[t] ? NN_K[t] : k;
            }
    if (want[M_MAPALL]) { /* AP over the whole ranking: every reference, in order */
        bits |= 1u << DML_QV_MAPALL;
        k = available;
    }
    k = k > available ? available : k;
    k = k < 1 ? 1 : k;
    for (size_t i = 0; i < (size_t)req->n_queries * DML_QV_COUNT; i++)
        qv[i] = NAN;
    return (dml_eval_pass){.queries = req->queries,
                           .n_queries = req->n_queries,
                           .protocol1 = protocol1,
                           .q_class = bits & LABEL_BITS ? c->q_class : NULL,
                           .ref_class = c->ref_class,
                           .class_size = c->size,
                           .n_classes = c->n,
                           .want = bits,
                           .k = k,
                           .knn_k = knn_k,
                           .q_end = req->n_queries,
                           .over_codes = over_codes,
                           .exact_nn = exact_nn,
                           .truth = req->truth,
                           .truth_k = req->truth_k,
                           .qv = qv};
}

/* The rows [row_begin[r], row_begin[r + 1]) of process r of n sharded rows; NULL when out of
 * memory. */
static int *slice_begins(int n, int size)
{
    int *begin = malloc(((size_t)size + 1) * sizeof *begin);
    for (int r = 0; begin && r < size; r++)
        dml_eval_slice(n, r, size, &begin[r], &begin[r + 1]);
    return begin;
}

/* A pass over sharded rows: this process's queries ranked, then their values shared. */
static dml_status run_sharded_pass(const dml_eval_request *req, dml_eval_pass *p,
                                   const uint8_t *codes, dml_error *err)
{
    int *begin = slice_begins(req->n_queries, req->shard_size);
    if (!begin)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the metrics");
    p->q_begin = req->slices->q_lo;
    p->q_end = req->slices->q_hi;
    dml_status st = dml_eval_shard_pass(req, p, codes, err);
    if (st == DML_OK) /* exact_nn stays: the PQ pass ranks the same queries here */
        req->share_rows(req->share_ctx, p->qv, DML_QV_COUNT * sizeof *p->qv, begin);
    free(begin);
    return st;
}

/* nmi over sharded queries: their embeddings gathered whole (its k-means reads every row). */
static dml_status sharded_nmi(const dml_eval_request *req, double *nmi, dml_error *err)
{
    const dml_eval_slices *sl = req->slices;
    int *begin = slice_begins(req->n_queries, req->shard_size);
    float *all = malloc((size_t)req->n_queries * req->d * sizeof *all);
    dml_status st = DML_OK;
    if (!begin || !all) {
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                           "out of memory gathering %d query embeddings for nmi", req->n_queries);
    } else {
        memcpy(all + (size_t)sl->q_lo * req->d, req->queries,
               (size_t)(sl->q_hi - sl->q_lo) * req->d * sizeof *all);
        req->share_rows(req->share_ctx, all, (size_t)req->d * sizeof *all, begin);
        st = dml_eval_nmi(all, req->q_labels, req->n_queries, req->d, req->seed, nmi, err);
    }
    free(begin);
    free(all);
    return st;
}

/* quantization_mse over sharded references: each process's sum of errors, added in process
 * order (so every process gets the same bits; one process's single sum within rounding). */
static dml_status sharded_qmse(const dml_eval_request *req, const float *ref, int n_local,
                               int n_ref, double *v, dml_error *err)
{
    int size = req->shard_size;
    double *sums = malloc((size_t)size * sizeof *sums);
    int *begin = malloc(((size_t)size + 1) * sizeof *begin);
    double mse = 0.0;
    if (!sums || !begin ||
        (n_local > 0 && dml_pq_quantization_mse(req->pq, ref, (size_t)n_local, &mse) != DML_OK)) {
        free(sums);
        free(begin);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for quantization_mse");
    }
    for (int r = 0; r <= size; r++)
        begin[r] = r;
    sums[req->shard_rank] = mse * n_local;
    req->share_rows(req->share_ctx, sums, sizeof *sums, begin);
    double total = 0.0;
    for (int r = 0; r < size; r++)
        total += sums[r];
    *v = total / n_ref;
    free(sums);
    free(begin);
    return DML_OK;
}

/* One pass over all queries: against the float references, or by ADC against their codes. */
static dml_status run_pass(const dml_eval_request *req, const int *want, const classes *c,
                           const uint8_t *codes, int32_t *exact_nn, double *qv, dml_error *err)
{
    dml_eval_pass p = plan_pass(req, want, c, codes != NULL, exact_nn, qv);
    if (req->slices)
        return run_sharded_pass(req, &p, codes, err);
    int protocol1 = p.protocol1, n_ref = protocol1 ? req->n_queries : req->n_db, k = p.k;
    dml_searcher s;
    dml_status st = codes ? dml_searcher_init_pq(&s, req->pq, codes, n_ref, req->block, req->threads,
                                                 k, err)
                          : dml_searcher_init(&s, protocol1 ? req->queries : req->db, n_ref, req->d,
                                              req->distance, req->block, req->threads, k, err);
    if (st != DML_OK)
        return st;
    p.s = &s;
    st = dml_eval_pass_run(&p, err);
    dml_searcher_free(&s);
    return st;
}

/* The references' codes: given, or encoded here into *owned; NULL when out of memory. */
static const uint8_t *reference_codes(const dml_eval_request *req, const float *ref, int n_ref,
                                      uint8_t **owned)
{
    *owned = NULL;
    if (req->db_codes)
        return req->db_codes;
    *owned = malloc((size_t)n_ref * dml_pq_code_size(req->pq) + 1); /* n_ref 0: a sharded
                                                                       * process's none */
    if (*owned && n_ref > 0 && dml_pq_encode(req->pq, ref, (size_t)n_ref, *owned) != DML_OK) {
        free(*owned); /* the encoder's scratch: out of memory as well */
        *owned = NULL;
    }
    return *owned;
}

static int any_pass_metric(const int *want)
{
    for (int m = 0; m < M_COUNT; m++)
        if (want[m] && METRICS[m].qv >= 0)
            return 1;
    return 0;
}

/* A streamed database keeps each query's top-k only: map_at_r and r_precision when every R
 * fits DML_STREAM_MAX_R (asked for by name, a larger R is an error); map_all never. */
static dml_status stream_limits(const dml_eval_request *req, const classes *c, int *want,
                                dml_eval_result *res, dml_error *err)
{
    int wide = (want[M_MAPR] || want[M_RPREC]) && c->max_size > DML_STREAM_MAX_R;
    if (wide && req->metrics)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "map_at_r and r_precision with a streamed database need every label's "
                             "database rows R <= %d (one label has %d): raise --memory-limit",
                             DML_STREAM_MAX_R, c->max_size);
    if (wide)
        want[M_MAPR] = want[M_RPREC] = 0;
    if (!req->metrics && has(req, NEED_LABELS))
        snprintf(res->omitted, sizeof res->omitted, "map_all (it needs the whole ranking)");
    if (wide) {
        char why[160];
        snprintf(why, sizeof why, "%smap_at_r and r_precision (a label has %d database rows, over "
                 "the %d a query keeps)", res->omitted[0] ? "; " : "", c->max_size,
                 DML_STREAM_MAX_R);
        strncat(res->omitted, why, sizeof res->omitted - strlen(res->omitted) - 1);
    }
    return DML_OK;
}

dml_status dml_eval_run(const dml_eval_request *req, dml_eval_result *res, dml_error *err)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(res, 0, sizeof *res);
    int want[M_COUNT];
    dml_status st = check(req, err);
    if (st == DML_OK)
        st = select_metrics(req, want, err);
    if (st != DML_OK)
        return st;
    const float *ref = req->db ? req->db : req->queries;
    int n_ref = has_db(req) ? req->n_db : req->n_queries;
    const dml_eval_slices *sl = req->slices; /* sharded: this process's references only */
    int n_local = !sl ? n_ref : req->db ? sl->db_hi - sl->db_lo : sl->q_hi - sl->q_lo;
    res->n_queries = req->n_queries;
    res->n_db = n_ref;
    int passes = any_pass_metric(want), labelled = has(req, NEED_LABELS);
    int streamed = req->stream && (passes || want[M_QMSE]);
    size_t n_qv = (size_t)req->n_queries * DML_QV_COUNT;
    classes c;
    memset(&c, 0, sizeof c);
    /* A streamed database runs both passes at once: the PQ pass's values need a column of
     * their own. */
    double *qv = passes || streamed ? malloc(n_qv * (req->stream ? 2 : 1) * sizeof(double)) : NULL;
    double *qv_pq = req->stream ? qv + n_qv : qv, qmse = NAN;
    int32_t *exact_nn = passes || streamed ? malloc((size_t)req->n_queries * sizeof(int32_t)) : NULL;
    if ((passes || streamed) && (!qv || !exact_nn))
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the metrics");
    if (st == DML_OK && passes && labelled)
        st = make_classes(req, &c, err);
    if (st == DML_OK && req->stream)
        st = stream_limits(req, &c, want, res, err);
    int label_metric = want[M_P1] || want[M_RPREC] || want[M_MAPR] || want[M_MAPALL] || want[M_KNN];
    res->skipped_queries = label_metric ? c.skipped : 0;
    res->scored_queries = req->n_queries - res->skipped_queries;
    res->n_classes = label_metric ? c.n : 0;
    res->protocol2 = has_db(req);
    if (st == DML_OK && streamed) {
        dml_eval_pass fp = plan_pass(req, want, &c, 0, exact_nn, qv);
        dml_eval_pass pp = plan_pass(req, want, &c, 1, exact_nn, qv_pq);
        st = dml_eval_stream_run(req, &fp, req->pq ? &pp : NULL, want[M_QMSE] ? &qmse : NULL,
                                 err);
    }
    if (st == DML_OK && passes) {
        if (!req->stream)
            st = run_pass(req, want, &c, NULL, exact_nn, qv, err);
        if (st == DML_OK)
            add_pass_values(res, req, "", want, qv, req->n_queries);
    }
    if (st == DML_OK && want[M_NMI]) {
        double nmi = NAN;
        st = sl ? sharded_nmi(req, &nmi, err)
                : dml_eval_nmi(req->queries, req->q_labels, req->n_queries, req->d, req->seed,
                               &nmi, err);
        add_value(res, "", "nmi", nmi);
    }
    if (st == DML_OK && want[M_QMSE]) {
        double v = qmse; /* streamed: summed chunk by chunk */
        if (sl)
            st = sharded_qmse(req, ref, n_local, n_ref, &v, err);
        else if (!req->stream && dml_pq_quantization_mse(req->pq, ref, (size_t)n_ref, &v) != DML_OK)
            st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                               "out of memory for quantization_mse");
        if (st == DML_OK)
            add_value(res, "", "quantization_mse", v);
    }
    if (st == DML_OK && req->pq && passes) {
        uint8_t *owned = NULL;
        const uint8_t *codes = req->stream ? NULL : reference_codes(req, ref, n_local, &owned);
        if (!req->stream)
            st = codes ? run_pass(req, want, &c, codes, exact_nn, qv_pq, err)
                       : dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the codes");
        if (st == DML_OK && want[M_PQREC])
            add_value(res, "", "pq_recall_at_r", column_mean(qv_pq, req->n_queries, DML_QV_PQREC));
        if (st == DML_OK)
            add_pass_values(res, req, "pq_", want, qv_pq, req->n_queries);
        free(owned);
    }
    free_classes(&c);
    free(qv);
    free(exact_nn);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    res->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return st;
}
