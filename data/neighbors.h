/* Ground truth for nearest-neighbour recall: for each query, the database rows nearest to it by
 * the raw vectors, nearest first, as ann-benchmarks' HDF5 files (dataset `neighbors` beside
 * `train` and `test`) and TEXMEX's *_groundtruth.ivecs give it. */
#ifndef DML_DATA_NEIGHBORS_H
#define DML_DATA_NEIGHBORS_H

#include <stddef.h>
#include <stdint.h>

#include "data/error.h"

typedef struct dml_neighbors {
    int n, k;     /* n queries, k neighbours each */
    int32_t *ids; /* [n, k] database rows, nearest first */
    char source[512];
} dml_neighbors;

/* Reads a ground-truth SPEC: file.ivecs (one vector of k ids per query), or file.h5:/name /
 * file.hdf5:/name, a 2-D integer dataset [n, k]. Ids must be in 0..INT32_MAX. Errors are
 * DML_ERR_DATA naming the file (DML_ERR_NOMEM when memory runs out); on error *nb is empty. */
dml_status dml_neighbors_open(const char *spec, dml_neighbors *nb, dml_error *err);
void dml_neighbors_free(dml_neighbors *nb);

/* The ground truth an ann-benchmarks query set carries: when queries is "F.hdf5:/test" (or
 * F.h5) and F has a dataset `neighbors`, writes "F.hdf5:/neighbors" to spec[n] and returns 1. */
int dml_neighbors_beside(const char *queries, char *spec, size_t n);

#endif
