/* Codebooks of a run: the product quantizer over the encoder's training-set embeddings. */
#include <stdlib.h>

#include "train/run_output.h"

/* Embeddings of rows[n] of the training set (the anchor tower). */
static float *embed_rows(dml_run *r, const int32_t *rows, int n)
{
    int d = r->train.d, dim = dml_mlp_dim_out(&r->net.encoder);
    float *x = malloc((size_t)n * r->d_in * sizeof(float));
    float *z = malloc((size_t)n * dim * sizeof(float));
    if (!x || !z) {
        free(x);
        free(z);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < r->d_in; j++)
            x[(size_t)i * r->d_in + j] = r->train.x[(size_t)rows[i] * d + j];
    dml_run_embed(&r->graph, &r->net.encoder, x, n, z);
    free(x);
    return z;
}

dml_status dml_run_fit_codebooks(dml_run *r, int fresh, dml_error *err)
{
    float *z = embed_rows(r, r->split.train, r->split.n_train);
    if (!z)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the embeddings");
    dml_status st = fresh ? dml_pq_train(&r->pq, z, r->split.n_train, r->cfg->pq.iters,
                                         DML_KMEANS_PLUSPLUS, &r->rng, err)
                          : dml_pq_refine(&r->pq, z, r->split.n_train, r->cfg->pq.iters, err);
    free(z);
    return st;
}
