/* An in-memory dataset: float rows, optional integer labels, optional second view. */
#ifndef DML_DATA_DATASET_H
#define DML_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "data/rng.h"
#include "data/error.h"

typedef struct dml_dataset {
    int n, d;
    float *x;       /* [n, d] */
    int32_t *y;     /* [n] labels >= 0, or NULL when unlabelled */
    int n_classes;  /* max label + 1; 0 when unlabelled */
    int d_b;        /* second view (pairs from a file: anchor in x, positive in x_b), else 0 */
    float *x_b;     /* [n, d_b] or NULL */
    int from_bytes; /* the values are bytes 0..255 (normalize: unit divides by 255) */
    char source[512]; /* the spec it was read from */
} dml_dataset;

/* Read a data SPEC (architecture.md): file.h5[:/dataset], IDX (*-idx3-ubyte[.gz] with its
 * *-labels-idx1-ubyte[.gz] beside it), fashion-mnist:train|test, .npy, .fvecs/.ivecs/.bvecs, .csv.
 * Validates shapes, label range and finiteness; errors name the file (DML_ERR_DATA). */
dml_status dml_dataset_open(const char *spec, dml_dataset *ds, dml_error *err);
void dml_dataset_free(dml_dataset *ds);
/* Uninitialised storage for n rows of width d (and labels when labelled). */
dml_status dml_dataset_alloc(dml_dataset *ds, int n, int d, int labelled, dml_error *err);
/* A copy of the given rows of src (labels and second view included). */
dml_status dml_dataset_subset(const dml_dataset *src, const int32_t *rows, int n, dml_dataset *out,
                              dml_error *err);

/* Input normalisation stored with a model: x' = (x - mean) / std per feature.
 * unit scaling of bytes is mean 0, std 255; none is d = 0. */
typedef struct dml_input_norm {
    int d;
    float *mean, *std; /* [d] each */
} dml_input_norm;

/* ---- input normalisation (fit on the training rows only) ---- */
typedef enum dml_norm_kind { DML_NORM_NONE, DML_NORM_UNIT, DML_NORM_STANDARDIZE } dml_norm_kind;

/* none: d = 0 (identity). unit: bytes divided by 255 (identity for float data). standardize:
 * per-feature mean and std of ds (std floored at 1e-6 so constant features stay finite). */
dml_status dml_input_norm_fit(dml_norm_kind kind, const dml_dataset *ds, dml_input_norm *norm,
                              dml_error *err);
/* x[n, norm->d] in place. */
void dml_input_norm_apply(const dml_input_norm *norm, float *x, size_t n);
void dml_input_norm_free(dml_input_norm *norm);

/* ---- splits: row index lists, deterministic for the rng's state ---- */
/* Holds out round(frac * n) rows for validation, stratified by label when labelled (each class
 * contributes its share). Both lists are sorted; the caller frees them. */
dml_status dml_split_validation(const dml_dataset *ds, float frac, dml_rng *rng, int32_t **train,
                                int *n_train, int32_t **val, int *n_val, dml_error *err);
/* From rows[n]: k labelled rows per class (all of a class with fewer), and the rest (which a
 * fine-tuning recipe uses unlabelled). Both lists sorted; the caller frees them. */
dml_status dml_split_labels_per_class(const dml_dataset *ds, const int32_t *rows, int n, int k,
                                      dml_rng *rng, int32_t **labelled, int *n_labelled,
                                      int32_t **rest, int *n_rest, dml_error *err);

#endif
