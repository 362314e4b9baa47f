/* serve/encode.c: a data SPEC embedded (and PQ-encoded) a range of rows at a time, and the
 * embeddings file of dml encode, so that a database larger than memory goes through in bounded
 * memory (dml encode, dml export --faiss). */
#ifndef DML_SERVE_ENCODE_H
#define DML_SERVE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "eval/eval.h"
#include "serve/model_file.h"

/* The embeddings file of dml encode (readable as a data SPEC: X and y):
 *   /       attrs format="dml-embeddings", model (its path), input (the data SPEC), tower
 *   X       float32 [n, dim]         the embeddings
 *   codes   uint8 [n, code_size]     PQ codes packed as FAISS's IndexPQ (only when requested)
 *   y       int64 [n]                the input's labels (only when it has them)
 * Each dataset is contiguous, after the metadata; the file is written a range of rows at a time
 * (data/h5_image.h's streamed files), so a database need not fit in memory. */
typedef struct dml_embeddings {
    const char *model, *input, *tower;
    size_t n;
    int dim;
    size_t code_size; /* 0: no codes */
    int labelled;     /* 1: y */
} dml_embeddings;
typedef struct dml_embeddings_out dml_embeddings_out;

/* Writes the file's metadata for e to path's temporary name; DML_ERR_IO naming path when it
 * cannot. Then put every row and close. */
dml_status dml_embeddings_open(const char *path, const dml_embeddings *e,
                               dml_embeddings_out **out, dml_error *err);
/* Rows [lo, lo + count), in any order, each once: x[count, dim], codes[count, code_size] (NULL
 * without codes) and y[count] (NULL when unlabelled). */
void dml_embeddings_put(dml_embeddings_out *o, size_t lo, const float *x, const uint8_t *codes,
                        const int32_t *y, size_t count);
/* ok (all n rows put): commits the file (fsync, rename over path), or removes it and says why
 * (DML_ERR_IO naming path) when a write failed. ok 0 (the caller's own failure, in err): removes
 * it, leaving err alone. An existing path is left as it was until the commit. Frees o. */
dml_status dml_embeddings_close(dml_embeddings_out *o, int ok, dml_error *err);

/* A data SPEC embedded (and PQ-encoded) a range of rows at a time, so that a database larger
 * than memory goes through in bounded memory: dml encode and dml export --faiss read, embed and
 * write each range in turn. Each range goes through the same DML_ENCODE_BLOCK forward passes and
 * DML_KMEANS_BLOCK PQ blocks as one call over all the rows would when it starts at a multiple of
 * DML_KMEANS_BLOCK, so the bytes are the same. */
#define DML_ENCODE_CHUNK 65536 /* rows a range by default: 32 MB of 128-dim floats */
typedef struct dml_rows_encoder {
    const dml_model_file *mf;
    int tower;
    dml_rows *rows;
    size_t chunk;     /* rows a range at most */
    int d_in, dim;
    size_t code_size; /* 0: no codes */
    float *in;        /* [chunk, d_in] the rows read */
    float *x;         /* [chunk, dim] their embeddings */
    uint8_t *codes;   /* [chunk, code_size] their codes, or NULL */
} dml_rows_encoder;

/* The rows a range, DML_ENCODE_CHUNK_ROWS from the environment when set (tests lower it) or
 * DML_ENCODE_CHUNK; the variable must be a positive multiple of DML_KMEANS_BLOCK
 * (DML_ERR_USAGE otherwise). */
dml_status dml_rows_encoder_chunk(size_t *chunk, dml_error *err);
/* For rows through a tower (1 reads a paired input's second view), with codes when pq. Rows of
 * another width than the tower's input are DML_ERR_DATA naming the input. */
dml_status dml_rows_encoder_init(dml_rows_encoder *e, const dml_model_file *mf, int tower,
                                 dml_rows *rows, int pq, size_t chunk, dml_error *err);
/* e->x (and e->codes) = rows [lo, lo + count), count <= e->chunk; read errors name the file. */
dml_status dml_rows_encoder_run(dml_rows_encoder *e, size_t lo, size_t count, dml_error *err);
void dml_rows_encoder_free(dml_rows_encoder *e);

/* The rows [lo, hi) of n that process rank of size encodes (dml encode under mpirun): whole
 * DML_ENCODE_BLOCKs, split as evenly as they go, so every forward pass is one the single
 * process makes too and the bytes are the same. */
void dml_encode_shard(size_t n, int rank, int size, size_t *lo, size_t *hi);

/* mf as eval/ sees it (dml_eval_model_run): its widths, metric, codebooks, seed, recorded input
 * scale, and dml_model_file_encode as the embedding; path names it. m borrows mf. */
void dml_model_file_eval_model(const dml_model_file *mf, const char *path, dml_eval_model *m);

#endif
