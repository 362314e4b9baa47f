/* The metric table (eval/metric_table.h): a row per metric of design/metrics.md, in its order,
 * with the function that computes it from a query's ranking (or from the whole set). */
#include "eval/metric_table.h"

#include <math.h>
#include <string.h>

enum { P1, RPREC, MAPR, MAPALL, RECALL, MRR, KNN, NMI, QMSE, PQREC, NNREC, ROWS };

/* The query's relevant references R: its class's references, itself left out in protocol 1. */
static int relevant(const dml_eval_pass *p, int q)
{
    int c = p->q_class[q];
    return c < 0 ? 0 : p->class_size[c] - p->protocol1;
}

static int is_rel(const dml_eval_pass *p, int q, int32_t row)
{
    return p->ref_class[row] == p->q_class[q];
}

static void precision_at_1(const dml_eval_pass *p, int q, const int32_t *idx, int found,
                           int *votes, double *v)
{
    (void)votes;
    v[0] = relevant(p, q) == 0 ? NAN : found > 0 && is_rel(p, q, idx[0]);
}

/* The first R results (R = relevant(), all found: the pass keeps the largest class's R). */
static int first_r(const dml_eval_pass *p, int q, int found)
{
    int r = relevant(p, q);
    DML_ASSERT(found >= r);
    return r;
}

static void r_precision(const dml_eval_pass *p, int q, const int32_t *idx, int found, int *votes,
                        double *v)
{
    (void)votes;
    int r = first_r(p, q, found), hits = 0;
    for (int t = 0; t < r; t++)
        hits += is_rel(p, q, idx[t]);
    v[0] = r == 0 ? NAN : (double)hits / r;
}

/* (1/R) sum over the relevant results among the first limit of P(k). */
static double average_precision(const dml_eval_pass *p, int q, const int32_t *idx, int limit,
                                int r)
{
    int hits = 0;
    double ap = 0.0;
    for (int t = 0; t < limit && hits < r; t++)
        if (is_rel(p, q, idx[t]))
            ap += (double)++hits / (t + 1);
    return ap / r;
}

static void map_at_r(const dml_eval_pass *p, int q, const int32_t *idx, int found, int *votes,
                     double *v)
{
    (void)votes;
    int r = first_r(p, q, found);
    v[0] = r == 0 ? NAN : average_precision(p, q, idx, r, r);
}

static void map_all(const dml_eval_pass *p, int q, const int32_t *idx, int found, int *votes,
                    double *v)
{
    (void)votes;
    int r = first_r(p, q, found); /* the pass keeps every reference */
    v[0] = r == 0 ? NAN : average_precision(p, q, idx, found, r);
}

/* The majority class of the first k results; a tie goes to the class of the nearest among the
 * tied. Scanning in rank order and switching only on a strictly larger count picks, among the
 * classes with the top count, the one seen first. */
static void knn_accuracy(const dml_eval_pass *p, int q, const int32_t *idx, int found, int *votes,
                         double *v)
{
    if (relevant(p, q) == 0) {
        v[0] = NAN;
        return;
    }
    int k = found < p->knn_k ? found : p->knn_k;
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
    v[0] = best == p->q_class[q];
}

/* The rank of query q's own positive (database row q) among the first k results, 0 beyond. */
static int own_rank(int q, const int32_t *idx, int found, int k)
{
    for (int t = 0; t < found && t < k; t++)
        if (idx[t] == q)
            return t + 1;
    return 0;
}

static void recall_at_k(const dml_eval_pass *p, int q, const int32_t *idx, int found, int *votes,
                        double *v)
{
    (void)p;
    (void)votes;
    const dml_metric_row *row = &dml_metric_rows[RECALL];
    int rank = own_rank(q, idx, found, row->k[row->n_values - 1]);
    for (int t = 0; t < row->n_values; t++)
        v[t] = rank >= 1 && rank <= row->k[t];
}

