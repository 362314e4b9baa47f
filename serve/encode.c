/* The inference path's bulk side: a data SPEC embedded a range of rows at a time, the
 * embeddings file dml encode writes (the layout in encode.h), and a model handed to eval/;
 * one embedding pass is api.c's. */
#include "serve/encode.h"

#include "data/h5_image.h"

#include <hdf5.h>
#include <stdlib.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the embeddings file's X, codes and y are written as the little-endian bytes in memory"
#endif

/* The streamed datasets, in dml_h5_out's order. */
enum { EMB_X, EMB_CODES, EMB_Y, EMB_COUNT };
static const char *const EMB_NAMES[EMB_COUNT] = {"X", "codes", "y"};
#define EMB_Y_BLOCK 4096 /* labels widened to int64 this many at a time */

struct dml_embeddings_out {
    dml_embeddings e;
    size_t rows;      /* put so far: every row once when all is put */
    dml_h5_out h5;
};

static int fill_embeddings(hid_t f, const void *ctx)
{
    const dml_embeddings *e = ctx;
    hsize_t xd[2] = {(hsize_t)e->n, (hsize_t)e->dim}, cd[2] = {(hsize_t)e->n, e->code_size};
    hsize_t yd[1] = {(hsize_t)e->n};
    return dml_h5_put_str(f, "format", "dml-embeddings") && dml_h5_put_str(f, "model", e->model) &&
           dml_h5_put_str(f, "input", e->input) && dml_h5_put_str(f, "tower", e->tower) &&
           dml_h5_reserve(f, "X", H5T_IEEE_F32LE, 2, xd) &&
           (!e->code_size || dml_h5_reserve(f, "codes", H5T_STD_U8LE, 2, cd)) &&
           (!e->labelled || dml_h5_reserve(f, "y", H5T_STD_I64LE, 1, yd));
}

dml_status dml_embeddings_open(const char *path, const dml_embeddings *e,
                               dml_embeddings_out **out, dml_error *err)
{
    dml_embeddings_out *o = calloc(1, sizeof *o);
    *out = NULL;
    if (!o)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
    o->e = *e;
    o->h5.n = EMB_COUNT;
    for (int i = 0; i < EMB_COUNT; i++)
        o->h5.name[i] = EMB_NAMES[i];
    dml_status st = dml_h5_out_open(&o->h5, path, "embeddings file", fill_embeddings, e, err);
    if (st != DML_OK)
        free(o);
    else
        *out = o;
    return st;
}

void dml_embeddings_put(dml_embeddings_out *o, size_t lo, const float *x, const uint8_t *codes,
                        const int32_t *y, size_t count)
{
    const dml_embeddings *e = &o->e;
    DML_ASSERT(lo + count <= e->n);
    size_t row_x = (size_t)e->dim * sizeof(float);
    dml_h5_out_write(&o->h5, EMB_X, lo * row_x, x, count * row_x);
    if (e->code_size)
        dml_h5_out_write(&o->h5, EMB_CODES, lo * e->code_size, codes, count * e->code_size);
    for (size_t i = 0; e->labelled && i < count; i += EMB_Y_BLOCK) {
        int64_t wide[EMB_Y_BLOCK];
        size_t k = count - i < EMB_Y_BLOCK ? count - i : EMB_Y_BLOCK;
        for (size_t j = 0; j < k; j++)
            wide[j] = y[i + j];
        dml_h5_out_write(&o->h5, EMB_Y, (lo + i) * sizeof *wide, wide, k * sizeof *wide);
    }
    o->rows += count;
}

dml_status dml_embeddings_close(dml_embeddings_out *o, int ok, dml_error *err)
{
    DML_ASSERT(!ok || o->rows == o->e.n);
    dml_status st = dml_h5_out_finish(&o->h5, ok, err);
    free(o);
    return st;
}

dml_status dml_rows_encoder_chunk(size_t *chunk, dml_error *err)
{
    const char *v = getenv("DML_ENCODE_CHUNK_ROWS");
    char *end = NULL;
    long long k = v ? strtoll(v, &end, 10) : DML_ENCODE_CHUNK;
    if (v && (end == v || *end || k < 1 || k % DML_KMEANS_BLOCK))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "DML_ENCODE_CHUNK_ROWS=%s: expected a positive multiple of %d", v,
                             DML_KMEANS_BLOCK);
    *chunk = (size_t)k;
    return DML_OK;
}

