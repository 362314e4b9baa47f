/* metrics.jsonl: one JSON object per line, rewritten whole at every checkpoint so a crash
 * leaves the previous complete file, never a torn line. */
#include <stdio.h>

#include "train/run_output.h"

#define LOSS_EVERY 10

typedef struct metrics_text {
    const dml_run *r;
    const char *final_json;
} metrics_text;

static void write_metrics(FILE *f, const void *ctx)
{
    const metrics_text *m = ctx;
    const dml_run *r = m->r;
    int v = 0;
    for (long s = 1; s <= r->step; s++) {
        if (s % LOSS_EVERY == 0 || s == r->step)
            fprintf(f, "{\"step\": %ld, \"loss\": %.6g, \"lr\": %.6g}\n", s,
                    (double)r->loss_curve[s - 1], (double)dml_schedule_lr(&r->schedule, s - 1));
        for (; v < r->n_val && r->val[v].step == s; v++) {
            const dml_validation *x = &r->val[v];
            fprintf(f, "{\"step\": %ld, \"val_map_at_r\": %.6f, \"val_precision_at_1\": %.6f, "
                       "\"val_effective_rank\": %.4f, \"val_mean_std\": %.6g, \"val_relative_spread\": %.6g, "
                       "\"val_same_label_distance\": %.6g, \"val_other_label_distance\": %.6g, "
                       "\"collapse\": %s}\n",
                    s, x->map_at_r, x->precision_at_1, x->spread.effective_rank,
                    x->spread.mean_std, x->spread.relative_spread, x->spread.pos_dist,
                    x->spread.neg_dist, dml_spread_collapsed(&x->spread) ? "true" : "false");
        }
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
