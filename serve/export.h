/* Exports for search libraries and runtimes: FAISS index files (shared/design/formats.md §1,
 * FAISS 1.7.3's byte layout) and the encoder as ONNX (§3: opset 13, IR version 7). Every file is
 * written atomically: a failure leaves an existing file as it was. */
#ifndef DML_SERVE_EXPORT_H
#define DML_SERVE_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "nn/nn.h"
#include "serve/model_file.h"

/* Writing a file atomically (temporary name, fsync, rename) from a body that streams its bytes
 * through dml_out_put; the first failed write fails the whole file (DML_ERR_IO naming path and
 * what: "index", "ONNX model"). Shared by the writers (serve/export_faiss.c). */
typedef struct dml_out dml_out;
typedef void (*dml_out_fn)(dml_out *o, const void *ctx);
void dml_out_put(dml_out *o, const void *p, size_t n);
dml_status dml_export_atomic(const char *path, const char *what, dml_out_fn body,
                             const void *ctx, dml_error *err);

/* FAISS's MetricType values, as stored in the index header. */
typedef enum dml_faiss_metric { DML_FAISS_IP = 0, DML_FAISS_L2 = 1 } dml_faiss_metric;

/* "l2" -> DML_FAISS_L2, "inner_product" or "ip" -> DML_FAISS_IP; 0 when the name is unknown. */
int dml_faiss_metric_parse(const char *name, dml_faiss_metric *metric);

/* A FAISS index written a range of rows at a time, for databases larger than memory: open
 * writes the header for n rows (to the temporary name: errors as dml_export_atomic's),
 * dml_faiss_put appends the next rows' vectors (IndexFlat: float[count, d]) or codes (IndexPQ:
 * uint8[count, code_size]), and close writes what follows them and commits the file once every
 * row was put (ok 1), or removes it (ok 0, the caller's failure: err is left alone). A failed
 * write is DML_ERR_IO naming path at close. close frees w. */
typedef struct dml_faiss_out dml_faiss_out;
dml_status dml_faiss_flat_open(const char *path, int d, size_t n, dml_faiss_metric metric,
                               dml_faiss_out **w, dml_error *err);
dml_status dml_faiss_pq_open(const char *path, const dml_pq *pq, size_t n,
                             dml_faiss_metric metric, dml_faiss_out **w, dml_error *err);
void dml_faiss_put(dml_faiss_out *w, const void *rows, size_t count);
dml_status dml_faiss_close(dml_faiss_out *w, int ok, dml_error *err);

/* IndexFlatL2 ("IxF2") or IndexFlatIP ("IxFI") holding x[n, d]. */
dml_status dml_export_faiss_flat(const char *path, const float *x, size_t n, int d,
                                 dml_faiss_metric metric, dml_error *err);

/* IndexPQ ("IxPq", search type ST_PQ) with pq's codebooks and n codes[n, code_size] packed as
 * dml_pq_encode packs them. */
dml_status dml_export_faiss_pq(const char *path, const dml_pq *pq, const uint8_t *codes, size_t n,
                               dml_faiss_metric metric, dml_error *err);

/* One tower (0: encoder, 1: encoder_b of a dual encoder) as an ONNX model: input x [N, d_in],
 * output y [N, d_out], the same function as dml_model_file_encode. Input standardisation is
 * Sub/Div, each layer Gemm(transB=1) plus its activation (gelu as 0.5 x (1 + Erf(x / sqrt 2))),
 * l2 output as ReduceL2/Max(eps)/Div. metadata_props carry the metric and PQ parameters. */
dml_status dml_export_onnx(const char *path, const dml_model_file *mf, int tower, dml_error *err);

#endif
