/* dml_eval_run: checks a request, picks the metrics of the table (eval/metric_table.c), runs the
 * float pass (and the PQ pass over the references' codes) for the per-query metrics and the
 * whole-set ones, and averages the per-query values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eval/metric_table.h"

#define ROWS dml_metric_rows

/* A database to search: in memory, or streamed in chunks. */
static int has_db(const dml_eval_request *req)
{
    return req->db || req->stream;
}

static int has(const dml_eval_request *req, unsigned needs)
{
    int labels = req->q_labels && (!has_db(req) || req->db_labels);
    return (!(needs & DML_METRIC_NEEDS_LABELS) || labels) &&
           (!(needs & DML_METRIC_NEEDS_Q_LABELS) || req->q_labels) &&
           (!(needs & DML_METRIC_NEEDS_PAIRS) || req->paired) &&
           (!(needs & DML_METRIC_NEEDS_PQ) || req->pq) &&
           (!(needs & DML_METRIC_NEEDS_TRUTH) || (req->truth && has_db(req)));
}

/* What a metric with these needs asks of the data, for the error when they are unmet. */
static const char *needs_text(unsigned needs)
{
    return needs & DML_METRIC_NEEDS_PAIRS ? "paired data (database row i is query i's positive)"
           : needs & DML_METRIC_NEEDS_PQ ? "PQ codebooks"
           : needs & DML_METRIC_NEEDS_TRUTH ? "a database and its ground-truth neighbours"
           : needs & DML_METRIC_NEEDS_Q_LABELS ? "labels on the queries"
                                               : "labels on the queries and the references";
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
    memset(want, 0, DML_METRIC_COUNT * sizeof *want);
    if (!req->metrics) { /* everything the data allow; a streamed database has no whole ranking */
        for (int m = 0; m < DML_METRIC_COUNT; m++)
            want[m] = has(req, ROWS[m].needs) && (has_db(req) || !ROWS[m].default_db) &&
                      !(req->stream && ROWS[m].depth == DML_METRIC_DEPTH_ALL);
        return DML_OK;
    }
    for (int i = 0; i < req->n_metrics; i++) {
        int m = dml_metric_find(req->metrics[i]);
        if (m < 0) {
            char names[512];
            dml_metric_names(0, ", ", names, sizeof names);
            return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                                 "unknown metric \"%s\": expected one of %s",
                                 req->metrics[i] ? req->metrics[i] : "(null)", names);
        }
        if (!has(req, ROWS[m].needs))
            return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0, "metric %s needs %s", ROWS[m].name,
                                 needs_text(ROWS[m].needs));
        if (req->stream && ROWS[m].depth == DML_METRIC_DEPTH_ALL)
            return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                                 "metric %s needs each query's whole ranking: a streamed "
                                 "database keeps its top-k only (raise --memory-limit)",
                                 ROWS[m].name);
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

/* Mean of column c of qv[n, cols] over the queries where it is a number; NAN when there is
 * none. */
static double column_mean(const double *qv, int n, int cols, int c)
{
    double sum = 0.0;
    int counted = 0;
    for (int q = 0; q < n; q++)
        if (!isnan(qv[(size_t)q * cols + c])) {
            sum += qv[(size_t)q * cols + c];
            counted++;
        }
    return counted ? sum / counted : NAN;
}

/* The per-query averages of pass p's metrics computed where (in the table's order), each value
 * named prefix + its name. */
