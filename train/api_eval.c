/* The public evaluation call of include/dml.h, dml_evaluate: a model's embeddings of rows in
 * memory scored as dml eval scores them, the metrics returned as name/value pairs. In train/
 * with dml_train, above both eval/ (the metrics) and serve/ (the model). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/readers.h"
#include "eval/eval.h"
#include "serve/serve.h"

struct dml_metrics {
    dml_eval_result res;
};

/* The int32 copy of labels v[n] (0..DML_MAX_LABEL), or of neighbour ids (0..max_id). */
static dml_status narrow(const int64_t *v, size_t n, int64_t max_id, const char *name,
                         int32_t **out, dml_error *err)
{
    if (!v)
        return DML_OK;
    if (!(*out = malloc((n ? n : 1) * sizeof **out)))
        return dml_error_set(err, DML_ERR_NOMEM, name, 0, 0, "out of memory for %zu values", n);
    if (max_id < 0)
        return dml_labels_narrow(*out, v, n, name, err);
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] > max_id)
            return dml_error_set(err, DML_ERR_DATA, name, 0, 0,
                                 "value %lld at %zu (0-based): expected a database row, 0..%lld",
                                 (long long)v[i], i, (long long)max_id);
        (*out)[i] = (int32_t)v[i];
    }
    return DML_OK;
}

/* Embeddings [n, dim] of x[n, d_in] (malloc'ed into *z). */
static dml_status embed(const dml_model_file *mf, const float *x, size_t n, const char *name,
                        float **z, dml_error *err)
{
    size_t dim = (size_t)dml_mlp_dim_out(&mf->net.encoder);
    if (!(*z = malloc((n * dim > 0 ? n * dim : 1) * sizeof **z)))
        return dml_error_set(err, DML_ERR_NOMEM, name, 0, 0, "out of memory embedding %zu rows", n);
    dml_status st = dml_model_file_encode(mf, 0, x, n, *z);
    return st == DML_OK ? DML_OK
                        : dml_error_set(err, st, name, 0, 0, "out of memory embedding %zu rows", n);
}

static dml_status evaluate(const dml_model *model, const float *x, size_t n, const int64_t *y,
                           const float *x_db, size_t n_db, const int64_t *y_db,
                           const int64_t *truth, int truth_k, int pq, dml_eval_result *res,
                           dml_error *err)
{
    if (!model || !x || n < 1 || n > INT32_MAX || (x_db && (n_db < 1 || n_db > INT32_MAX)) ||
        (truth && (!x_db || truth_k < 1)))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "dml_evaluate: expected a model, query rows (n >= 1), a database of "
                             "one row or more when given, and truth only with a database and "
                             "truth_k >= 1");
    const dml_model_file *mf = dml_model_file_of(model);
    if (pq && !mf->pq.d)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0, "pq: the model has no codebooks");
    float *zq = NULL, *zd = NULL;
    int32_t *yq = NULL, *yd = NULL, *ids = NULL;
    dml_status st = narrow(y, n, -1, "<y>", &yq, err);
    if (st == DML_OK)
        st = narrow(y_db, n_db, -1, "<y_db>", &yd, err);
    if (st == DML_OK && truth)
        st = narrow(truth, n * (size_t)truth_k, (int64_t)n_db - 1, "<truth>", &ids, err);
    if (st == DML_OK)
        st = embed(mf, x, n, "<x>", &zq, err);
    if (st == DML_OK && x_db)
        st = embed(mf, x_db, n_db, "<x_db>", &zd, err);
    if (st == DML_OK) {
        /* as dml eval builds its request */
        dml_eval_request req = {.d = dml_mlp_dim_out(&mf->net.encoder), .queries = zq,
                                .q_labels = yq, .n_queries = (int)n, .db = zd, .db_labels = yd,
                                .n_db = (int)n_db,
                                .distance = strcmp(mf->metric, "inner_product") ? DML_EVAL_L2SQ
                                                                                : DML_EVAL_IP,
                                .pq = pq ? &mf->pq : NULL, .truth = ids, .truth_k = truth_k,
                                .seed = (uint64_t)mf->seed};
        st = dml_eval_run(&req, res, err);
    }
    free(zq);
    free(zd);
    free(yq);
    free(yd);
    free(ids);
    return st;
}

dml_status dml_evaluate(const dml_model *model, const float *x, size_t n, const int64_t *y,
                        const float *x_db, size_t n_db, const int64_t *y_db, const int64_t *truth,
                        int truth_k, int pq, dml_metrics **metrics, char *errbuf, size_t errlen)
{
    dml_error err;
    dml_error_clear(&err);
    dml_status st = DML_OK;
    if (!metrics)
        st = dml_error_set(&err, DML_ERR_USAGE, NULL, 0, 0, "dml_evaluate: metrics is NULL");
    else if (!(*metrics = calloc(1, sizeof **metrics)))
        st = dml_error_set(&err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the metrics");
    else
        st = evaluate(model, x, n, y, x_db, n_db, y_db, truth, truth_k, pq, &(*metrics)->res, &err);
    if (st != DML_OK && metrics) {
        free(*metrics);
        *metrics = NULL;
    }
    if (errbuf && errlen)
        dml_error_format(&err, errbuf, errlen);
    return st;
}

int dml_metrics_count(const dml_metrics *m)
{
    return m ? m->res.n_values : 0;
}

const char *dml_metrics_name(const dml_metrics *m, int i)
{
    return m && i >= 0 && i < m->res.n_values ? m->res.values[i].name : NULL;
}

double dml_metrics_value(const dml_metrics *m, int i)
{
    return m && i >= 0 && i < m->res.n_values ? m->res.values[i].value : NAN;
}

double dml_metrics_get(const dml_metrics *m, const char *name)
{
    return m && name ? dml_eval_get(&m->res, name) : NAN;
}

void dml_metrics_free(dml_metrics *m)
{
    free(m);
}
