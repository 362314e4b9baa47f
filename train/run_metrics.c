/* metrics.jsonl: one JSON object per line, rewritten whole at every checkpoint so a crash
 * leaves the previous complete file, never a torn line. */
#include <math.h>
#include <stdio.h>

#include "train/run_output.h"

#define LOSS_EVERY 10

typedef struct metrics_text {
    const dml_run *r;
    const char *final_json;
} metrics_text;

/* ", "name": v, or null where v is NaN (nothing to measure) or Inf: JSON has neither. */
static void number(FILE *f, const char *name, double v)
{
    fprintf(f, ", \"%s\": ", name);
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

/* A validation line; the spread fields only where embeddings were measured. */
static void write_validation(FILE *f, const dml_validation *x)
{
    fprintf(f, "{\"step\": %ld", x->step);
    number(f, "val_map_at_r", x->map_at_r);
    number(f, "val_precision_at_1", x->precision_at_1);
    if (x->spread.rows >= 2) {
        number(f, "val_effective_rank", x->spread.effective_rank);
        number(f, "val_mean_std", x->spread.mean_std);
        number(f, "val_relative_spread", x->spread.relative_spread);
        number(f, "val_same_label_distance", x->spread.pos_dist);
        number(f, "val_other_label_distance", x->spread.neg_dist);
        fprintf(f, ", \"collapse\": %s", dml_spread_collapsed(&x->spread) ? "true" : "false");
    }
    fputs("}\n", f);
}

static void write_metrics(FILE *f, const void *ctx)
{
    const metrics_text *m = ctx;
    const dml_run *r = m->r;
    int v = 0;
    for (long s = 1; s <= r->step; s++) {
        if (s % LOSS_EVERY == 0 || s == r->step)
            fprintf(f, "{\"step\": %ld, \"loss\": %.6g, \"lr\": %.6g}\n", s,
                    (double)r->loss_curve[s - 1], (double)dml_schedule_lr(&r->schedule, s - 1));
        for (; v < r->n_val && r->val[v].step == s; v++)
            write_validation(f, &r->val[v]);
    }
    if (m->final_json)
        fprintf(f, "{\"step\": %ld, \"final\": %s}\n", r->step, m->final_json);
}

dml_status dml_run_write_metrics(dml_run *r, const char *final_json, dml_error *err)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->out_dir);
    metrics_text m = {r, final_json};
    return dml_file_write_stdio(path, "metrics", write_metrics, &m, err);
}
