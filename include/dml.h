/*
 * dml.h: the public C API of dml, a deep metric learning framework.
 *
 * This header is inference-only: it loads a trained encoder (model.h5), embeds
 * vectors, and serves its product-quantization codebooks. Training lives in the
 * dml CLI and in the library's internal module headers, never here.
 */
#ifndef DML_H
#define DML_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DML_VERSION_MAJOR 0
#define DML_VERSION_MINOR 1
#define DML_VERSION_PATCH 0

#if defined(__GNUC__)
#define DML_API __attribute__((visibility("default")))
#else
#define DML_API
#endif

/* Every fallible call returns one of these; DML_OK is 0. */
typedef enum dml_status {
    DML_OK = 0,
    DML_ERR_USAGE,    /* a bad argument or command line */
    DML_ERR_CONFIG,   /* a config file that does not validate */
    DML_ERR_DATA,     /* an input file that is missing, malformed or inconsistent */
    DML_ERR_IO,       /* reading or writing failed for a reason outside the input */
    DML_ERR_NOMEM,    /* an allocation failed, or an arena is too small */
    DML_ERR_DIVERGED, /* training produced NaN or Inf */
    DML_ERR_INTERNAL  /* a broken invariant: a bug in dml */
} dml_status;

/* A short constant name for a status ("DML_ERR_DATA"). */
DML_API const char *dml_status_name(dml_status s);

/* ---- product quantizers: codes as FAISS's IndexPQ packs them ---- */
typedef struct dml_pq dml_pq;

/* Bytes per code: (M * nbits + 7) / 8. */
DML_API size_t dml_pq_code_size(const dml_pq *pq);
/* Encode n vectors x[n, d] into codes[n, code_size]: nearest centroid per sub-vector. */
DML_API void dml_pq_encode(const dml_pq *pq, const float *x, size_t n, uint8_t *codes);
/* Decode n codes into x[n, d]. */
DML_API void dml_pq_decode(const dml_pq *pq, const uint8_t *codes, size_t n, float *x);
/* ADC search: for each of n_q float queries, the k codes (of n_db) nearest in squared L2,
 * nearest first. distances[n_q, k] and labels[n_q, k] (row numbers; -1 and +inf past n_db). */
DML_API dml_status dml_pq_search(const dml_pq *pq, const uint8_t *codes, size_t n_db,
                                 const float *queries, size_t n_q, int k, float *distances,
                                 int64_t *labels);

#ifdef __cplusplus
}
#endif
#endif /* DML_H */
