/* Input normalisation: x' = (x - mean) / std per feature, fitted on the training rows only and
 * stored with the model (formats.md: /encoder/input_norm). */
#ifndef DML_DATA_NORMALIZE_H
#define DML_DATA_NORMALIZE_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"

/* config data.normalize; the order matches the config's choice list. */
typedef enum dml_norm_kind { DML_NORM_NONE, DML_NORM_UNIT, DML_NORM_STANDARDIZE } dml_norm_kind;

/* Unit scaling of bytes is mean 0, std 255; the identity is d = 0 (mean = std = NULL). */
typedef struct dml_input_norm {
    int d;
    float *mean, *std; /* [d] each */
} dml_input_norm;

/* Fits norm for one view of ds (view 0: x, view 1: x_b) on rows[n_rows] (NULL: every row).
 *   none:        the identity.
 *   unit:        x / 255 when that view was read from bytes; the identity for float data.
 *   standardize: the per-feature mean and (population) std over those rows. A feature whose
 *                std is below 1e-6 gets std 1: it is constant on the training rows, and scaling
 *                it by 1e6 would turn any other value met later into a huge input.
 * On error norm is the identity. */
dml_status dml_input_norm_fit(dml_input_norm *norm, dml_norm_kind kind, const dml_dataset *ds,
                              int view, const int32_t *rows, int n_rows, dml_error *err);
/* x[n, norm->d] in place (nothing for the identity). */
void dml_input_norm_apply(const dml_input_norm *norm, float *x, size_t n);
void dml_input_norm_free(dml_input_norm *norm);

#endif
