/* Opening a data SPEC (dispatch on its form, then validation of what the reader produced),
 * and the dataset's own operations: subsets, the halves view, gathering batch rows. */
#define _DEFAULT_SOURCE /* madvise's MADV_HUGEPAGE (Linux) */
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "data/data.h"
#include "data/readers.h"
#include "data/rows_cache.h"

#define FMNIST_PREFIX "fashion-mnist:"

dml_status dml_check_finite(const char *source, const float *x, int n, int d, long first_row,
                            const char *view, dml_error *err)
{
    for (size_t i = 0; i < (size_t)n * (size_t)d; i++)
        if (!isfinite(x[i]))
            return dml_error_set(err, DML_ERR_DATA, source, 0, 0,
                                 "%s row %zu, column %zu (0-based) is %s: expected finite numbers",
                                 view, (size_t)first_row + i / (size_t)d, i % (size_t)d,
                                 isnan(x[i]) ? "NaN" : "Inf");
    return DML_OK;
}

static dml_status validate(const char *source, dml_dataset *ds, dml_error *err)
{
    if (ds->n < 1 || ds->d < 1)
        return dml_error_set(err, DML_ERR_DATA, source, 0, 0,
                             "the data set is empty (%d rows of width %d)", ds->n, ds->d);
    dml_status st = dml_check_finite(source, ds->x, ds->n, ds->d, 0, ds->x_b ? "anchor" : "data", err);
    if (st == DML_OK && ds->x_b)
        st = dml_check_finite(source, ds->x_b, ds->n, ds->d_b, 0, "positive", err);
    ds->n_classes = dml_labels_classes(ds->y, ds->n);
    return st;
}

/* The path a spec reads, or NULL (err set) for a fashion-mnist: name that is not a split. */
static const char *fmnist_path(const char *spec, char *buf, size_t n, dml_error *err)
{
    const char *split = spec + strlen(FMNIST_PREFIX);
    if (strcmp(split, "train") != 0 && strcmp(split, "test") != 0) {
        dml_error_set(err, DML_ERR_DATA, spec, 0, 0,
                      "expected fashion-mnist:train or fashion-mnist:test");
        return NULL;
    }
    snprintf(buf, n, "%s/%s-images-idx3-ubyte.gz", DML_FASHION_MNIST_DIR,
             strcmp(split, "train") == 0 ? "train" : "t10k");
    return buf;
}

dml_status dml_reader_find(const char *spec, const dml_reader **reader, char *file, size_t n,
                           char *inner, size_t n_inner, dml_error *err)
{
    char resolved[4096];
    int is_fmnist = strncmp(spec, FMNIST_PREFIX, strlen(FMNIST_PREFIX)) == 0;
    if (is_fmnist && !(spec = fmnist_path(spec, resolved, sizeof resolved, err)))
        return DML_ERR_DATA;
    if (!*spec)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0, "an empty data spec");
    for (const dml_reader *const *r = dml_readers; *r; r++) {
        if (!(*r)->probe(spec, file, n))
            continue;
        if (!dml_file_exists(file))
            return dml_error_set(err, DML_ERR_DATA, file, 0, 0, "no such file%s",
                                 is_fmnist ? " (the Debian package dataset-fashion-mnist provides "
                                             "it)"
                                           : "");
        size_t k = strlen(file);
        snprintf(inner, n_inner, "%s", spec[k] == ':' ? spec + k + 1 : "");
        *reader = *r;
        return DML_OK;
    }
    if (!dml_file_exists(spec))
        return dml_error_set(err, DML_ERR_DATA, spec, 0, 0, "no such file");
    char forms[512] = "";
    for (const dml_reader *const *r = dml_readers; *r; r++)
        snprintf(forms + strlen(forms), sizeof forms - strlen(forms), "%s%s",
                 r == dml_readers ? "" : ", ", (*r)->forms);
    return dml_error_set(err, DML_ERR_DATA, spec, 0, 0,
                         "unknown data format: expected %s or fashion-mnist:train|test", forms);
}

dml_status dml_dataset_open(const char *spec, dml_dataset *ds, dml_error *err)
{
    memset(ds, 0, sizeof *ds);
    const dml_reader *reader;
    char file[4096], inner[1024];
    dml_status st = dml_reader_find(spec, &reader, file, sizeof file, inner, sizeof inner, err);
    if (st == DML_OK)
        st = reader->read(file, *inner ? inner : NULL, ds, err);
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
    if (!ds->borrowed) {
        free(ds->x);
        free(ds->x_b);
    }
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

int dml_labels_classes(const int32_t *y, int n)
{
    int classes = 0;
    for (int i = 0; y && i < n; i++)
        if (y[i] + 1 > classes)
            classes = y[i] + 1;
    return classes;
}

dml_status dml_labels_narrow(int32_t *y, const int64_t *v, size_t n, const char *file,
                             dml_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] < 0 || v[i] > DML_MAX_LABEL)
            return dml_error_set(err, DML_ERR_DATA, file, 0, 0,
                                 "label %lld of row %zu (0-based): expected 0..%d",
                                 (long long)v[i], i, DML_MAX_LABEL);
        y[i] = (int32_t)v[i];
    }
    return DML_OK;
}

