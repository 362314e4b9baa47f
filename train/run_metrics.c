/* metrics.jsonl: one JSON object per line, rewritten whole at every checkpoint so a crash
 * leaves the previous complete file, never a torn line. */
#include <stdio.h>
#include <unistd.h>

#include "train/run_output.h"

#define LOSS_EVERY 10

dml_status dml_run_write_metrics(dml_run *r, const char *final_json, dml_error *err)
{
    char path[1100], tmp[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", r->out_dir);
    dml_tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return dml_error_set(err, DML_ERR_IO, tmp, 0, 0, "cannot create the file");
    int v = 0;
    for (long s = 1; s <= r->step; s++) {
        if (s % LOSS_EVERY == 0 || s == r->step)
            fprintf(f, "{\"step\": %ld, \"loss\": %.6g, \"lr\": %.6g}\n", s,
                    (double)r->loss_curve[s - 1], (double)dml_schedule_lr(&r->schedule, s - 1));
        for (; v < r->n_val && r->val[v].step == s; v++)
            fprintf(f, "{\"step\": %ld, \"val_map_at_r\": %.6f, \"val_precision_at_1\": %.6f}\n", s,
                    r->val[v].map_at_r, r->val[v].precision_at_1);
    }
    if (final_json)
        fprintf(f, "{\"step\": %ld, \"final\": %s}\n", r->step, final_json);
    if (fclose(f) != 0) {
        unlink(tmp);
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the file");
    }
    return dml_file_commit(tmp, path, err);
}
