/* Evaluation inside a run: validation during training, the final metrics at the end. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metric_table.h"
#include "train/run_output.h"

static int32_t *labels_of(const dml_dataset *ds, const int32_t *rows, int n)
{
    if (!ds->y)
        return NULL;
    int32_t *y = malloc((size_t)(n ? n : 1) * sizeof *y);
    for (int i = 0; y && i < n; i++)
        y[i] = ds->y[rows ? rows[i] : i];
    return y;
}

static int paired(const dml_config *c)
{
    return c->data.pairs == DML_PAIRS_HALVES || c->data.pairs == DML_PAIRS_FILE;
}

/* Metrics of rows of ds: protocol 1 for labelled data, recall/mrr for two-view pairs. */
static dml_status evaluate_set(dml_run *r, const dml_dataset *ds, const int32_t *rows, int n,
                               const char *const *metrics, int n_metrics, int use_pq,
                               dml_eval_result *res, dml_spread *spread, dml_error *err)
{
    float *z = dml_run_embed_rows(r, ds, rows, n, 0);
    float *zb = paired(r->cfg) ? dml_run_embed_rows(r, ds, rows, n, 1) : NULL;
    int32_t *y = labels_of(ds, rows, n);
    dml_status st = DML_OK;
    if (!z || (paired(r->cfg) && !zb) || (ds->y && !y))
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the evaluation");
    dml_eval_request req = {.d = dml_mlp_dim_out(&r->net.encoder),
                            .queries = z,
                            .q_labels = y,
                            .n_queries = n,
                            .metrics = metrics,
                            .n_metrics = n_metrics,
                            .knn_k = r->cfg->eval.knn_k,
                            .seed = (uint64_t)r->cfg->seed,
                            .pq = use_pq ? &r->pq : NULL};
    if (zb) { /* queries: anchors; references: their positives */
        req.db = zb;
        req.db_labels = y;
        req.n_db = n;
        req.paired = 1;
    }
    if (st == DML_OK)
        st = dml_eval_run(&req, res, err);
    if (st == DML_OK && spread)
        st = dml_embedding_spread(z, n, req.d, spread, err);
    if (st == DML_OK && spread && y)
        dml_label_distances(z, y, n, req.d, spread);
    free(z);
    free(zb);
    free(y);
    return st;
}

dml_status dml_run_validate(dml_run *r, dml_validation *v, dml_error *err)
{
    const dml_dataset *ds = r->split.n_val > 0 ? &r->train : &r->test;
    const int32_t *rows = r->split.n_val > 0 ? r->split.val : NULL;
    int n = r->split.n_val > 0 ? dml_run_validation_rows(r) : r->test.n;
    if (n == 0 || !ds->y) { /* nothing labelled to validate on: the loss alone guides the run */
        v->map_at_r = v->precision_at_1 = NAN;
        return DML_OK;
    }
    static const char *const metrics[] = {"map_at_r", "precision_at_1"};
    dml_eval_result res;
    dml_status st = evaluate_set(r, ds, rows, n, metrics, 2, 0, &res, &v->spread, err);
    if (st == DML_OK && r->streamed) /* the rows were read from the file */
        st = dml_row_cache_status(&r->cache, err);
    if (st != DML_OK) /* res may be unset */
        return st;
    v->map_at_r = dml_eval_get(&res, "map_at_r");
    v->precision_at_1 = dml_eval_get(&res, "precision_at_1");
    return DML_OK;
}

/* The final metrics: the configured ones on the test set by protocol 1 (and the paired ones),
 * then map_all and knn_accuracy of test queries against the training rows (all of them, the
 * ones labels_per_class set aside too) as the database. */