/* A paired input (never streamed: read whole) gives tower 1 its second view. */
static const dml_dataset *second_view(const dml_rows_encoder *e)
{
    const dml_dataset *whole = dml_rows_whole(e->rows);
    return e->tower == 1 && whole && whole->x_b ? whole : NULL;
}

dml_status dml_rows_encoder_init(dml_rows_encoder *e, const dml_model_file *mf, int tower,
                                 dml_rows *rows, int pq, size_t chunk, dml_error *err)
{
    memset(e, 0, sizeof *e);
    const dml_mlp *m = dml_model_file_tower(mf, tower);
    if (!m)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "the model has no second tower: it is not a dual encoder");
    *e = (dml_rows_encoder){mf, tower, rows, chunk, dml_mlp_dim_in(m), dml_mlp_dim_out(m),
                            pq ? dml_pq_code_size(&mf->pq) : 0, NULL, NULL, NULL};
    const dml_dataset *b = second_view(e);
    int d = b ? b->d_b : rows->d;
    if (d != e->d_in)
        return dml_error_set(err, DML_ERR_DATA, rows->source, 0, 0,
                             "rows have %d features, but the model's %s takes %d", d,
                             tower ? "encoder_b" : "encoder", e->d_in);
    size_t n = chunk < (size_t)rows->n ? chunk : (size_t)rows->n;
    e->in = malloc(n * (size_t)e->d_in * sizeof(float) + 1);
    e->x = malloc(n * (size_t)e->dim * sizeof(float) + 1);
    e->codes = pq ? malloc(n * e->code_size + 1) : NULL;
    if (!e->in || !e->x || (pq && !e->codes))
        return dml_error_set(err, DML_ERR_NOMEM, rows->source, 0, 0,
                             "out of memory for %zu rows at a time", n);
    return DML_OK;
}

dml_status dml_rows_encoder_run(dml_rows_encoder *e, size_t lo, size_t count, dml_error *err)
{
    DML_ASSERT(count <= e->chunk);
    const dml_dataset *b = second_view(e);
    dml_status st = DML_OK;
    if (b)
        memcpy(e->in, b->x_b + lo * (size_t)b->d_b, count * (size_t)b->d_b * sizeof(float));
    else
        st = dml_rows_read(e->rows, (int)lo, (int)count, e->in, err);
    if (st == DML_OK && (dml_model_file_encode(e->mf, e->tower, e->in, count, e->x) != DML_OK ||
                         (e->codes && dml_pq_encode(&e->mf->pq, e->x, count, e->codes) != DML_OK)))
        st = dml_error_set(err, DML_ERR_NOMEM, e->rows->source, 0, 0,
                           "out of memory encoding %zu rows", count);
    return st;
}

void dml_rows_encoder_free(dml_rows_encoder *e)
{
    free(e->in);
    free(e->x);
    free(e->codes);
    memset(e, 0, sizeof *e);
}

/* eval/ (below serve/) splits its rows the same way, by its own constant. */
_Static_assert(DML_EVAL_SLICE_ROWS == DML_ENCODE_BLOCK, "eval's slices are encoder blocks");

void dml_encode_shard(size_t n, int rank, int size, size_t *lo, size_t *hi)
{
    size_t blocks = (n + DML_ENCODE_BLOCK - 1) / DML_ENCODE_BLOCK;
    size_t a = DML_ENCODE_BLOCK * (blocks * (size_t)rank / (size_t)size);
    size_t b = DML_ENCODE_BLOCK * (blocks * (size_t)(rank + 1) / (size_t)size);
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

static dml_status embed(const void *ctx, int tower, const float *x, size_t n, float *z)
{
    return dml_model_file_encode(ctx, tower, x, n, z);
}

void dml_model_file_eval_model(const dml_model_file *mf, const char *path, dml_eval_model *m)
{
    const dml_mlp *b = dml_model_file_tower(mf, 1);
    *m = (dml_eval_model){.name = path, .dim = dml_mlp_dim_out(&mf->net.encoder),
                          .d_in = dml_mlp_dim_in(&mf->net.encoder),
                          .d_in_b = b ? dml_mlp_dim_in(b) : 0,
                          .distance = strcmp(mf->metric, "inner_product") ? DML_EVAL_L2SQ
                                                                          : DML_EVAL_IP,
                          .pq = mf->pq.d ? &mf->pq : NULL, .seed = (uint64_t)mf->seed,
                          .scale = &mf->scale, .embed = embed, .ctx = mf};
}
