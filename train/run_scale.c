/* The training rows' input scale (data/scale.h): recorded in model.h5, and compared with the
 * test rows', whose embeddings mean nothing when they come in another scale. */
#include "train/run.h"

dml_status dml_run_measure_scale(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    /* rows read from the file as training reaches them: the first ones tell their scale */
    int n = r->streamed && r->split.n_train > DML_SCALE_SAMPLE_ROWS ? DML_SCALE_SAMPLE_ROWS
                                                                     : r->split.n_train;
    for (int view = 0; view < (r->train.x_b ? 2 : 1); view++) {
        dml_input_scale *s = view ? &r->scale_b : &r->scale, test;
        snprintf(s->mode, sizeof s->mode, "%s", dml_norm_kind_name(c->data.normalize));
        dml_status st = dml_input_scale_measure(s, &r->train, view, r->split.train, n, err);
        if (st == DML_OK && r->test.n && (!view || r->test.x_b))
            st = dml_input_scale_measure(&test, &r->test, view, NULL, r->test.n, err);
        if (st != DML_OK)
            return st;
        char msg[1024];
        if (r->test.n && (!view || r->test.x_b) &&
            dml_input_scale_mismatch(s, c->data.train, &test, c->data.test, msg, sizeof msg))
            fprintf(r->log, "%s%s\n", msg, view ? " (the second view)" : "");
    }
    return DML_OK;
}