static void add_pass_values(dml_eval_result *res, const dml_eval_pass *p, const char *prefix,
                            dml_metric_where where)
{
    for (int m = 0; m < DML_METRIC_COUNT; m++) {
        if (p->col[m] < 0 || ROWS[m].where != where)
            continue;
        for (int t = 0; t < ROWS[m].n_values; t++)
            if (dml_metric_value_on(m, t, p->truth_k, p->n_ref))
                add_value(res, prefix, ROWS[m].values[t],
                          column_mean(p->qv, p->n_queries, p->n_cols, p->col[m] + t));
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

/* Whether pass over_codes computes metric m (both passes lay out every wanted per-query metric's
 * columns, so a streamed run's two passes share one layout). */
static int in_pass(int m, int over_codes)
{
    return ROWS[m].where == DML_METRIC_BOTH || (ROWS[m].where == DML_METRIC_PQ) == over_codes;
}

/* The depth of ranking metric m needs. */
static int depth(const dml_eval_request *req, int m, const classes *c, int n_ref, int available,
                 int knn_k)
{
    switch (ROWS[m].depth) {
    case DML_METRIC_DEPTH_R: return c->max_size; /* every query's R <= the largest class */
    case DML_METRIC_DEPTH_ALL: return available;
    case DML_METRIC_DEPTH_KNN: return knn_k;
    case DML_METRIC_DEPTH_K: break;
    }
    int k = 1;
    for (int t = 0; t < ROWS[m].n_values; t++)
        if (dml_metric_value_on(m, t, req->truth_k, n_ref) && ROWS[m].k[t] > k)
            k = ROWS[m].k[t];
    return k;
}

/* The columns of the wanted per-query metrics. */
static int columns(const int *want)
{
    int n = 0;
    for (int m = 0; m < DML_METRIC_COUNT; m++)
        n += want[m] && ROWS[m].query ? ROWS[m].n_values : 0;
    return n;
}

/* A pass over all queries (of every query, unsharded; s unset): what it computes and the top-k
 * that needs, against the float references or by ADC (over_codes). */
static dml_eval_pass plan_pass(const dml_eval_request *req, const int *want, const classes *c,
                               int over_codes, int32_t *exact_nn, double *qv)
{
    int protocol1 = !has_db(req), n_ref = protocol1 ? req->n_queries : req->n_db;
    int available = n_ref - protocol1, knn_k = req->knn_k > 0 ? req->knn_k : DML_EVAL_KNN_K;
    dml_eval_pass p = {.queries = req->queries,
                       .n_queries = req->n_queries,
                       .n_ref = n_ref,
                       .protocol1 = protocol1,
                       .q_class = c->q_class,
                       .ref_class = c->ref_class,
                       .class_size = c->size,
                       .n_classes = c->n,
                       .k = 1,
                       .knn_k = knn_k,
                       .q_end = req->n_queries,
                       .over_codes = over_codes,
                       .exact_nn = exact_nn,
                       .truth = req->truth,
                       .truth_k = req->truth_k,
                       .qv = qv};
    for (int m = 0; m < DML_METRIC_COUNT; m++) {
        p.col[m] = -1;
        if (!want[m] || !ROWS[m].query)
            continue;
        if (in_pass(m, over_codes)) {
            p.col[m] = p.n_cols;
            int k = depth(req, m, c, n_ref, available, knn_k);
            p.k = k > p.k ? k : p.k;
        }
        p.n_cols += ROWS[m].n_values;
    }
    p.k = p.k > available ? available : p.k;
    p.k = p.k < 1 ? 1 : p.k;
    for (size_t i = 0; i < (size_t)req->n_queries * p.n_cols; i++)
        qv[i] = NAN;
    return p;
}

/* A pass over sharded rows: this process's queries ranked, then their values shared. */
static dml_status run_sharded_pass(const dml_eval_request *req, dml_eval_pass *p,
                                   const uint8_t *codes, dml_error *err)
{
    int *begin = dml_eval_slice_begins(req->n_queries, req->shard_size);
    if (!begin)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the metrics");
    p->q_begin = req->slices->q_lo;
    p->q_end = req->slices->q_hi;
    dml_status st = dml_eval_shard_pass(req, p, codes, err);
    if (st == DML_OK) /* exact_nn stays: the PQ pass ranks the same queries here */
        req->share_rows(req->share_ctx, p->qv, (size_t)p->n_cols * sizeof *p->qv, begin);
    p->q_begin = 0; /* qv now holds every query's values */
    p->q_end = req->n_queries;
    free(begin);
    return st;
}

/* One pass over all queries: against the float references, or by ADC against their codes. */
static dml_status run_pass(const dml_eval_request *req, dml_eval_pass *p, const uint8_t *codes,
                           dml_error *err)
{
    if (req->slices)
        return run_sharded_pass(req, p, codes, err);
    int protocol1 = p->protocol1, n_ref = p->n_ref, k = p->k;
    dml_searcher s;
    dml_status st = codes ? dml_searcher_init_pq(&s, req->pq, codes, n_ref, req->block, req->threads,
                                                 k, err)
                          : dml_searcher_init(&s, protocol1 ? req->queries : req->db, n_ref, req->d,
                                              req->distance, req->block, req->threads, k, err);
    if (st != DML_OK)
        return st;
    p->s = &s;
    st = dml_eval_pass_run(p, err);
    p->s = NULL;
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

/* Whether a wanted metric is per-query (per_query 0: of the whole set) and, where >= 0,
 * computed there. */
static int any_wanted(const int *want, int per_query, int where)
{
    for (int m = 0; m < DML_METRIC_COUNT; m++)
        if (want[m] && (ROWS[m].query != NULL) == per_query &&
            (where < 0 || (int)ROWS[m].where == where))
            return 1;
    return 0;
}

/* Appends to out[n] the wanted metrics (want NULL: the ones the data allow) of ranking depth d,
 * joined by " and "; returns how many. */
static int names_of_depth(const int *want, const dml_eval_request *req, dml_metric_depth d,
                          char *out, size_t n)
{
    int count = 0;
    for (int m = 0; m < DML_METRIC_COUNT; m++)
        if (ROWS[m].depth == d && (want ? want[m] : has(req, ROWS[m].needs))) {
            size_t used = strlen(out);
            snprintf(out + used, n - used, "%s%s", count++ ? " and " : "", ROWS[m].name);
        }
    return count;
}

/* A streamed database keeps each query's top-k only: the metrics of depth R when every R fits
 * DML_STREAM_MAX_R (asked for by name, a larger R is an error); the whole ranking never. */
static dml_status stream_limits(const dml_eval_request *req, const classes *c, int *want,
                                dml_eval_result *res, dml_error *err)
{
    char wide[128] = "";
    int n_wide = c->max_size > DML_STREAM_MAX_R ?
                 names_of_depth(want, req, DML_METRIC_DEPTH_R, wide, sizeof wide) : 0;
    if (n_wide && req->metrics)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "%s with a streamed database need%s every label's database rows "
                             "R <= %d (one label has %d): raise --memory-limit",
                             wide, n_wide > 1 ? "" : "s", DML_STREAM_MAX_R, c->max_size);
    for (int m = 0; n_wide && m < DML_METRIC_COUNT; m++)
        if (ROWS[m].depth == DML_METRIC_DEPTH_R)
            want[m] = 0;
    char whole[128] = "";
    if (!req->metrics && names_of_depth(NULL, req, DML_METRIC_DEPTH_ALL, whole, sizeof whole))
        snprintf(res->omitted, sizeof res->omitted, "%s (it needs the whole ranking)", whole);
    size_t used = strlen(res->omitted);
    if (n_wide)
        snprintf(res->omitted + used, sizeof res->omitted - used,
                 "%s%s (a label has %d database rows, over the %d a query keeps)",
                 used ? "; " : "", wide, c->max_size, DML_STREAM_MAX_R);
    return DML_OK;
}

dml_status dml_eval_run(const dml_eval_request *req, dml_eval_result *res, dml_error *err)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(res, 0, sizeof *res);
    int want[DML_METRIC_COUNT];
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
    int passes = any_wanted(want, 1, -1), labelled = has(req, DML_METRIC_NEEDS_LABELS);
    /* the chunks also sum the PQ error a whole-set PQ metric reports */
    int streamed_pq = req->stream && any_wanted(want, 0, DML_METRIC_PQ);
    int streamed = req->stream && (passes || streamed_pq);
    size_t n_qv = (size_t)req->n_queries * columns(want);
    classes c;
    memset(&c, 0, sizeof c);
    /* A streamed database runs both passes at once: the PQ pass's values need a column of
     * their own. */
    size_t qv_bytes = (n_qv ? n_qv : 1) * (req->stream ? 2 : 1) * sizeof(double);
    double *qv = passes || streamed ? malloc(qv_bytes) : NULL;
    double *qv_pq = req->stream ? qv + n_qv : qv, qmse = NAN;
    int32_t *exact_nn = passes || streamed ? malloc((size_t)req->n_queries * sizeof(int32_t)) : NULL;
    if ((passes || streamed) && (!qv || !exact_nn))
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the metrics");
    if (st == DML_OK && passes && labelled)
        st = make_classes(req, &c, err);
    if (st == DML_OK && req->stream)
        st = stream_limits(req, &c, want, res, err);
    int label_metric = 0;
    for (int m = 0; m < DML_METRIC_COUNT; m++)
        label_metric |= want[m] && (ROWS[m].needs & DML_METRIC_NEEDS_LABELS);
    res->skipped_queries = label_metric ? c.skipped : 0;
    res->scored_queries = req->n_queries - res->skipped_queries;
    res->n_classes = label_metric ? c.n : 0;
    res->protocol2 = has_db(req);
    dml_eval_pass fp = {0}, pp = {0};
    if (st == DML_OK && (passes || streamed))
        fp = plan_pass(req, want, &c, 0, exact_nn, qv);
    if (st == DML_OK && streamed)
        pp = plan_pass(req, want, &c, 1, exact_nn, qv_pq);
    if (st == DML_OK && streamed)
        st = dml_eval_stream_run(req, &fp, req->pq ? &pp : NULL, streamed_pq ? &qmse : NULL,
                                 err);
    if (st == DML_OK && passes) {
        if (!req->stream)
            st = run_pass(req, &fp, NULL, err);
        if (st == DML_OK)
            add_pass_values(res, &fp, "", DML_METRIC_BOTH);
        if (st == DML_OK)
            add_pass_values(res, &fp, "", DML_METRIC_FLOAT);
    }
    for (int m = 0; st == DML_OK && m < DML_METRIC_COUNT; m++)
        if (want[m] && ROWS[m].whole) {
            double v = NAN;
            st = ROWS[m].whole(req, req->stream ? NULL : ref, n_local, qmse, &v, err);
            if (st == DML_OK)
                add_value(res, "", ROWS[m].values[0], v);
        }
    if (st == DML_OK && req->pq && passes) {
        uint8_t *owned = NULL;
        const uint8_t *codes = req->stream ? NULL : reference_codes(req, ref, n_local, &owned);
        if (!req->stream) /* the float pass's values are in: its columns are reused */
            pp = plan_pass(req, want, &c, 1, exact_nn, qv_pq);
        if (!req->stream)
            st = codes ? run_pass(req, &pp, codes, err)
                       : dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the codes");
        if (st == DML_OK)
            add_pass_values(res, &pp, "", DML_METRIC_PQ);
        if (st == DML_OK)
            add_pass_values(res, &pp, "pq_", DML_METRIC_BOTH);
        free(owned);
    }
    free_classes(&c);
    free(qv);
    free(exact_nn);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    res->seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return st;
}
