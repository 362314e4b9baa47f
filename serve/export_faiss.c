/* FAISS 1.7.3 index files, byte for byte (shared/design/formats.md §1): the raw native-order
 * fwrite of each C++ field, no padding, no magic beyond the fourcc. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/export.h"

_Static_assert(sizeof(float) == 4, "FAISS stores float32");
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "FAISS files are native byte order; dml writes the little-endian layout FAISS uses on x86-64/ARM64"
#endif

/* The FAISS header's two unused fields, written as FAISS writes them. */
#define FAISS_DUMMY ((int64_t)1 << 20)

struct dml_out {
    FILE *f;
};

void dml_out_put(dml_out *o, const void *p, size_t n)
{
    if (n && !ferror(o->f)) /* after a failed write the file is lost: dml_export_atomic says so */
        fwrite(p, 1, n, o->f);
}

#define PUT(o, T, v) do { T v_ = (T)(v); dml_out_put((o), &v_, sizeof v_); } while (0)

static void fourcc(dml_out *o, const char s[4])
{
    PUT(o, uint32_t, (uint32_t)(uint8_t)s[0] | (uint32_t)(uint8_t)s[1] << 8 |
                     (uint32_t)(uint8_t)s[2] << 16 | (uint32_t)(uint8_t)s[3] << 24);
}

/* write_index_header: d, ntotal, two dummies, is_trained, metric (no metric_arg for IP/L2). */
static void header(dml_out *o, int d, size_t n, dml_faiss_metric metric)
{
    PUT(o, int32_t, d);
    PUT(o, int64_t, n);
    PUT(o, int64_t, FAISS_DUMMY);
    PUT(o, int64_t, FAISS_DUMMY);
    PUT(o, uint8_t, 1);
    PUT(o, int32_t, metric);
}

/* write_ProductQuantizer: d, M, nbits, then the centroids as a vector<float>. */
static void pq_block(dml_out *o, const dml_pq *pq)
{
    size_t n = (size_t)pq->d * pq->ksub;
    PUT(o, uint64_t, pq->d);
    PUT(o, uint64_t, pq->m);
    PUT(o, uint64_t, pq->nbits);
    PUT(o, uint64_t, n);
    dml_out_put(o, pq->centroids, n * sizeof(float));
}

typedef struct body_call {
    dml_out_fn body;
    const void *ctx;
} body_call;

static void run_body(FILE *f, const void *ctx)
{
    const body_call *c = ctx;
    dml_out o = {f};
    c->body(&o, c->ctx);
}

dml_status dml_export_atomic(const char *path, const char *what, dml_out_fn body,
                             const void *ctx, dml_error *err)
{
    body_call c = {body, ctx};
    return dml_file_write_stdio(path, what, run_body, &c, err);
}

int dml_faiss_metric_parse(const char *name, dml_faiss_metric *metric)
{
    if (!strcmp(name, "l2"))
        *metric = DML_FAISS_L2;
    else if (!strcmp(name, "ip") || !strcmp(name, "inner_product"))
        *metric = DML_FAISS_IP;
    else
        return 0;
    return 1;
}

struct dml_faiss_out {
    dml_file_out file;
    dml_out out;
    size_t row_bytes, n, rows; /* bytes a row, rows in the header, rows put so far */
    int pq_trailer;            /* IndexPQ: the fields after the codes; -1 for IndexFlat */
};

static dml_status faiss_open(const char *path, size_t row_bytes, size_t n, dml_faiss_out **out,
                             dml_error *err)
{
    dml_faiss_out *w = calloc(1, sizeof *w);
    *out = NULL;
    if (!w)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
    dml_status st = dml_file_out_open(&w->file, path, "index", err);
    w->out.f = st == DML_OK ? dml_file_out_stream(&w->file) : NULL;
    if (st != DML_OK) {
        free(w);
        return st;
    }
    w->row_bytes = row_bytes;
    w->n = n;
    *out = w;
    return DML_OK;
}

/* IndexFlat: fourcc, header, then the vectors as one vector<float> of n * d values. */
dml_status dml_faiss_flat_open(const char *path, int d, size_t n, dml_faiss_metric metric,
                               dml_faiss_out **out, dml_error *err)
{
    dml_status st = faiss_open(path, (size_t)d * sizeof(float), n, out, err);
    if (st != DML_OK)
        return st;
    dml_out *o = &(*out)->out;
    (*out)->pq_trailer = -1;
    fourcc(o, metric == DML_FAISS_IP ? "IxFI" : "IxF2");
    header(o, d, n, metric);
    PUT(o, uint64_t, n * (size_t)d);
    return DML_OK;
}

/* IndexPQ: fourcc, header, the quantizer, the codes as vector<uint8>, then search_type (ST_PQ),
 * encode_signs and polysemous_ht (its constructor default, M * nbits + 1). */
dml_status dml_faiss_pq_open(const char *path, const dml_pq *pq, size_t n,
                             dml_faiss_metric metric, dml_faiss_out **out, dml_error *err)
{
    size_t cs = dml_pq_code_size(pq);
    dml_status st = faiss_open(path, cs, n, out, err);
    if (st != DML_OK)
        return st;
    dml_out *o = &(*out)->out;
    (*out)->pq_trailer = pq->m * pq->nbits + 1;
    fourcc(o, "IxPq");
    header(o, pq->d, n, metric);
    pq_block(o, pq);
    PUT(o, uint64_t, n * cs);
    return DML_OK;
}

void dml_faiss_put(dml_faiss_out *w, const void *rows, size_t count)
{
    DML_ASSERT(w->rows + count <= w->n);
    dml_out_put(&w->out, rows, count * w->row_bytes);
    w->rows += count;
}

dml_status dml_faiss_close(dml_faiss_out *w, int ok, dml_error *err)
{
    DML_ASSERT(!ok || w->rows == w->n);
    if (ok && w->pq_trailer >= 0) {
        PUT(&w->out, int32_t, 0);
        PUT(&w->out, uint8_t, 0);
        PUT(&w->out, int32_t, w->pq_trailer);
    }
    dml_status st = dml_file_out_finish(&w->file, ok, err);
    free(w);
    return st;
}

dml_status dml_export_faiss_flat(const char *path, const float *x, size_t n, int d,
                                 dml_faiss_metric metric, dml_error *err)
{
    dml_faiss_out *w;
    dml_status st = dml_faiss_flat_open(path, d, n, metric, &w, err);
    if (st != DML_OK)
        return st;
    dml_faiss_put(w, x, n);
    return dml_faiss_close(w, 1, err);
}

dml_status dml_export_faiss_pq(const char *path, const dml_pq *pq, const uint8_t *codes, size_t n,
                               dml_faiss_metric metric, dml_error *err)
{
    dml_faiss_out *w;
    dml_status st = dml_faiss_pq_open(path, pq, n, metric, &w, err);
    if (st != DML_OK)
        return st;
    dml_faiss_put(w, codes, n);
    return dml_faiss_close(w, 1, err);
}
