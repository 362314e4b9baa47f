/* The public evaluation call of include/dml.h, dml_evaluate: rows in memory scored as dml eval
 * scores files, through its dml_eval_model_run (eval/database.c) over in-memory data sets, the
 * metrics returned as name/value pairs. In train/ with dml_train, above both eval/ (the
 * metrics) and serve/ (the model). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "serve/serve.h"

struct dml_metrics {
    dml_eval_result res;
};

/* The ground truth truth[n, k] as dml_neighbors_open reads it, its ids checked to be database
 * rows (0..n_db - 1). */
static dml_status neighbors(const int64_t *truth, int n, int k, int64_t n_db, dml_neighbors *nb,
                            dml_error *err)
{
    size_t count = (size_t)n * (size_t)k;
    *nb = (dml_neighbors){.n = n, .k = k, .source = "<truth>"};
    if (!(nb->ids = malloc(count * sizeof *nb->ids)))
        return dml_error_set(err, DML_ERR_NOMEM, nb->source, 0, 0,
                             "out of memory for %zu neighbour ids", count);
    for (size_t i = 0; i < count; i++) {
        if (truth[i] < 0 || truth[i] >= n_db)
            return dml_error_set(err, DML_ERR_DATA, nb->source, 0, 0,
                                 "value %lld at %zu (0-based): expected a database row, 0..%lld",
                                 (long long)truth[i], i, (long long)n_db - 1);
        nb->ids[i] = (int32_t)truth[i];
    }
    return DML_OK;
}

/* What dml_evaluate checks itself: what dml eval's command line cannot get wrong. */
static dml_status check_args(const dml_model_file *mf, const dml_eval_data *dt, dml_error *err)
{
    int dual = dml_model_file_tower(mf, 1) != NULL;
    if (!dt->x || (dt->truth && (!dt->x_db || dt->truth_k < 1)))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "dml_evaluate: expected query rows (x), and truth only with a "
                             "database (x_db) and truth_k >= 1");
    if (dt->x_b && !dual)
        return dml_error_set(err, DML_ERR_USAGE, "<x_b>", 0, 0,
                             "a second view, but the model has one tower: x_b is a dual "
                             "encoder's");
    if (dt->x_db && dual)
        return dml_error_set(err, DML_ERR_USAGE, "<x_db>", 0, 0,
                             "a dual encoder's references are the queries' second views (x_b, "
                             "or x's halves), not a database");
    return DML_OK;
}

static dml_status evaluate(const dml_model *model, const dml_eval_data *dt, int pq,
                           const char *metrics, dml_eval_result *res, dml_error *err)
{
    if (!model || !dt)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "dml_evaluate: model and data must not be NULL");
    const dml_model_file *mf = dml_model_file_of(model);
    dml_eval_metric_list keys = {.n = 0};
    dml_dataset q = {0}, db = {0};
    dml_neighbors truth = {0};
    dml_status st = check_args(mf, dt, err);
    if (st == DML_OK && metrics)
        st = dml_eval_metric_list_parse(metrics, "metrics", &keys, err);
    if (st == DML_OK)
        st = dml_dataset_borrow(dt->x, dt->n, dt->d, dt->y, dt->x_b, dt->d_b, "<x>", &q, err);
    if (st == DML_OK && dt->x_db)
        st = dml_dataset_borrow(dt->x_db, dt->n_db, dt->d, dt->y_db, NULL, 0, "<x_db>", &db, err);
    if (st == DML_OK && dt->truth)
        st = neighbors(dt->truth, q.n, dt->truth_k, db.n, &truth, err);
    if (st == DML_OK) {
        dml_eval_model m;
        dml_model_file_eval_model(mf, "<model>", &m);
        dml_eval_model_request req = {.model = &m, .queries = &q, .db = dt->x_db ? &db : NULL,
                                      .truth = dt->truth ? &truth : NULL, .pq = pq,
                                      .metrics = keys.n ? keys.keys : NULL,
                                      .n_metrics = keys.n};
        st = dml_eval_model_run(&req, res, err);
    }
    dml_dataset_free(&q);
    dml_dataset_free(&db);
    dml_neighbors_free(&truth);
    return st;
}

dml_status dml_evaluate(const dml_model *model, const dml_eval_data *data, int pq,
                        const char *metrics, dml_metrics **out, char *errbuf, size_t errlen)
{
    dml_error err;
    dml_error_clear(&err);
    dml_status st = DML_OK;
    if (!out)
        st = dml_error_set(&err, DML_ERR_USAGE, NULL, 0, 0, "dml_evaluate: out is NULL");
    else if (!(*out = calloc(1, sizeof **out)))
        st = dml_error_set(&err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the metrics");
    else
        st = evaluate(model, data, pq, metrics, &(*out)->res, &err);
    if (st != DML_OK && out) {
        free(*out);
        *out = NULL;
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