static dml_status final_metrics(dml_run *r, dml_eval_result *out, dml_error *err)
{
    const dml_config *c = r->cfg;
    const char *p1[DML_CONFIG_MAX_METRICS], *p2[DML_CONFIG_MAX_METRICS];
    int n1 = 0, n2 = 0, labelled = r->test.y != NULL;
    const unsigned label_needs = DML_METRIC_NEEDS_LABELS | DML_METRIC_NEEDS_Q_LABELS;
    for (int i = 0; i < c->eval.n_metrics; i++) {
        int m = dml_metric_find(c->eval.metrics[i]);
        DML_ASSERT(m >= 0); /* the config's parser took only the table's names */
        const dml_metric_row *row = &dml_metric_rows[m];
        if ((row->needs & DML_METRIC_NEEDS_PAIRS) && !paired(c))
            continue;
        if ((row->needs & label_needs) && !labelled)
            continue;
        if (row->default_db && !paired(c))
            p2[n2++] = row->name;
        else
            p1[n1++] = row->name;
    }
    /* two-view data without one of its metrics asked for: retrieval of each anchor's own
     * positive */
    for (int m = 0; paired(c) && n1 == 0 && m < DML_METRIC_COUNT; m++)
        if (dml_metric_rows[m].needs & DML_METRIC_NEEDS_PAIRS)
            p1[n1++] = dml_metric_rows[m].name;
    dml_status st = evaluate_set(r, &r->test, NULL, r->test.n, p1, n1, c->eval.pq, out, NULL, err);
    if (st != DML_OK || n2 == 0)
        return st;
    if (r->streamed) {
        fprintf(r->log, "# map_all and knn_accuracy against the training rows left out: they are "
                        "read in blocks (dml eval --db ranks them in bounded memory)\n");
        return st;
    }
    /* Protocol 2: test queries against the training rows (the DQN setting). */
    int n_db;
    int32_t *db_rows = dml_run_all_train_rows(r, &n_db);
    float *zq = dml_run_embed_rows(r, &r->test, NULL, r->test.n, 0);
    float *zd = db_rows ? dml_run_embed_rows(r, &r->train, db_rows, n_db, 0) : NULL;
    int32_t *yd = db_rows ? labels_of(&r->train, db_rows, n_db) : NULL;
    dml_eval_result res2;
    if (!zq || !zd || !yd)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the evaluation");
    dml_eval_request req = {.d = dml_mlp_dim_out(&r->net.encoder), .queries = zq,
                            .q_labels = r->test.y, .n_queries = r->test.n, .db = zd,
                            .db_labels = yd, .n_db = n_db, .metrics = p2,
                            .n_metrics = n2, .knn_k = c->eval.knn_k, .seed = (uint64_t)c->seed,
                            .pq = c->eval.pq ? &r->pq : NULL};
    if (st == DML_OK)
        st = dml_eval_run(&req, &res2, err);
    for (int i = 0; st == DML_OK && i < res2.n_values && out->n_values < DML_EVAL_MAX_METRICS; i++)
        if (isnan(dml_eval_get(out, res2.values[i].name)))
            out->values[out->n_values++] = res2.values[i];
    out->seconds += st == DML_OK ? res2.seconds : 0.0;
    free(db_rows);
    free(zq);
    free(zd);
    free(yd);
    return st;
}

dml_status dml_run_finish(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    dml_status st = DML_OK;
    if (!r->pq_final && !(c->loss.quantization.weight > 0.0f && r->pq_ready)) {
        fprintf(r->log, "fitting PQ codebooks (M = %d, K = %d) on %d training embeddings\n",
                c->pq.m, c->pq.k, r->split.n_train);
        st = dml_run_fit_codebooks(r, 1, err);
    }
    dml_eval_result res;
    memset(&res, 0, sizeof res);
    if (st == DML_OK && r->test.n > 0) {
        st = final_metrics(r, &res, err);
        if (st == DML_OK) {
            fprintf(r->log, "\nfinal metrics on %s:\n", c->data.test);
            dml_eval_print_table(&res, r->log);
        }
    }
    char *json = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&json, &len);
    if (mem) {
        dml_eval_write_json(&res, mem);
        fclose(mem);
    }
    if (st == DML_OK && !json)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory");
    int writes = st == DML_OK && !r->no_folder;
    if (writes)
        st = dml_run_write_metrics(r, json, err);
    if (writes && st == DML_OK)
        st = dml_run_write_model(r, json, err);
    if (writes && st == DML_OK)
        st = dml_run_write_report(r, &res, err);
    if (writes && st == DML_OK)
        fprintf(r->log, "wrote %s/model.h5, metrics.jsonl, report.html\n", r->out_dir);
    free(r->final_json);
    r->final_json = json; /* for dml_run_take_model */
    return st;
}
