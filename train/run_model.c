/* A run's model file: model.init read in before training, model.h5 written at the end. */
#include <stdlib.h>
#include <string.h>

#include "train/model_file.h"
#include "train/run_output.h"

/* Copies src's weights into dst (same shapes, checked by the caller). */
static void copy_weights(dml_mlp *dst, const dml_mlp *src)
{
    for (int i = 0; i < dst->n_layers; i++) {
        memcpy(dst->layers[i].w.data, src->layers[i].w.data,
               (size_t)src->layers[i].w.rows * src->layers[i].w.cols * sizeof(float));
        memcpy(dst->layers[i].b.data, src->layers[i].b.data,
               (size_t)src->layers[i].b.cols * sizeof(float));
    }
}

/* "" when a has the same layer shapes as b; otherwise what differs. */
static int same_shapes(const dml_mlp *a, const dml_mlp *b, char *why, size_t n)
{
    if (a->n_layers != b->n_layers) {
        snprintf(why, n, "%d layers where this config builds %d", b->n_layers, a->n_layers);
        return 0;
    }
    for (int i = 0; i < a->n_layers; i++)
        if (a->layers[i].w.rows != b->layers[i].w.rows || a->layers[i].w.cols != b->layers[i].w.cols) {
            snprintf(why, n, "layer %d is %d x %d where this config builds %d x %d", i,
                     b->layers[i].w.rows, b->layers[i].w.cols, a->layers[i].w.rows,
                     a->layers[i].w.cols);
            return 0;
        }
    return 1;
}

dml_status dml_run_load_init(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    dml_model_file mf;
    dml_status st = dml_model_file_read(c->model.init, &mf, err);
    if (st != DML_OK)
        return dml_config_error(c, "model.init", err, "%s", err->msg);
    char why[200];
    if (!same_shapes(&r->net.encoder, &mf.net.encoder, why, sizeof why))
        st = dml_config_error(c, "model.init", err, "the encoder of %s does not fit: %s",
                              c->model.init, why);
    if (st == DML_OK) {
        copy_weights(&r->net.encoder, &mf.net.encoder);
        /* A pretrained autoencoder's decoder carries on when the recipe still reconstructs. */
        if (r->net.decoder.n_layers && same_shapes(&r->net.decoder, &mf.net.decoder, why, sizeof why))
            copy_weights(&r->net.decoder, &mf.net.decoder);
        fprintf(r->log, "initialised the encoder%s from %s\n",
                r->net.decoder.n_layers && mf.net.decoder.n_layers ? " and decoder" : "",
                c->model.init);
    }
    dml_model_file_free(&mf);
    return st;
}

dml_status dml_run_write_model(dml_run *r, const char *metrics_json, dml_error *err)
{
    dml_model_file mf;
    memset(&mf, 0, sizeof mf);
    mf.net = r->net;
    mf.norm = r->norm;
    mf.norm_b = r->norm_b;
    mf.pq = r->pq;
    snprintf(mf.metric, sizeof mf.metric, "%s",
             r->cfg->loss.distance == DML_DIST_COSINE ? "inner_product" : "l2");
    mf.config_yaml = dml_config_to_yaml(r->cfg);
    mf.metrics_json = (char *)metrics_json;
    mf.seed = r->cfg->seed;
    mf.steps = r->step;
    char path[1100];
    snprintf(path, sizeof path, "%s/model.h5", r->out_dir);
    dml_status st = mf.config_yaml ? dml_model_file_write(path, &mf, err)
                                   : dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory");
    free(mf.config_yaml);
    return st;
}