#define HUGE_PAGE (2u << 20)

/* malloc(0) may return NULL; every buffer gets at least one element. Every batch gathers rows
 * from all over the data set, and on a large one most of the time goes to TLB misses (a 256-row
 * Fashion-MNIST batch touches ~300 4-KiB pages of 188 MiB): arrays of 8 MiB and more are aligned
 * to 2 MiB and offered to the kernel for transparent huge pages. */
static void *alloc_array(size_t n, size_t size)
{
    size_t bytes = (n > 0 ? n : 1) * size;
#ifdef MADV_HUGEPAGE
    void *p;
    if (bytes >= 4 * (size_t)HUGE_PAGE && posix_memalign(&p, HUGE_PAGE, bytes) == 0) {
        madvise(p, bytes / HUGE_PAGE * HUGE_PAGE, MADV_HUGEPAGE); /* a hint: failure is harmless */
        return p;
    }
#endif
    return malloc(bytes);
}

dml_status dml_dataset_own(dml_dataset *ds, dml_error *err)
{
    if (!ds->borrowed)
        return DML_OK;
    size_t n_x = (size_t)ds->n * (size_t)ds->d, n_b = (size_t)ds->n * (size_t)ds->d_b;
    float *x = alloc_array(n_x, sizeof(float)), *x_b = ds->x_b ? alloc_array(n_b, sizeof(float))
                                                               : NULL;
    if (!x || (ds->x_b && !x_b)) {
        free(x);
        free(x_b);
        return dml_error_set(err, DML_ERR_NOMEM, ds->source, 0, 0,
                             "out of memory for a copy of %d rows", ds->n);
    }
    memcpy(x, ds->x, n_x * sizeof(float));
    if (x_b)
        memcpy(x_b, ds->x_b, n_b * sizeof(float));
    ds->x = x;
    ds->x_b = x_b;
    ds->borrowed = 0;
    return DML_OK;
}

dml_status dml_dataset_borrow(const float *x, int64_t n, int d, const int64_t *y, const float *x_b,
                              int d_b, const char *name, dml_dataset *ds, dml_error *err)
{
    memset(ds, 0, sizeof *ds);
    if (n < 1 || n > INT_MAX || d < 1 || (x_b && d_b < 1))
        return dml_error_set(err, DML_ERR_USAGE, name, 0, 0,
                             "expected at least one row of width >= 1 (and fewer than 2^31 rows), "
                             "got %lld rows of width %d%s", (long long)n, d,
                             x_b && d_b < 1 ? " and a second view of width < 1" : "");
    ds->n = (int)n;
    ds->d = d;
    ds->borrowed = 1;
    ds->x = (float *)x; /* only read while borrowed */
    ds->x_b = (float *)x_b;
    ds->d_b = x_b ? d_b : 0;
    snprintf(ds->source, sizeof ds->source, "%s", name);
    ds->value_type = "float32";
    ds->value_type_b = x_b ? "float32" : NULL;
    dml_status st = DML_OK;
    if (y && !(ds->y = malloc((size_t)n * sizeof *ds->y)))
        st = dml_error_set(err, DML_ERR_NOMEM, name, 0, 0, "out of memory for %lld labels",
                           (long long)n);
    if (st != DML_OK || (y && (st = dml_labels_narrow(ds->y, y, (size_t)n, name, err)) != DML_OK))
        goto fail;
    if ((st = dml_check_finite(name, ds->x, ds->n, d, 0, x_b ? "anchor" : "data", err)) != DML_OK ||
        (x_b && (st = dml_check_finite(name, ds->x_b, ds->n, d_b, 0, "positive", err)) != DML_OK))
        goto fail;
    ds->n_classes = dml_labels_classes(ds->y, ds->n);
    return DML_OK;
fail:
    dml_dataset_free(ds);
    return st;
}

dml_status dml_dataset_alloc(dml_dataset *ds, int n, int d, int labelled, dml_error *err)
{
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->d = d;
    ds->x = alloc_array((size_t)n * (size_t)d, sizeof(float));
    if (labelled)
        ds->y = alloc_array((size_t)n, sizeof(int32_t));
    if (!ds->x || (labelled && !ds->y)) {
        dml_dataset_free(ds);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for %d rows of %d",
                             n, d);
    }
    return DML_OK;
}

