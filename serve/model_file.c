/* model.h5 written atomically; the layout is in model_file.h, reading in model_read.c. */
#include "serve/model_file.h"

#include "data/h5_image.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *dml_model_file_type_name(dml_net_type t)
{
    return t == DML_NET_AUTOENCODER ? "autoencoder" : t == DML_NET_DUAL ? "dual" : "mlp";
}

const char *dml_model_file_output_name(dml_output_norm o)
{
    return o == DML_OUTPUT_L2 ? "l2" : o == DML_OUTPUT_TANH ? "tanh" : "none";
}

/* ---------------------------------------------------------------------------------------------
 * Writing */
static int put_num(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, const void *v)
{
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, file_type, s, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, mem_type, v) >= 0;
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(s);
    return ok;
}

static int put_i64(hid_t loc, const char *name, int64_t v)
{
    return put_num(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}

static int put_f32_attr(hid_t loc, const char *name, float v)
{
    return put_num(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v);
}

/* A dataset [dims] of the given file type from memory of mem_type, created with dcpl. */
static int put_array(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, const void *data,
                     int rank, const hsize_t *dims, hid_t dcpl)
{
    hid_t s = H5Screate_simple(rank, dims, NULL);
    hid_t d = s >= 0 ? H5Dcreate2(loc, name, file_type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    int ok = d >= 0 && H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0;
    if (d >= 0 && H5Dclose(d) < 0)
        ok = 0;
    if (s >= 0)
        H5Sclose(s);
    return ok;
}

/* A model's float dataset: one chunk (its index sits in the checksummed layout message, no
 * B-tree) with HDF5's Fletcher-32 filter, so a flipped weight fails the read instead of serving
 * wrong embeddings. */
static int put_f32(hid_t loc, const char *name, const float *data, int rank, const hsize_t *dims)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int ok = dcpl >= 0 && H5Pset_chunk(dcpl, rank, dims) >= 0 && H5Pset_fletcher32(dcpl) >= 0 &&
             put_array(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, rank, dims, dcpl);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    return ok;
}

/* A group whose links all stay in its (checksummed) object header, however many layers. */
static hid_t new_group(hid_t loc, const char *name)
{
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    hid_t g = gcpl >= 0 && H5Pset_link_phase_change(gcpl, DML_MODEL_MAX_LAYERS + 8,
                                                    DML_MODEL_MAX_LAYERS + 7) >= 0
                  ? H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT)
                  : -1;
    if (gcpl >= 0)
        H5Pclose(gcpl);
    return g;
}

/* The input scale the tower was trained on (data/scale.h), when known. */
static int put_scale(hid_t g, const dml_input_scale *s)
{
    if (!s || !s->mode[0])
        return 1;
    return dml_h5_put_str(g, "mode", s->mode) &&
           (!s->type[0] || dml_h5_put_str(g, "source_type", s->type)) &&
           (isnan(s->min) || (put_num(g, "source_min", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &s->min) &&
                              put_num(g, "source_max", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &s->max)));
}

static int put_norm(hid_t tower, const dml_input_norm *norm, const dml_input_scale *scale)
{
    hid_t g = new_group(tower, "input_norm");
    int ok = g >= 0 && dml_h5_put_str(g, "kind", norm && norm->d ? "standardize" : "none") &&
             put_scale(g, scale);
    if (ok && norm && norm->d) {
        hsize_t dims[1] = {(hsize_t)norm->d};
        ok = put_f32(g, "mean", norm->mean, 1, dims) && put_f32(g, "std", norm->std, 1, dims);
    }
    if (g >= 0)
        H5Gclose(g);
    return ok;
}

static int put_layer(hid_t tower, int i, const dml_mlp *m)
{
    const dml_linear *l = &m->layers[i];
    dml_activation act = i + 1 < m->n_layers ? m->act : DML_ACT_NONE;
    char name[32];
    snprintf(name, sizeof name, "layer_%03d", i);
    hid_t g = new_group(tower, name);
    hsize_t wd[2] = {(hsize_t)l->w.rows, (hsize_t)l->w.cols}, bd[1] = {(hsize_t)l->b.cols};
    int ok = g >= 0 && dml_h5_put_str(g, "type", "linear") &&
             dml_h5_put_str(g, "activation", dml_activation_name(act)) &&
             (act != DML_ACT_LEAKY_RELU || put_f32_attr(g, "negative_slope", DML_LEAKY_SLOPE)) &&
             put_i64(g, "in_features", l->w.cols) && put_i64(g, "out_features", l->w.rows) &&
             put_f32(g, "weight", l->w.data, 2, wd) && put_f32(g, "bias", l->b.data, 1, bd);
    if (g >= 0)
        H5Gclose(g);
    return ok;
}

