/* The table of metrics: one row per metric of design/metrics.md, with everything the rest of dml
 * needs to know about it. dml_eval_run picks, plans and computes the metrics from it; the
 * config's eval.metrics, dml eval --metrics and its help, the names in the JSON output and the
 * float/PQ columns of the table and the report all read it, and the tests and docs/config.md
 * walk it. Adding a metric is one row in eval/metric_table.c (with its compute function). */
#ifndef DML_METRIC_TABLE_H
#define DML_METRIC_TABLE_H

#include "eval/eval.h"

#define DML_METRIC_MAX_VALUES 3 /* values one metric reports (recall_at_k: @1, @5, @10) */

/* What a metric needs from the data (dml_metric_row.needs). */
enum {
    DML_METRIC_NEEDS_LABELS = 1u << 0,   /* labels on the queries and the references */
    DML_METRIC_NEEDS_Q_LABELS = 1u << 1, /* labels on the queries */
    DML_METRIC_NEEDS_PAIRS = 1u << 2,    /* database row i is query i's own positive */
    DML_METRIC_NEEDS_PQ = 1u << 3,       /* PQ codebooks */
    DML_METRIC_NEEDS_TRUTH = 1u << 4,    /* a database and its ground-truth neighbours (a
                                          * training run never has them) */
};

/* Where a metric is computed. */
typedef enum dml_metric_where {
    DML_METRIC_BOTH,  /* on the float embeddings, and again on the PQ codes as pq_<value> */
    DML_METRIC_FLOAT, /* once, on the float embeddings */
    DML_METRIC_PQ     /* once, with the PQ codes */
} dml_metric_where;

/* How deep each query's ranking must be for a per-query metric. */
typedef enum dml_metric_depth {
    DML_METRIC_DEPTH_K,   /* the largest k of its values */
    DML_METRIC_DEPTH_R,   /* R, the query's relevant references: the largest class (a streamed
                           * database keeps DML_STREAM_MAX_R) */
    DML_METRIC_DEPTH_ALL, /* the whole ranking (never over a streamed database) */
    DML_METRIC_DEPTH_KNN  /* the request's knn_k */
} dml_metric_depth;

typedef struct dml_metric_row {
    const char *name; /* the key of --metrics and eval.metrics */
    const char *doc;  /* one line: what it measures */
    unsigned needs;
    int default_db; /* 1: among the defaults only with a database (protocol 2); asked for by
                     * name, protocol 1 gives it too */
    dml_metric_where where;
    /* The values it reports, and the rank cut-off k each is at (its parameter: recall_at_k's
     * 1, 5, 10; 0 where the data set it). A DML_METRIC_NEEDS_TRUTH value is reported when the
     * ground truth and the database hold its k neighbours. */
    int n_values;
    const char *values[DML_METRIC_MAX_VALUES];
    int k[DML_METRIC_MAX_VALUES];
    dml_metric_depth depth;
    /* A per-query metric: query q's values v[n_values] from its ranking idx[found], nearest
     * first (votes: [n_classes] zeros, left zero); NAN for a query it skips. dml_eval_run
     * averages them over the queries. */
    void (*query)(const dml_eval_pass *p, int q, const int32_t *idx, int found, int *votes,
                  double *v);
    /* A metric of the whole set: its value from the request, the references ref[n_ref, d]
     * (NULL when streamed; this process's slice of them when sharded, req->slices) and, for a
     * streamed database, the value the chunks summed. */
    dml_status (*whole)(const dml_eval_request *req, const float *ref, int n_ref, double streamed,
                        double *v, dml_error *err);
} dml_metric_row;

extern const dml_metric_row dml_metric_rows[DML_METRIC_COUNT];

/* The index of the row named name, or -1. */
int dml_metric_find(const char *name);
/* The row that reports the value named name ("recall_at_5", "pq_map_at_r",
 * "quantization_mse"), or -1; *pq (may be NULL) 1 when it is the PQ side of a DML_METRIC_BOTH
 * row or a DML_METRIC_PQ row's. */
int dml_metric_of_value(const char *name, int *pq);
/* Whether value t of row m is reported for a ground truth of truth_k neighbours and n_ref
 * references. */
int dml_metric_value_on(int m, int t, int truth_k, int n_ref);
/* The names of the rows whose needs avoid the bits of skip, joined by sep, into out[n]. */
void dml_metric_names(unsigned skip, const char *sep, char *out, size_t n);

#endif
