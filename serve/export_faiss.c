/* FAISS 1.7.3 index files, byte for byte (shared/design/formats.md §1): the raw native-order
 * fwrite of each C++ field, no padding, no magic beyond the fourcc. */
#include <stdio.h>
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

typedef struct flat_ctx {
    const float *x; /* [n, d] */
    size_t n;
    int d;
    dml_faiss_metric metric;
} flat_ctx;

/* IndexFlat: fourcc, header, then the vectors as one vector<float> of n * d values. */
static void flat_body(dml_out *o, const void *ctx)
{
    const flat_ctx *c = ctx;
    fourcc(o, c->metric == DML_FAISS_IP ? "IxFI" : "IxF2");
    header(o, c->d, c->n, c->metric);
    PUT(o, uint64_t, c->n * (size_t)c->d);
    dml_out_put(o, c->x, c->n * (size_t)c->d * sizeof(float));
}

dml_status dml_export_faiss_flat(const char *path, const float *x, size_t n, int d,
                                 dml_faiss_metric metric, dml_error *err)
{
    flat_ctx c = {x, n, d, metric};
    return dml_export_atomic(path, "index", flat_body, &c, err);
}

typedef struct pq_ctx {
    const dml_pq *pq;
    const uint8_t *codes; /* [n, code_size] */
    size_t n;
    dml_faiss_metric metric;
} pq_ctx;

/* IndexPQ: fourcc, header, the quantizer, the codes as vector<uint8>, then search_type (ST_PQ),
 * encode_signs and polysemous_ht (its constructor default, M * nbits + 1). */
static void pq_body(dml_out *o, const void *ctx)
{
    const pq_ctx *c = ctx;
    size_t cs = dml_pq_code_size(c->pq);
    fourcc(o, "IxPq");
    header(o, c->pq->d, c->n, c->metric);
    pq_block(o, c->pq);
    PUT(o, uint64_t, c->n * cs);
    dml_out_put(o, c->codes, c->n * cs);
    PUT(o, int32_t, 0);
    PUT(o, uint8_t, 0);
    PUT(o, int32_t, c->pq->m * c->pq->nbits + 1);
}

dml_status dml_export_faiss_pq(const char *path, const dml_pq *pq, const uint8_t *codes, size_t n,
                               dml_faiss_metric metric, dml_error *err)
{
    pq_ctx c = {pq, codes, n, metric};
    return dml_export_atomic(path, "index", pq_body, &c, err);
}
