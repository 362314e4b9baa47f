/* Input normalisation, fitted on the training rows and stored with the model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define STD_MIN 1e-6

static dml_status alloc_norm(dml_input_norm *norm, int d, dml_error *err)
{
    norm->mean = malloc((size_t)d * sizeof(float));
    norm->std = malloc((size_t)d * sizeof(float));
    if (!norm->mean || !norm->std) {
        dml_input_norm_free(norm);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for normalisation");
    }
    norm->d = d;
    return DML_OK;
}

/* Per-feature mean, then the mean squared deviation (two passes: no cancellation). */
/* The sums of the rows [i0, i0 + k) of the fitted rows into sum (pass 0) or their squared
 * deviations from norm->mean (pass 1). */
static void accumulate(double *sum, const dml_input_norm *norm, const float *x, int d,
                       const int32_t *rows, int i0, int k, int pass)
{
    for (int i = 0; i < k; i++) {
        const float *row = x + (size_t)(rows ? rows[i0 + i] : i0 + i) * (size_t)d;
        for (int j = 0; j < d; j++) {
            double v = row[j];
            sum[j] += pass == 0 ? v : (v - norm->mean[j]) * (v - norm->mean[j]);
        }
    }
}

/* Two passes over the rows (means, then deviations); rows that stay in the file are gathered
 * FIT_BLOCK at a time, summed in the same order as in memory. */
static dml_status standardize(dml_input_norm *norm, const dml_dataset *ds, const float *x, int d,
                              const int32_t *rows, int n, dml_error *err)
{
    enum { FIT_BLOCK = 4096 };
    double *sum = calloc((size_t)d, sizeof *sum);
    float *buf = x ? NULL : malloc((size_t)FIT_BLOCK * (size_t)d * sizeof *buf);
    int32_t *ids = x ? NULL : malloc(FIT_BLOCK * sizeof *ids);
    if (!sum || (!x && (!buf || !ids))) {
        free(sum);
        free(buf);
        free(ids);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for normalisation");
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int i0 = 0; i0 < n; i0 += FIT_BLOCK) {
            int k = n - i0 < FIT_BLOCK ? n - i0 : FIT_BLOCK;
            if (x) {
                accumulate(sum, norm, x, d, rows, i0, k, pass);
                continue;
            }
            for (int i = 0; i < k; i++)
                ids[i] = rows ? rows[i0 + i] : i0 + i;
            dml_dataset_gather(buf, ds, ids, k);
            accumulate(sum, norm, buf, d, NULL, 0, k, pass);
        }
        for (int j = 0; j < d; j++) {
            if (pass == 0) {
                norm->mean[j] = (float)(sum[j] / n);
            } else {
                double std = sqrt(sum[j] / n);
                norm->std[j] = std < STD_MIN ? 1.0f : (float)std;
            }
            sum[j] = 0.0;
        }
    }
    free(sum);
    free(buf);
    free(ids);
    return DML_OK;
}

dml_status dml_input_norm_fit(dml_input_norm *norm, dml_norm_kind kind, const dml_dataset *ds,
                              int view, const int32_t *rows, int n_rows, dml_error *err)
{
    memset(norm, 0, sizeof *norm);
    DML_ASSERT(view == 0 || (view == 1 && ds->x_b));
    const float *x = view ? ds->x_b : ds->x;
    int d = view ? ds->d_b : ds->d, bytes = view ? ds->from_bytes_b : ds->from_bytes;
    int n = rows ? n_rows : ds->n;
    if (kind == DML_NORM_NONE || (kind == DML_NORM_UNIT && !bytes))
        return DML_OK;
    if (kind == DML_NORM_STANDARDIZE && n < 1)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "normalize: standardize needs at least one training row");
    dml_status st = alloc_norm(norm, d, err);
    if (st != DML_OK)
        return st;
    if (kind == DML_NORM_UNIT) {
        for (int j = 0; j < d; j++) {
            norm->mean[j] = 0.0f;
            norm->std[j] = 255.0f;
        }
        return DML_OK;
    }
    if ((st = standardize(norm, ds, x, d, rows, n, err)) != DML_OK)
        dml_input_norm_free(norm);
    return st;
}

void dml_input_norm_apply(const dml_input_norm *norm, float *x, size_t n)
{
    if (norm->d == 0)
        return;
    for (size_t i = 0; i < n; i++) {
        float *row = x + i * (size_t)norm->d;
        for (int j = 0; j < norm->d; j++)
            row[j] = (row[j] - norm->mean[j]) / norm->std[j];
    }
}

void dml_input_norm_free(dml_input_norm *norm)
{
    free(norm->mean);
    free(norm->std);
    memset(norm, 0, sizeof *norm);
}
