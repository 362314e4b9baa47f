/* An in-memory dataset: float rows, optional integer labels, optional second view. */
#ifndef DML_DATA_DATASET_H
#define DML_DATA_DATASET_H

#include <stdint.h>
#include "data/error.h"

typedef struct dml_dataset {
    int n, d;
    float *x;       /* [n, d] */
    int32_t *y;     /* [n] labels >= 0, or NULL when unlabelled */
    int n_classes;  /* max label + 1; 0 when unlabelled */
    int d_b;        /* second view (pairs from a file: anchor in x, positive in x_b), else 0 */
    float *x_b;     /* [n, d_b] or NULL */
    char source[512]; /* the spec it was read from */
} dml_dataset;

/* Input normalisation stored with a model: x' = (x - mean) / std per feature.
 * unit scaling of bytes is mean 0, std 255; none is d = 0. */
typedef struct dml_input_norm {
    int d;
    float *mean, *std; /* [d] each */
} dml_input_norm;

#endif
