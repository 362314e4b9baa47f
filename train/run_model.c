/* A run's model file: model.init read in before training, model.h5 written at the end. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"
#include "train/run_output.h"

/* A problem with the model.init file, reported at the config key that named it. */
static dml_status init_error(const dml_config *c, dml_error *err)
{
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return dml_config_error(c, "model.init", err, "%s: %s", c->model.init, msg);
}

dml_status dml_run_load_init(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    dml_model_file mf;
    dml_status st = dml_model_file_read(c->model.init, &mf, err);
    if (st != DML_OK)
        return init_error(c, err);
    st = dml_model_file_copy_mlp(&r->net.encoder, &mf.net.encoder, c->model.init, "encoder", err);
    if (st != DML_OK)
        st = init_error(c, err);
    /* A pretrained autoencoder's decoder carries on when the recipe still reconstructs; a
     * decoder of other shapes (or none) leaves the fresh one. */
    int decoder = st == DML_OK && r->net.decoder.n_layers && mf.net.decoder.n_layers &&
                  dml_model_file_copy_mlp(&r->net.decoder, &mf.net.decoder, c->model.init,
                                          "decoder", NULL) == DML_OK;
    if (st == DML_OK)
        fprintf(r->log, "initialised the encoder%s from %s\n", decoder ? " and decoder" : "",
                c->model.init);
    dml_model_file_free(&mf);
    return st;
}

/* The run's model as a model file borrowing the run's buffers; config_yaml is malloc'ed. */
static dml_status borrow(const dml_run *r, const char *metrics_json, dml_model_file *mf,
                         dml_error *err)
{
    memset(mf, 0, sizeof *mf);
    mf->net = r->net;
    mf->norm = r->norm;
    mf->norm_b = r->norm_b;
    mf->scale = r->scale;
    mf->scale_b = r->scale_b;
    mf->pq = r->pq;
    int cosine = dml_config_loss_param(r->cfg, "distance", DML_DIST_EUCLIDEAN) == DML_DIST_COSINE;
    snprintf(mf->metric, sizeof mf->metric, "%s", cosine ? "inner_product" : "l2");
    mf->config_yaml = dml_config_to_yaml(r->cfg);
    mf->metrics_json = (char *)metrics_json;
    mf->seed = r->cfg->seed;
    mf->steps = r->step;
    return mf->config_yaml ? DML_OK
                           : dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory");
}

dml_status dml_run_write_model(dml_run *r, const char *metrics_json, dml_error *err)
{
    dml_model_file mf;
    char path[1100];
    snprintf(path, sizeof path, "%s/model.h5", r->out_dir);
    dml_status st = borrow(r, metrics_json, &mf, err);
    if (st == DML_OK)
        st = dml_model_file_write(path, &mf, err);
    free(mf.config_yaml);
    return st;
}

dml_status dml_run_take_model(dml_run *r, dml_model_file *mf, dml_error *err)
{
    dml_status st = borrow(r, r->final_json, mf, err);
    if (st != DML_OK)
        return st;
    /* Moved, not copied: the run forgets them, so closing it frees none. */
    r->final_json = NULL;
    memset(&r->net, 0, sizeof r->net);
    memset(&r->norm, 0, sizeof r->norm);
    memset(&r->norm_b, 0, sizeof r->norm_b);
    memset(&r->pq, 0, sizeof r->pq);
    return DML_OK;
}