static int put_tower(hid_t file, const char *name, const dml_mlp *m, const dml_input_norm *norm,
                     const dml_input_scale *scale)
{
    hid_t t = new_group(file, name);
    int ok = t >= 0 && dml_h5_put_str(t, "architecture", "mlp") &&
             put_i64(t, "input_dim", dml_mlp_dim_in(m)) &&
             put_i64(t, "output_dim", dml_mlp_dim_out(m)) && put_i64(t, "num_layers", m->n_layers) &&
             put_norm(t, norm, scale);
    for (int i = 0; ok && i < m->n_layers; i++)
        ok = put_layer(t, i, m);
    if (ok) {
        hid_t g = new_group(t, "output_norm");
        ok = g >= 0 && dml_h5_put_str(g, "kind", dml_model_file_output_name(m->output)) &&
             put_f32_attr(g, "eps", DML_NORM_EPS);
        if (g >= 0)
            H5Gclose(g);
    }
    if (t >= 0)
        H5Gclose(t);
    return ok;
}

static int put_pq(hid_t file, const dml_pq *pq)
{
    hid_t g = new_group(file, "pq");
    hsize_t dims[3] = {(hsize_t)pq->m, (hsize_t)pq->ksub, (hsize_t)pq->dsub};
    int ok = g >= 0 && put_i64(g, "d", pq->d) && put_i64(g, "M", pq->m) &&
             put_i64(g, "nbits", pq->nbits) && put_i64(g, "ksub", pq->ksub) &&
             put_i64(g, "dsub", pq->dsub) && put_f32(g, "centroids", pq->centroids, 3, dims);
    if (g >= 0)
        H5Gclose(g);
    return ok;
}

static int put_training(hid_t file, const dml_model_file *mf)
{
    hid_t g = new_group(file, "training");
    int ok = g >= 0 && put_i64(g, "seed", mf->seed) && put_i64(g, "steps", mf->steps) &&
             (!mf->config_yaml || dml_h5_put_str(g, "config", mf->config_yaml)) &&
             (!mf->metrics_json || dml_h5_put_str(g, "final_metrics", mf->metrics_json));
    if (g >= 0)
        H5Gclose(g);
    return ok;
}

static int put_all(hid_t f, const dml_model_file *mf)
{
    char created[32], producer[64];
    time_t now = time(NULL);
    struct tm tm;
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    snprintf(producer, sizeof producer, "dml %s", DML_VERSION_STRING);
    const dml_net *net = &mf->net;
    return dml_h5_put_str(f, "format", DML_MODEL_FORMAT) &&
           put_i64(f, "format_version", DML_MODEL_FORMAT_VERSION) &&
           dml_h5_put_str(f, "producer", producer) && dml_h5_put_str(f, "created", created) &&
           dml_h5_put_str(f, "model_type", dml_model_file_type_name(net->type)) &&
           dml_h5_put_str(f, "metric", mf->metric) &&
           put_tower(f, "encoder", &net->encoder, &mf->norm, &mf->scale) &&
           (net->type != DML_NET_AUTOENCODER || put_tower(f, "decoder", &net->decoder, NULL, NULL)) &&
           (net->type != DML_NET_DUAL ||
            put_tower(f, "encoder_b", &net->encoder_b, &mf->norm_b, &mf->scale_b)) &&
           (!mf->pq.d || put_pq(f, &mf->pq)) && put_training(f, mf);
}

