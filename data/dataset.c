/* Opening a data SPEC: dispatch on its form, then validate what the reader produced. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "data/readers.h"

#define MAX_LABEL 1000000

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "file.h5:/path" names a dataset inside an HDF5 file; any other ':' belongs to the path. */
static int split_h5_spec(const char *spec, char *file, size_t n, const char **inner)
{
    const char *colon = strstr(spec, ".h5:");
    size_t skip = 3;
    if (!colon) {
        colon = strstr(spec, ".hdf5:");
        skip = 5;
    }
    if (colon) {
        snprintf(file, n, "%.*s", (int)(colon - spec + (ptrdiff_t)skip), spec);
        *inner = colon + skip + 1;
        return 1;
    }
    if (ends_with(spec, ".h5") || ends_with(spec, ".hdf5")) {
        snprintf(file, n, "%s", spec);
        *inner = NULL;
        return 1;
    }
    return 0;
}

static dml_status validate(const char *source, dml_dataset *ds, dml_error *err)
{
    if (ds->n == 0 || ds->d == 0)
        return dml_error_set(err, DML_ERR_DATA, source, 0, 0,
                             "the data set is empty (%d rows of width %d)", ds->n, ds->d);
    for (size_t i = 0; i < (size_t)ds->n * ds->d; i++)
        if (!isfinite(ds->x[i]))
            return dml_error_set(err, DML_ERR_DATA, source, 0, 0,
                                 "row %zu, column %zu (0-based) is %s: expected finite numbers",
                                 i / (size_t)ds->d, i % (size_t)ds->d,
                                 isnan(ds->x[i]) ? "NaN" : "Inf");
    ds->n_classes = 0;
    for (int i = 0; ds->y && i < ds->n; i++) {
        if (ds->y[i] < 0 || ds->y[i] > MAX_LABEL)
            return dml_error_set(err, DML_ERR_DATA, source, 0, 0,
                                 "label %d of row %d (0-based): expected 0..%d", (int)ds->y[i], i,
                                 MAX_LABEL);
        if (ds->y[i] + 1 > ds->n_classes)
            ds->n_classes = ds->y[i] + 1;
    }
    return DML_OK;
}

dml_status dml_dataset_open(const char *spec, dml_dataset *ds, dml_error *err)
{
    memset(ds, 0, sizeof *ds);
    char file[4096];
    const char *inner = NULL;
    dml_status st;
    if (!strcmp(spec, "fashion-mnist:train"))
        st = dml_read_idx(DML_FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", ds, err);
    else if (!strcmp(spec, "fashion-mnist:test"))
        st = dml_read_idx(DML_FASHION_MNIST_DIR "/t10k-images-idx3-ubyte.gz", ds, err);
    else if (split_h5_spec(spec, file, sizeof file, &inner))
        st = dml_read_hdf5(file, inner, ds, err);
    else if (strstr(spec, "idx3-ubyte"))
        st = dml_read_idx(spec, ds, err);
    else if (ends_with(spec, ".npy"))
        st = dml_read_npy(spec, ds, err);
    else if (ends_with(spec, ".fvecs") || ends_with(spec, ".ivecs") || ends_with(spec, ".bvecs"))
        st = dml_read_vecs(spec, ds, err);
    else if (ends_with(spec, ".csv"))
        st = dml_read_csv(spec, ds, err);
    else
        st = dml_error_set(err, DML_ERR_DATA, spec, 0, 0,
                           "unknown data format: expected .h5[:/dataset], an IDX file "
                           "(*-idx3-ubyte[.gz]), .npy, .fvecs/.ivecs/.bvecs, .csv or "
                           "fashion-mnist:train|test");
    if (st == DML_OK)
        st = validate(spec, ds, err);
    if (st != DML_OK) {
        dml_dataset_free(ds);
        return st;
    }
    snprintf(ds->source, sizeof ds->source, "%s", spec);
    return DML_OK;
}

void dml_dataset_free(dml_dataset *ds)
{
    free(ds->x);
    free(ds->y);
    free(ds->x_b);
    memset(ds, 0, sizeof *ds);
}

/* malloc(0) may return NULL; every buffer gets at least one element. */
static void *alloc_array(size_t n, size_t size)
{
    return malloc((n > 0 ? n : 1) * size);
}

dml_status dml_dataset_alloc(dml_dataset *ds, int n, int d, int labelled, dml_error *err)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->d = d;
    ds->x = alloc_array((size_t)n * d, sizeof(float));
    if (labelled)
        ds->y = alloc_array((size_t)n, sizeof(int32_t));
    if (!ds->x || (labelled && !ds->y)) {
        dml_dataset_free(ds);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for %d x %d rows", n,
                             d);
    }
    return DML_OK;
}

dml_status dml_dataset_subset(const dml_dataset *src, const int32_t *rows, int n, dml_dataset *out,
                              dml_error *err)
{
    dml_status st = dml_dataset_alloc(out, n, src->d, src->y != NULL, err);
    if (st != DML_OK)
        return st;
    for (int i = 0; i < n; i++) {
        memcpy(out->x + (size_t)i * src->d, src->x + (size_t)rows[i] * src->d,
               (size_t)src->d * sizeof(float));
        if (src->y)
            out->y[i] = src->y[rows[i]];
    }
    if (src->x_b) {
        out->d_b = src->d_b;
        out->x_b = alloc_array((size_t)n * src->d_b, sizeof(float));
        if (!out->x_b) {
            dml_dataset_free(out);
            return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for a subset");
        }
        for (int i = 0; i < n; i++)
            memcpy(out->x_b + (size_t)i * src->d_b, src->x_b + (size_t)rows[i] * src->d_b,
                   (size_t)src->d_b * sizeof(float));
    }
    out->n_classes = src->n_classes;
    out->from_bytes = src->from_bytes;
    snprintf(out->source, sizeof out->source, "%s", src->source);
    return DML_OK;
}
