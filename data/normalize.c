/* Input normalisation, fitted on training rows and stored with the model. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define STD_FLOOR 1e-6f

dml_status dml_input_norm_fit(dml_norm_kind kind, const dml_dataset *ds, dml_input_norm *norm,
                              dml_error *err)
{
    memset(norm, 0, sizeof *norm);
    if (kind == DML_NORM_NONE || (kind == DML_NORM_UNIT && !ds->from_bytes))
        return DML_OK;
    int d = ds->d;
    norm->mean = calloc((size_t)d, sizeof(float));
    norm->std = malloc((size_t)d * sizeof(float));
    if (!norm->mean || !norm->std) {
        dml_input_norm_free(norm);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for normalisation");
    }
    norm->d = d;
    if (kind == DML_NORM_UNIT) {
        for (int j = 0; j < d; j++)
            norm->std[j] = 255.0f;
        return DML_OK;
    }
    double *sum = calloc((size_t)d, sizeof(double)), *sq = calloc((size_t)d, sizeof(double));
    if (!sum || !sq) {
        free(sum);
        free(sq);
        dml_input_norm_free(norm);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for normalisation");
    }
    for (int i = 0; i < ds->n; i++)
        for (int j = 0; j < d; j++) {
            double v = ds->x[(size_t)i * d + j];
            sum[j] += v;
            sq[j] += v * v;
        }
    for (int j = 0; j < d; j++) {
        double mean = sum[j] / ds->n, var = sq[j] / ds->n - mean * mean;
        norm->mean[j] = (float)mean;
        norm->std[j] = var > (double)STD_FLOOR * STD_FLOOR ? (float)sqrt(var) : STD_FLOOR;
    }
    free(sum);
    free(sq);
    return DML_OK;
}

void dml_input_norm_apply(const dml_input_norm *norm, float *x, size_t n)
{
    if (norm->d == 0)
        return;
    for (size_t i = 0; i < n; i++)
        for (int j = 0; j < norm->d; j++) {
            float *v = &x[i * (size_t)norm->d + j];
            *v = (*v - norm->mean[j]) / norm->std[j];
        }
}

void dml_input_norm_free(dml_input_norm *norm)
{
    free(norm->mean);
    free(norm->std);
    memset(norm, 0, sizeof *norm);
}
