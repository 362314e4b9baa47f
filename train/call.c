/* dml_train_call (train/call.h): the config loaded, the caller's rows borrowed, the run. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"
#include "train/call.h"

/* The config of req, on every rank or on none. */
static dml_status load(const dml_train_request *req, dml_config *cfg, dml_error *err)
{
    const char *text = req->config_text ? req->config_text : "";
    const char *name = req->config_path ? req->config_path : "<config>";
    char *const *sets = (char *const *)req->sets;
    dml_status st = !cfg ? dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                                         "out of memory for the config")
                    : req->config_path ? dml_config_load(req->config_path, req->n_sets, sets, cfg,
                                                         err)
                                       : dml_config_load_text(text, strlen(text), name,
                                                              req->n_sets, sets, cfg, err);
    int failed = req->comm ? req->first_failure(req->comm, st != DML_OK) : -1;
    if (failed >= 0 && st == DML_OK) /* the others wait for nobody: every rank stops */
        st = dml_error_set(err, DML_ERR_CONFIG, name, 0, 0,
                           "rank %d could not load the config (its own message says why)", failed);
    return st;
}

/* The caller's rows as the run's datasets (empty where none), data.train and data.test named
 * after them. */
static dml_status borrow(const dml_train_data *data, dml_config *cfg, dml_dataset *tr,
                         dml_dataset *va, dml_dataset *te, dml_error *err)
{
    dml_status st = DML_OK;
    if (data->x_val && !data->x)
        st = dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                           "dml_train: validation rows (x_val) need training rows (x)");
    if (st == DML_OK && data->x_val && dml_config_where(cfg, "data.val_fraction", NULL, NULL))
        st = dml_config_error(cfg, "data.val_fraction", err,
                              "the validation rows are given (x_val): leave it unset");
    if (st == DML_OK && data->x)
        st = dml_dataset_borrow(data->x, data->n, data->d, data->y, data->x_b, data->d_b, "<x>", tr,
                                err);
    if (st == DML_OK && data->x_val) {
        st = dml_dataset_borrow(data->x_val, data->n_val, data->d, data->y_val, data->x_val_b,
                                data->d_b, "<x_val>", va, err);
        cfg->data.val_fraction = 0.0f; /* the given rows validate */
    }
    if (st == DML_OK && data->x_test)
        st = dml_dataset_borrow(data->x_test, data->n_test, data->d, data->y_test, data->x_test_b,
                                data->d_b, "<x_test>", te, err);
    /* Messages about the data name data.train: the arrays, unless the config names a file
     * (a run resumed by dml train then sees the config it was started with). */
    if (tr->x && !dml_config_where(cfg, "data.train", NULL, NULL))
        snprintf(cfg->data.train, sizeof cfg->data.train, "<x>");
    if (te->x && !dml_config_where(cfg, "data.test", NULL, NULL))
        snprintf(cfg->data.test, sizeof cfg->data.test, "<x_test>");
    else if (tr->x && !dml_config_where(cfg, "data.test", NULL, NULL))
        cfg->data.test[0] = '\0'; /* the default test set belongs to the default data.train */
    return st;
}

/* The run itself, once the config and rows are in hand. */
static dml_status run(const dml_config *cfg, dml_dataset *train, dml_dataset *val,
                      dml_dataset *test, const dml_train_request *req, dml_model **model,
                      dml_error *err)
{
    dml_model_file mf;
    dml_train_opts opts = {.out_dir = req->out_dir, .resume = req->resume, .log = req->log,
                           .stop = req->stop, .comm = req->comm,
                           .train = train->x ? train : NULL, .val = val->x ? val : NULL,
                           .test = test->x ? test : NULL, .no_folder = req->no_folder,
                           .progress = req->progress, .progress_ctx = req->progress_ctx,
                           .model = model ? &mf : NULL};
    memset(&mf, 0, sizeof mf);
    dml_status st = dml_train_run(cfg, &opts, err);
    if (st == DML_OK && model && dml_model_adopt(&mf, model) != DML_OK) {
        dml_model_file_free(&mf);
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the model");
    }
    return st;
}

dml_status dml_train_call(const dml_train_request *req, dml_model **model, dml_error *err)
{
    dml_config *cfg = malloc(sizeof *cfg);
    dml_status st = load(req, cfg, err);
    dml_dataset tr, va, te;
    memset(&tr, 0, sizeof tr);
    memset(&va, 0, sizeof va);
    memset(&te, 0, sizeof te);
    if (st == DML_OK && req->data)
        st = borrow(req->data, cfg, &tr, &va, &te, err);
    if (st == DML_OK)
        st = run(cfg, &tr, &va, &te, req, model, err);
    dml_dataset_free(&tr); /* empty when the run took them */
    dml_dataset_free(&va);
    dml_dataset_free(&te);
    free(cfg);
    return st;
}
