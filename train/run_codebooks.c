/* Codebooks of a run: the product quantizer over the encoder's training-set embeddings. */
#include <stdlib.h>
#include <string.h>

#include "train/run_output.h"

int32_t *dml_run_all_train_rows(const dml_run *r, int *n)
{
    *n = r->split.n_train + r->split.n_unlabelled;
    int32_t *rows = malloc((size_t)(*n ? *n : 1) * sizeof *rows);
    if (rows) {
        memcpy(rows, r->split.train, (size_t)r->split.n_train * sizeof *rows);
        memcpy(rows + r->split.n_train, r->split.unlabelled,
               (size_t)r->split.n_unlabelled * sizeof *rows);
    }
    return rows;
}

/* Codebooks need no labels: every training row, labelled or set aside, is used. */
dml_status dml_run_fit_codebooks(dml_run *r, int fresh, dml_error *err)
{
    int n, lo = 0, hi = 0;
    int32_t *rows = dml_run_codebook_rows(r, &n);
    if (r->comm) /* each rank embeds its shard of the rows only */
        dml_run_shard_rows(n, r->comm->rank, r->comm->size, &lo, &hi);
    else
        hi = n;
    float *z = rows ? dml_run_embed_rows(r, &r->train, rows + lo, hi - lo, 0) : NULL;
    dml_status st = DML_OK;
    if (!z)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the embeddings");
    else if (r->streamed && dml_row_cache_status(&r->cache, err) != DML_OK)
        st = r->cache.status; /* the rows were read from the file */
    if (r->comm) { /* a rank that could not embed its shard stops them all before k-means */
        float failed = st != DML_OK;
        r->comm->allreduce_sum(r->comm->ctx, &failed, 1);
        if (failed > 0.0f && st == DML_OK)
            st = dml_error_set(err, DML_ERR_IO, NULL, 0, 0,
                               "another rank could not embed its rows for the codebooks");
    }
    if (st == DML_OK && r->comm)
        st = dml_run_pq_fit_ranks(r, z, n, lo, hi - lo, fresh, err);
    else if (st == DML_OK && fresh)
        st = dml_pq_train(&r->pq, z, n, r->cfg->pq.iters, DML_KMEANS_PLUSPLUS, &r->rng, err);
    else if (st == DML_OK)
        st = dml_pq_refine(&r->pq, z, n, r->cfg->pq.iters, err);
    free(rows);
    free(z);
    return st;
}
