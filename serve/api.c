/* The public inference API of include/dml.h: a model handle over a read model.h5, and the
 * encode path every consumer (API, dml encode, exports) shares. */
#include <stdlib.h>
#include <string.h>

#include "dml.h"
#include "serve/serve.h"

struct dml_model {
    dml_model_file mf; /* read-only after open */
};

dml_status dml_model_file_encode(const dml_model_file *mf, int tower, const float *x, size_t n,
                                 float *out)
{
    const dml_mlp *m = dml_model_file_tower(mf, tower);
    if (!m || (n > 0 && (!x || !out)))
        return DML_ERR_USAGE;
    if (n == 0)
        return DML_OK;
    const dml_input_norm *norm = dml_model_file_tower_norm(mf, tower);
    size_t d_in = (size_t)dml_mlp_dim_in(m), d_out = (size_t)dml_mlp_dim_out(m), width = d_in;
    for (int i = 0; i < m->n_layers; i++)
        width += 2 * (size_t)m->layers[i].w.rows; /* a linear output and its activation */
    /* One graph per call, never shared: concurrent calls on one model touch disjoint memory
     * (the parameters are only read). The arena grows if this first guess is short. */
    dml_graph g;
    dml_graph_init(&g, DML_ENCODE_BLOCK * (width + 16) * sizeof(float) + 4096);
    dml_status st = g.status;
    for (size_t i0 = 0; st == DML_OK && i0 < n; i0 += DML_ENCODE_BLOCK) {
        int rows = (int)(n - i0 < DML_ENCODE_BLOCK ? n - i0 : DML_ENCODE_BLOCK);
        dml_graph_reset(&g);
        dml_tensor *in = dml_leaf_copy(&g, x + i0 * d_in, rows, (int)d_in, 0);
        if (in)
            dml_input_norm_apply(norm, in->data, (size_t)rows);
        dml_tensor *y = dml_mlp_forward(&g, m, in);
        if (!y)
            st = g.status != DML_OK ? g.status : DML_ERR_NOMEM;
        else
            memcpy(out + i0 * d_out, y->data, (size_t)rows * d_out * sizeof(float));
    }
    dml_graph_free(&g);
    return st;
}

dml_status dml_model_open(const char *path, dml_model **model, char *errbuf, size_t errlen)
{
    dml_error err;
    dml_error_clear(&err);
    dml_status st = DML_OK;
    dml_model *m = NULL;
    if (model)
        *model = NULL;
    if (!path || !model)
        st = dml_error_set(&err, DML_ERR_USAGE, NULL, 0, 0,
                           "dml_model_open: path and model must not be NULL");
    else if (!(m = calloc(1, sizeof *m)))
        st = dml_error_set(&err, DML_ERR_NOMEM, path, 0, 0, "out of memory for the model");
    else
        st = dml_model_file_read(path, &m->mf, &err);
    if (st != DML_OK) {
        free(m);
        if (errbuf && errlen)
            dml_error_format(&err, errbuf, errlen);
        return st;
    }
    if (errbuf && errlen)
        errbuf[0] = '\0';
    *model = m;
    return DML_OK;
}

dml_status dml_model_adopt(dml_model_file *mf, dml_model **model)
{
    if (!(*model = calloc(1, sizeof **model)))
        return DML_ERR_NOMEM;
    (*model)->mf = *mf;
    memset(mf, 0, sizeof *mf);
    return DML_OK;
}

const dml_model_file *dml_model_file_of(const dml_model *model)
{
    return &model->mf;
}

dml_status dml_model_save(const dml_model *model, const char *path, char *errbuf, size_t errlen)
{
    dml_error err;
    dml_error_clear(&err);
    dml_status st = model && path ? dml_model_file_write(path, &model->mf, &err)
                                  : dml_error_set(&err, DML_ERR_USAGE, NULL, 0, 0,
                                                  "dml_model_save: model and path must not be "
                                                  "NULL");
    if (errbuf && errlen)
        dml_error_format(&err, errbuf, errlen);
    return st;
}

void dml_model_free(dml_model *model)
{
    if (!model)
        return;
    dml_model_file_free(&model->mf);
    free(model);
}

int dml_model_dim_in(const dml_model *model)
{
    return dml_mlp_dim_in(&model->mf.net.encoder);
}

int dml_model_dim_out(const dml_model *model)
{
    return dml_mlp_dim_out(&model->mf.net.encoder);
}

dml_status dml_model_encode(const dml_model *model, const float *x, size_t n, float *out)
{
    return model ? dml_model_file_encode(&model->mf, 0, x, n, out) : DML_ERR_USAGE;
}

int dml_model_dim_in_b(const dml_model *model)
{
    const dml_mlp *b = dml_model_file_tower(&model->mf, 1);
    return b ? dml_mlp_dim_in(b) : 0;
}

dml_status dml_model_encode_b(const dml_model *model, const float *x, size_t n, float *out)
{
    return model ? dml_model_file_encode(&model->mf, 1, x, n, out) : DML_ERR_USAGE;
}

const dml_pq *dml_model_pq(const dml_model *model)
{
    return model->mf.pq.d ? &model->mf.pq : NULL;
}

const char *dml_model_metric(const dml_model *model)
{
    return model->mf.metric;
}

int dml_pq_m(const dml_pq *pq)
{
    return pq->m;
}

int dml_pq_nbits(const dml_pq *pq)
{
    return pq->nbits;
}

const float *dml_pq_centroids(const dml_pq *pq)
{
    return pq->centroids;
}