static void mrr_at_10(const dml_eval_pass *p, int q, const int32_t *idx, int found, int *votes,
                      double *v)
{
    (void)p;
    (void)votes;
    int rank = own_rank(q, idx, found, dml_metric_rows[MRR].k[0]);
    v[0] = rank ? 1.0 / rank : 0.0;
}

static void pq_recall_at_r(const dml_eval_pass *p, int q, const int32_t *idx, int found,
                           int *votes, double *v)
{
    (void)votes;
    v[0] = 0.0;
    for (int t = 0; t < found && t < dml_metric_rows[PQREC].k[0]; t++)
        if (idx[t] == p->exact_nn[q])
            v[0] = 1.0;
}

/* ann-benchmarks' k-nn recall: the share of the query's k true nearest rows (by the raw
 * vectors) among its first k results. */
static void nn_recall_at_k(const dml_eval_pass *p, int q, const int32_t *idx, int found,
                           int *votes, double *v)
{
    (void)votes;
    const dml_metric_row *row = &dml_metric_rows[NNREC];
    const int32_t *truth = p->truth + (size_t)q * p->truth_k;
    for (int t = 0; t < row->n_values; t++) {
        int k = row->k[t], hits = 0;
        if (!dml_metric_value_on(NNREC, t, p->truth_k, p->n_ref))
            continue;
        for (int i = 0; i < k && i < found; i++)
            for (int j = 0; j < k; j++)
                if (idx[i] == truth[j]) {
                    hits++;
                    break;
                }
        v[t] = (double)hits / k;
    }
}

static dml_status nmi(const dml_eval_request *req, const float *ref, int n_ref, double streamed,
                      double *v, dml_error *err)
{
    (void)ref;
    (void)n_ref;
    (void)streamed;
    if (req->slices)
        return dml_eval_shard_nmi(req, v, err);
    return dml_eval_nmi(req->queries, req->q_labels, req->n_queries, req->d, req->seed, v, err);
}

static dml_status quantization_mse(const dml_eval_request *req, const float *ref, int n_ref,
                                   double streamed, double *v, dml_error *err)
{
    *v = streamed;
    if (req->slices)
        return dml_eval_shard_qmse(req, ref, n_ref, v, err);
    if (ref && dml_pq_quantization_mse(req->pq, ref, (size_t)n_ref, v) != DML_OK)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for quantization_mse");
    return DML_OK;
}

#define LABELS DML_METRIC_NEEDS_LABELS
#define PAIRS DML_METRIC_NEEDS_PAIRS

