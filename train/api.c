/* The public training call of include/dml.h, dml_train: a config from text, rows from the
 * caller's arrays, progress through a callback, the trained model as a dml_model. It lives in
 * train/ because it drives the trainer; the model handle it returns is serve/'s. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"
#include "train/trainer.h"

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

/* The run itself, once the config and data are in hand. */
static dml_status run(const dml_config *cfg, dml_dataset *train, dml_dataset *val,
                      dml_dataset *test, const dml_train_options *o, dml_model **model,
                      dml_error *err)
{
    FILE *log = o->verbose ? stderr : fopen("/dev/null", "w");
    if (!log)
        return dml_error_set(err, DML_ERR_IO, "/dev/null", 0, 0, "cannot open it for the log");
    dml_model_file mf;
    dml_train_opts opts = {.out_dir = o->out_dir, .resume = o->resume, .log = log,
                           .stop = o->stop, .train = train->x ? train : NULL,
                           .val = val->x ? val : NULL, .test = test->x ? test : NULL,
                           .no_folder = !o->out_dir,
                           .progress = o->callback ? on_event : NULL, .progress_ctx = (void *)o,
                           .model = &mf};
    memset(&mf, 0, sizeof mf);
    dml_status st = dml_train_run(cfg, &opts, err);
    if (st == DML_OK && dml_model_adopt(&mf, model) != DML_OK) {
        dml_model_file_free(&mf);
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the model");
    }
    if (log != stderr)
        fclose(log);
    return st;
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
    dml_config *cfg = malloc(sizeof *cfg);
    if (!cfg)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the config");
    const char *text = config ? config : "";
    dml_status st = dml_config_load_text(text, strlen(text), "<config>", n_sets,
                                         (char *const *)sets, cfg, err);
    dml_dataset tr, va, te;
    memset(&tr, 0, sizeof tr);
    memset(&va, 0, sizeof va);
    memset(&te, 0, sizeof te);
    if (st == DML_OK && data && data->x_val && !data->x)
        st = dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                           "dml_train: validation rows (x_val) need training rows (x)");
    if (st == DML_OK && data && data->x_val && dml_config_where(cfg, "data.val_fraction", NULL,
                                                                NULL))
        st = dml_config_error(cfg, "data.val_fraction", err,
                              "the validation rows are given (x_val): leave it unset");
    if (st == DML_OK && data && data->x)
        st = dml_dataset_borrow(data->x, data->n, data->d, data->y, data->x_b, data->d_b, "<x>", &tr,
                         err);
    if (st == DML_OK && data && data->x_val) {
        st = dml_dataset_borrow(data->x_val, data->n_val, data->d, data->y_val, data->x_val_b, data->d_b,
                         "<x_val>", &va, err);
        cfg->data.val_fraction = 0.0f; /* the given rows validate */
    }
    if (st == DML_OK && data && data->x_test)
        st = dml_dataset_borrow(data->x_test, data->n_test, data->d, data->y_test, data->x_test_b,
                         data->d_b, "<x_test>", &te, err);
    /* Messages about the data name data.train: the arrays, unless the config names a file
     * (a run resumed by dml train then sees the config it was started with). */
    if (tr.x && !dml_config_where(cfg, "data.train", NULL, NULL))
        snprintf(cfg->data.train, sizeof cfg->data.train, "<x>");
    if (te.x && !dml_config_where(cfg, "data.test", NULL, NULL))
        snprintf(cfg->data.test, sizeof cfg->data.test, "<x_test>");
    else if (tr.x && !dml_config_where(cfg, "data.test", NULL, NULL))
        cfg->data.test[0] = '\0'; /* the default test set belongs to the default data.train */
    if (st == DML_OK)
        st = run(cfg, &tr, &va, &te, o, model, err);
    dml_dataset_free(&tr); /* empty when the run took them */
    dml_dataset_free(&va);
    dml_dataset_free(&te);
    free(cfg);
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
