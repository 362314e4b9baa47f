/* A model.h5 for the model-file, export and API tests, built directly with dml_net_init and a
 * seeded generator (no trainer): random weights and biases, a standardisation, random codebooks
 * and training metadata. Include it once per test file. */
#ifndef DML_TESTS_MODEL_FIXTURE_H
#define DML_TESTS_MODEL_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "serve/serve.h"

typedef struct fx_spec {
    dml_net_type type;
    int dim_in, dim_in_b;    /* dim_in_b: dual only */
    int n_hidden, hidden[4];
    int dim;
    dml_activation act;
    dml_output_norm output;
    int standardize;         /* 1: a random mean/std on each input tower */
    int pq_m, pq_nbits;      /* pq_m == 0: no codebooks */
    const char *metric;      /* NULL: "l2" */
    uint64_t seed;
} fx_spec;

static void fx_norm(dml_input_norm *norm, int d, dml_rng *rng)
{
    norm->d = d;
    norm->mean = malloc((size_t)d * sizeof(float));
    norm->std = malloc((size_t)d * sizeof(float));
    for (int j = 0; j < d; j++) {
        norm->mean[j] = dml_rng_normal(rng);
        norm->std[j] = 0.5f + 1.5f * dml_rng_uniform(rng);
    }
}

/* Biases are zero after init: make them random so that tests see them. */
static void fx_biases(dml_mlp *m, dml_rng *rng)
{
    for (int i = 0; i < m->n_layers; i++)
        for (int j = 0; j < m->layers[i].b.cols; j++)
            m->layers[i].b.data[j] = 0.1f * dml_rng_normal(rng);
}

/* *mf owns everything: release it with dml_model_file_free. */
static void fx_model(dml_model_file *mf, const fx_spec *s)
{
    memset(mf, 0, sizeof *mf);
    dml_rng rng;
    dml_rng_seed(&rng, s->seed);
    dml_net_spec ns = {s->type, s->dim_in, s->dim_in_b, s->n_hidden, s->hidden,
                       s->dim,  s->act,    s->output,   DML_INIT_HE};
    dml_error err = {0};
    assert_int_equal(dml_net_init(&mf->net, &ns, &rng, &err), DML_OK);
    fx_biases(&mf->net.encoder, &rng);
    if (s->type == DML_NET_AUTOENCODER)
        fx_biases(&mf->net.decoder, &rng);
    if (s->type == DML_NET_DUAL)
        fx_biases(&mf->net.encoder_b, &rng);
    if (s->standardize) {
        fx_norm(&mf->norm, s->dim_in, &rng);
        if (s->type == DML_NET_DUAL)
            fx_norm(&mf->norm_b, s->dim_in_b, &rng);
    }
    if (s->pq_m) {
        assert_int_equal(dml_pq_init(&mf->pq, s->dim, s->pq_m, s->pq_nbits, &err), DML_OK);
        for (size_t i = 0; i < (size_t)s->dim * mf->pq.ksub; i++)
            mf->pq.centroids[i] = 0.4f * dml_rng_normal(&rng);
    }
    snprintf(mf->metric, sizeof mf->metric, "%s", s->metric ? s->metric : "l2");
    mf->seed = (int64_t)s->seed;
    mf->steps = 1234;
    mf->config_yaml = strdup("name: fixture\nmodel:\n  dim: 8\n  hidden: [16]\n");
    mf->metrics_json = strdup("{\"map_at_r\": 0.5, \"precision_at_1\": 0.75}");
}

/* A fresh temporary folder dir and path = dir/name (both char arrays). */
#define FX_TMP(dir, path, name) \
    (tu_mkdtemp(dir, sizeof dir), snprintf(path, sizeof path, "%s/%s", dir, name))

static inline void fx_rm(const char *dir)
{
    assert_int_equal(tu_system("rm -rf '%s'", dir), 0);
}

/* A whole file in a new buffer (*n bytes, plus a NUL after them). */
static inline char *fx_slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*n + 1);
    assert_int_equal(fread(buf, 1, *n, f), *n);
    buf[*n] = '\0';
    fclose(f);
    return buf;
}

/* Writes bytes to dir/name. */
static inline void fx_dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, bytes, f), bytes);
    fclose(f);
}

/* The models the tests share: every type, activation and output norm, with and without
 * standardisation and codebooks (4-bit and 8-bit; 2-bit with a zero-padded last byte). */
static const fx_spec FX_MLP = {DML_NET_MLP, 12, 0, 2, {16, 10}, 8, DML_ACT_RELU,
                               DML_OUTPUT_L2, 1, 4, 4, "inner_product", 11};
static const fx_spec FX_AUTOENC = {DML_NET_AUTOENCODER, 10, 0, 1, {7}, 4, DML_ACT_TANH,
                                   DML_OUTPUT_NONE, 0, 0, 0, NULL, 12};
static const fx_spec FX_DUAL = {DML_NET_DUAL, 9, 6, 1, {12}, 6, DML_ACT_GELU,
                                DML_OUTPUT_TANH, 1, 2, 8, "l2", 13};
static const fx_spec FX_LEAKY = {DML_NET_MLP, 5, 0, 1, {4}, 3, DML_ACT_LEAKY_RELU,
                                 DML_OUTPUT_NONE, 0, 3, 2, NULL, 14};
static const fx_spec FX_SIGMOID = {DML_NET_MLP, 5, 0, 1, {6}, 3, DML_ACT_SIGMOID,
                                   DML_OUTPUT_L2, 0, 0, 0, NULL, 15};
static const fx_spec FX_LINEAR = {DML_NET_MLP, 5, 0, 0, {0}, 4, DML_ACT_NONE,
                                  DML_OUTPUT_L2, 1, 2, 4, NULL, 16};

/* n rows of width d, N(0, 1), from seed: a caller-owned buffer. */
static float *fx_rows(size_t n, int d, uint64_t seed)
{
    float *x = malloc(n * (size_t)d * sizeof(float));
    tu_fill_normal(x, n * (size_t)d, 1.0f, seed);
    return x;
}

#endif