const dml_metric_row dml_metric_rows[DML_METRIC_COUNT] = {
    [P1] = {"precision_at_1", "labels: the nearest reference has the query's label",
            LABELS, 0, DML_METRIC_BOTH, 1, {"precision_at_1"}, {1}, DML_METRIC_DEPTH_K,
            precision_at_1, NULL},
    [RPREC] = {"r_precision", "labels: the share of the first R results with its label",
               LABELS, 0, DML_METRIC_BOTH, 1, {"r_precision"}, {0}, DML_METRIC_DEPTH_R,
               r_precision, NULL},
    [MAPR] = {"map_at_r", "labels: mean average precision of the first R results",
              LABELS, 0, DML_METRIC_BOTH, 1, {"map_at_r"}, {0}, DML_METRIC_DEPTH_R, map_at_r,
              NULL},
    [MAPALL] = {"map_all", "labels: mean average precision of the whole ranking",
                LABELS, 1, DML_METRIC_BOTH, 1, {"map_all"}, {0}, DML_METRIC_DEPTH_ALL, map_all,
                NULL},
    [RECALL] = {"recall_at_k", "pairs: the own positive is among the first k = 1, 5, 10",
                PAIRS, 0, DML_METRIC_BOTH, 3, {"recall_at_1", "recall_at_5", "recall_at_10"},
                {1, 5, 10}, DML_METRIC_DEPTH_K, recall_at_k, NULL},
    [MRR] = {"mrr_at_10", "pairs: 1/rank of the own positive, 0 beyond rank 10",
             PAIRS, 0, DML_METRIC_BOTH, 1, {"mrr_at_10"}, {10}, DML_METRIC_DEPTH_K, mrr_at_10,
             NULL},
    [KNN] = {"knn_accuracy", "labels: the k nearest's majority label is right (k: knn_k, 5)",
             LABELS, 1, DML_METRIC_BOTH, 1, {"knn_accuracy"}, {0}, DML_METRIC_DEPTH_KNN,
             knn_accuracy, NULL},
    [NMI] = {"nmi", "labels: NMI of a k-means of the queries and their labels",
             DML_METRIC_NEEDS_Q_LABELS, 0, DML_METRIC_FLOAT, 1, {"nmi"}, {0}, DML_METRIC_DEPTH_K,
             NULL, nmi},
    [QMSE] = {"quantization_mse", "PQ: the mean squared error of the references' codes",
              DML_METRIC_NEEDS_PQ, 0, DML_METRIC_PQ, 1, {"quantization_mse"}, {0},
              DML_METRIC_DEPTH_K, NULL, quantization_mse},
    [PQREC] = {"pq_recall_at_r", "PQ: the exact nearest neighbour is in the first 10 by ADC",
               DML_METRIC_NEEDS_PQ, 0, DML_METRIC_PQ, 1, {"pq_recall_at_r"}, {DML_PQ_RECALL_R},
               DML_METRIC_DEPTH_K, pq_recall_at_r, NULL},
    [NNREC] = {"nn_recall_at_k", "truth: true k nearest among the first k = 1, 10, 100",
               DML_METRIC_NEEDS_TRUTH, 0, DML_METRIC_BOTH, 3,
               {"nn_recall_at_1", "nn_recall_at_10", "nn_recall_at_100"}, {1, 10, 100},
               DML_METRIC_DEPTH_K, nn_recall_at_k, NULL},
};
/* The rows are named by the enum above, so a row added there and not to DML_METRIC_COUNT fails
 * here; one left without an initializer is caught by tests/test_eval_metrics.c's walk. */
_Static_assert(ROWS == DML_METRIC_COUNT, "DML_METRIC_COUNT is the number of metric rows");

int dml_metric_find(const char *name)
{
    for (int m = 0; name && m < DML_METRIC_COUNT; m++)
        if (!strcmp(dml_metric_rows[m].name, name))
            return m;
    return -1;
}

int dml_metric_of_value(const char *name, int *pq)
{
    for (int twin = 0; twin < 2; twin++) {
        const char *key = twin ? name + 3 : name;
        if (twin && strncmp(name, "pq_", 3) != 0)
            break;
        for (int m = 0; m < DML_METRIC_COUNT; m++) {
            const dml_metric_row *row = &dml_metric_rows[m];
            if (twin && row->where != DML_METRIC_BOTH)
                continue;
            for (int t = 0; t < row->n_values; t++)
                if (!strcmp(row->values[t], key)) {
                    if (pq)
                        *pq = twin || row->where == DML_METRIC_PQ;
                    return m;
                }
        }
    }
    return -1;
}

int dml_metric_value_on(int m, int t, int truth_k, int n_ref)
{
    int k = dml_metric_rows[m].k[t];
    return !(dml_metric_rows[m].needs & DML_METRIC_NEEDS_TRUTH) || (k <= truth_k && k <= n_ref);
}

void dml_metric_names(unsigned skip, const char *sep, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int m = 0; m < DML_METRIC_COUNT && used < n; m++)
        if (!(dml_metric_rows[m].needs & skip))
            used += (size_t)snprintf(out + used, n - used, "%s%s", used ? sep : "",
                                     dml_metric_rows[m].name);
}
