/* The public training call of include/dml.h, dml_train: a config from text, rows from the
 * caller's arrays, progress through a callback, the trained model as a dml_model. A thin
 * wrapper over dml_train_call (train/call.h), the entry dml train goes through too: one
 * process, no run folder unless out_dir, quiet unless verbose, the message in errbuf. */
#include <signal.h>
#include <stdio.h>

#include "train/call.h"

/* The caller's stop flag is handed to the trainer as its signal flag: the same type on this
 * platform, so no copy has to be polled. */
_Static_assert(_Generic((sig_atomic_t)0, int: 1, default: 0), "sig_atomic_t must be int");

/* A trainer event told to the caller's callback (ctx: the caller's options). */
static int on_event(void *ctx, const dml_train_event *ev)
{
    const dml_train_options *o = ctx;
    static const char *const names[] = {"map_at_r", "precision_at_1"};
    double values[2] = {ev->map_at_r, ev->precision_at_1};
    dml_train_progress p = {ev->step, ev->total_steps, ev->loss, ev->lr,
                            ev->validated ? 2 : 0, names, values};
    return o->callback(o->callback_ctx, &p);
}

static dml_status train(const char *config, const char *const *sets, int n_sets,
                        const dml_train_data *data, const dml_train_options *o, dml_model **model,
                        dml_error *err)
{
    if (!model || n_sets < 0 || (n_sets > 0 && !sets))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "dml_train: model must not be NULL, nor sets when n_sets > 0");
    if (o->resume && !o->out_dir)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "dml_train: resume needs a run folder (out_dir)");
    FILE *log = o->verbose ? stderr : fopen("/dev/null", "w");
    if (!log)
        return dml_error_set(err, DML_ERR_IO, "/dev/null", 0, 0, "cannot open it for the log");
    dml_train_request req = {.config_text = config, .sets = sets, .n_sets = n_sets, .data = data,
                             .out_dir = o->out_dir, .no_folder = !o->out_dir,
                             .resume = o->resume, .log = log, .stop = o->stop,
                             .progress = o->callback ? on_event : NULL,
                             .progress_ctx = (void *)o};
    dml_status st = dml_train_call(&req, model, err);
    if (log != stderr)
        fclose(log);
    return st;
}

dml_status dml_train(const char *config, const char *const *sets, int n_sets,
                     const dml_train_data *data, const dml_train_options *opts, dml_model **model,
                     char *errbuf, size_t errlen)
{
    static const dml_train_options none = {0};
    dml_error err;
    dml_error_clear(&err);
    if (model)
        *model = NULL;
    dml_status st = train(config, sets, n_sets, data, opts ? opts : &none, model, &err);
    if (errbuf && errlen)
        dml_error_format(&err, errbuf, errlen);
    return st;
}