/* What the writer is given must already be a model the reader accepts. */
static dml_status check_for_write(const char *path, const dml_model_file *mf, dml_error *err)
{
    const dml_net *net = &mf->net;
    const char *why = NULL;
    if (net->encoder.n_layers < 1)
        why = "the model has no encoder";
    else if (net->encoder.n_layers > DML_MODEL_MAX_LAYERS ||
             net->decoder.n_layers > DML_MODEL_MAX_LAYERS ||
             net->encoder_b.n_layers > DML_MODEL_MAX_LAYERS)
        why = "a tower has more layers than a model file holds";
    else if (mf->norm.d && mf->norm.d != dml_mlp_dim_in(&net->encoder))
        why = "the input normalisation's width differs from the encoder's input";
    else if (net->type == DML_NET_AUTOENCODER &&
             (net->decoder.n_layers < 1 ||
              dml_mlp_dim_in(&net->decoder) != dml_mlp_dim_out(&net->encoder) ||
              dml_mlp_dim_out(&net->decoder) != dml_mlp_dim_in(&net->encoder)))
        why = "the decoder does not mirror the encoder";
    else if (net->type == DML_NET_DUAL &&
             (net->encoder_b.n_layers < 1 ||
              dml_mlp_dim_out(&net->encoder_b) != dml_mlp_dim_out(&net->encoder) ||
              (mf->norm_b.d && mf->norm_b.d != dml_mlp_dim_in(&net->encoder_b))))
        why = "the second tower does not fit the first";
    else if (mf->pq.d && (mf->pq.d != dml_mlp_dim_out(&net->encoder) || mf->pq.m < 1 ||
                          mf->pq.d % mf->pq.m || mf->pq.ksub != 1 << mf->pq.nbits))
        why = "the codebooks' width differs from the embedding width";
    else if (strcmp(mf->metric, "l2") != 0 && strcmp(mf->metric, "inner_product") != 0)
        why = "the metric is neither l2 nor inner_product";
    return why ? dml_error_set(err, DML_ERR_USAGE, path, 0, 0, "cannot write the model: %s", why)
               : DML_OK;
}

static int fill_model(hid_t f, const void *ctx)
{
    return put_all(f, ctx); /* in HDF5 1.10's checksummed format: see dml_h5_write_atomic */
}

dml_status dml_model_file_write(const char *path, const dml_model_file *mf, dml_error *err)
{
    dml_status st = check_for_write(path, mf, err);
    return st != DML_OK ? st : dml_h5_write_atomic(path, "model file", fill_model, mf, err);
}

void dml_model_file_free(dml_model_file *mf)
{
    dml_net_free(&mf->net);
    dml_input_norm_free(&mf->norm);
    dml_input_norm_free(&mf->norm_b);
    dml_pq_free(&mf->pq);
    free(mf->config_yaml);
    free(mf->metrics_json);
    memset(mf, 0, sizeof *mf);
}

dml_status dml_model_file_copy_mlp(dml_mlp *dst, const dml_mlp *src, const char *path,
                                   const char *what, dml_error *err)
{
    if (dst->n_layers != src->n_layers)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "the %s has %d layers where %d are expected", what, src->n_layers,
                             dst->n_layers);
    for (int i = 0; i < src->n_layers; i++) {
        const dml_tensor *a = &src->layers[i].w, *b = &dst->layers[i].w;
        if (a->rows != b->rows || a->cols != b->cols)
            return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                 "layer %d of the %s is %d x %d (out x in) where %d x %d is "
                                 "expected", i, what, a->rows, a->cols, b->rows, b->cols);
    }
    for (int i = 0; i < src->n_layers; i++) {
        const dml_linear *s = &src->layers[i];
        memcpy(dst->layers[i].w.data, s->w.data, (size_t)s->w.rows * s->w.cols * sizeof(float));
        memcpy(dst->layers[i].b.data, s->b.data, (size_t)s->b.cols * sizeof(float));
    }
    return DML_OK;
}

const dml_mlp *dml_model_file_tower(const dml_model_file *mf, int tower)
{
    if (tower == 0)
        return &mf->net.encoder;
    return tower == 1 && mf->net.type == DML_NET_DUAL ? &mf->net.encoder_b : NULL;
}

const dml_input_norm *dml_model_file_tower_norm(const dml_model_file *mf, int tower)
{
    if (tower == 0)
        return &mf->norm;
    return tower == 1 && mf->net.type == DML_NET_DUAL ? &mf->norm_b : NULL;
}
