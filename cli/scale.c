/* The warning of dml eval and dml encode when their data look unlike the rows the model was
 * trained on (data/scale.h). */
#include <stdio.h>

#include "cli/cli.h"

void dml_cli_warn_scale(const char *command, const char *model_path, const dml_model_file *mf,
                        int tower, const dml_input_scale *got, const char *got_name)
{
    const dml_input_scale *want = tower ? &mf->scale_b : &mf->scale;
    char where[1100], msg[2400];
    snprintf(where, sizeof where, "recorded in %s", model_path);
    if (dml_input_scale_mismatch(want, where, got, got_name, msg, sizeof msg))
        fprintf(stderr, "dml %s: %s\n", command, msg);
}