dml_status dml_dataset_subset(const dml_dataset *src, const int32_t *rows, int n, dml_dataset *out,
                              dml_error *err)
{
    dml_status st = dml_dataset_alloc(out, n, src->d, src->y != NULL, err);
    if (st != DML_OK)
        return st;
    if (src->x_b && !(out->x_b = alloc_array((size_t)n * (size_t)src->d_b, sizeof(float)))) {
        dml_dataset_free(out);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for a subset");
    }
    out->d_b = src->d_b;
    dml_dataset_gather(out->x, src, rows, n);
    if (src->x_b)
        dml_dataset_gather_b(out->x_b, src, rows, n);
    if (src->y)
        dml_dataset_gather_labels(out->y, src, rows, n);
    out->n_classes = src->n_classes;
    out->from_bytes = src->from_bytes;
    out->from_bytes_b = src->from_bytes_b;
    out->value_type = src->value_type;
    out->value_type_b = src->value_type_b;
    snprintf(out->source, sizeof out->source, "%s", src->source);
    return DML_OK;
}

dml_status dml_dataset_halves(const dml_dataset *src, dml_dataset *out, dml_error *err)
{
    memset(out, 0, sizeof *out);
    if (src->x_b)
        return dml_error_set(err, DML_ERR_USAGE, src->source, 0, 0,
                             "pairs: halves needs one view, and this data set has two");
    if (src->d < 2)
        return dml_error_set(err, DML_ERR_DATA, src->source, 0, 0,
                             "pairs: halves needs at least 2 features per row, got %d", src->d);
    if (!src->x) /* streamed: the rows stay in the file */
        return dml_error_set(err, DML_ERR_USAGE, src->source, 0, 0,
                             "pairs: halves splits rows held in memory, and these are read from "
                             "the file in blocks: set data.in_memory to true");
    int d_a = src->d / 2, d_b = src->d - d_a;
    dml_status st = dml_dataset_alloc(out, src->n, d_a, src->y != NULL, err);
    if (st != DML_OK)
        return st;
    if (!(out->x_b = alloc_array((size_t)src->n * (size_t)d_b, sizeof(float)))) {
        dml_dataset_free(out);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the halves");
    }
    out->d_b = d_b;
    for (size_t i = 0; i < (size_t)src->n; i++) {
        const float *row = src->x + i * (size_t)src->d;
        memcpy(out->x + i * (size_t)d_a, row, (size_t)d_a * sizeof(float));
        memcpy(out->x_b + i * (size_t)d_b, row + d_a, (size_t)d_b * sizeof(float));
    }
    if (src->y)
        memcpy(out->y, src->y, (size_t)src->n * sizeof(int32_t));
    out->n_classes = src->n_classes;
    out->from_bytes = out->from_bytes_b = src->from_bytes;
    out->value_type = out->value_type_b = src->value_type;
    snprintf(out->source, sizeof out->source, "%s", src->source);
    return DML_OK;
}

/* Rows idx[0..n) of x: random rows of a large array, whose lines the hardware prefetcher only
 * finds once a row's copy is under way, so the next row's lines are asked for while this one is
 * copied (the batch gather of 256 Fashion-MNIST rows: 81 -> 68 us; two rows ahead gained no
 * more). */
static void gather_rows(float *out, const float *x, int d, const int32_t *idx, int n)
{
    enum { LINE_FLOATS = 64 / sizeof(float) };
    for (int i = 0; i < n; i++) {
        if (i + 1 < n) {
            const float *next = x + (size_t)idx[i + 1] * (size_t)d;
            for (int k = 0; k < d; k += LINE_FLOATS)
                __builtin_prefetch(next + k);
        }
        memcpy(out + (size_t)i * (size_t)d, x + (size_t)idx[i] * (size_t)d,
               (size_t)d * sizeof(float));
    }
}

void dml_dataset_gather(float *out, const dml_dataset *ds, const int32_t *idx, int n)
{
    if (ds->cache)
        dml_row_cache_gather(ds->cache, out, idx, n);
    else
        gather_rows(out, ds->x, ds->d, idx, n);
}

void dml_dataset_gather_b(float *out, const dml_dataset *ds, const int32_t *idx, int n)
{
    DML_ASSERT(ds->x_b != NULL);
    gather_rows(out, ds->x_b, ds->d_b, idx, n);
}

void dml_dataset_gather_labels(int32_t *out, const dml_dataset *ds, const int32_t *idx, int n)
{
    DML_ASSERT(ds->y != NULL);
    for (int i = 0; i < n; i++)
        out[i] = ds->y[idx[i]];
}
