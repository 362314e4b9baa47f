/* A run's report.html: its curves, final metrics and a sample of test embeddings. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/run_output.h"

dml_status dml_run_write_report(dml_run *r, const dml_eval_result *final, dml_error *err)
{
    const dml_dataset *ds = r->test.n ? &r->test : &r->train;
    /* Every (n / shown)-th row: a sample spread over the whole set. */
    int n = ds->n < DML_REPORT_MAX_POINTS ? ds->n : DML_REPORT_MAX_POINTS;
    int dim = dml_mlp_dim_out(&r->net.encoder);
    int32_t *rows = malloc((size_t)(n ? n : 1) * sizeof *rows);
    for (int i = 0; rows && i < n; i++)
        rows[i] = (int32_t)((long)i * ds->n / n);
    float *z = rows ? dml_run_embed_rows(r, ds, rows, n, 0) : NULL;
    int32_t *y = ds->y && rows ? malloc((size_t)(n ? n : 1) * sizeof(int32_t)) : NULL;
    long *val_steps = malloc((size_t)(r->n_val + 1) * sizeof(long));
    double *val_values = malloc((size_t)(r->n_val + 1) * 2 * sizeof(double));
    char *config = dml_config_to_yaml(r->cfg);
    dml_status st = DML_OK;
    if (!z || (ds->y && !y) || !val_steps || !val_values || !config)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the report");
    if (st == DML_OK) {
        if (y)
            dml_dataset_gather_labels(y, ds, rows, n);
        for (int i = 0; i < r->n_val; i++) {
            val_steps[i] = r->val[i].step;
            val_values[2 * i] = r->val[i].map_at_r;
            val_values[2 * i + 1] = r->val[i].precision_at_1;
        }
        static const char *const names[] = {"map_at_r", "precision_at_1"};
        dml_report rep = {.title = r->cfg->name, .config_text = config,
                          .loss = r->loss_curve, .n_steps = r->step,
                          .val_steps = val_steps, .val_values = val_values, .val_names = names,
                          .n_val = r->n_val, .n_val_metrics = 2, .final = final,
                          .emb = z, .labels = y, .n_emb = n, .d = dim};
        char path[1100];
        snprintf(path, sizeof path, "%s/report.html", r->out_dir);
        st = dml_report_write(path, &rep, err);
    }
    free(rows);
    free(z);
    free(y);
    free(val_steps);
    free(val_values);
    free(config);
    return st;
}
