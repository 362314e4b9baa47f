/* NumPy .npy (format versions 1-3): a magic string, a header dict with descr, fortran_order
 * and shape, then the values. float32, float64 and uint8 rows, C order; labels from a sibling
 * <stem>.labels.npy of int32 or int64 when one exists. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/readers.h"

typedef struct npy_header {
    char descr[8];   /* "<f4", "<f8", "|u1", "<i4", "<i8" */
    long shape[2];
    int rank;
} npy_header;

static dml_status parse_header(FILE *f, const char *path, npy_header *h, dml_error *err)
{
    unsigned char magic[8];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, "\x93NUMPY", 6) != 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "not a .npy file (bad magic)");
    size_t len = 0;
    unsigned char b[4] = {0};
    int wide = magic[6] >= 2;
    if (fread(b, 1, wide ? 4 : 2, f) != (wide ? 4u : 2u))
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "truncated .npy header");
    len = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16 | (size_t)b[3] << 24;
    char *text = malloc(len + 1);
    if (!text || fread(text, 1, len, f) != len) {
        free(text);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "truncated .npy header");
    }
    text[len] = '\0';
    dml_status st = DML_OK;
    const char *descr = strstr(text, "'descr':"), *order = strstr(text, "'fortran_order':"),
               *shape = strstr(text, "'shape':");
    if (!descr || !order || !shape || sscanf(descr, "'descr': '%7[^']'", h->descr) != 1)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "malformed .npy header: %s", text);
    else if (strncmp(order + strlen("'fortran_order':"), " False", 6) != 0)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "Fortran-ordered arrays are not supported: save with C order");
    else {
        h->rank = sscanf(shape, "'shape': (%ld, %ld", &h->shape[0], &h->shape[1]);
        if (h->rank < 1)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "malformed shape in: %s", text);
        else if (h->rank == 1 && !strstr(shape, ",)"))
            h->rank = 2; /* "(n, d)" parsed one number only if d was absent */
    }
    free(text);
    return st;
}

static size_t elem_size(const char *descr)
{
    if (!strcmp(descr, "<f4") || !strcmp(descr, "<i4"))
        return 4;
    if (!strcmp(descr, "<f8") || !strcmp(descr, "<i8"))
        return 8;
    if (!strcmp(descr, "|u1"))
        return 1;
    return 0;
}

static double value_at(const char *descr, const unsigned char *p)
{
    float f;
    double d;
    int32_t i;
    int64_t l;
    switch (descr[1]) {
    case 'f':
        if (descr[2] == '4') { memcpy(&f, p, 4); return f; }
        memcpy(&d, p, 8);
        return d;
    case 'i':
        if (descr[2] == '4') { memcpy(&i, p, 4); return i; }
        memcpy(&l, p, 8);
        return (double)l;
    default:
        return *p;
    }
}

/* Reads a whole array as doubles' source bytes; *count elements of the header's type. */
static dml_status read_array(const char *path, npy_header *h, unsigned char **data, dml_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open: no such file");
    dml_status st = parse_header(f, path, h, err);
    size_t es = elem_size(h->descr);
    if (st == DML_OK && !es)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "dtype %s: expected float32, float64, uint8, int32 or int64 (little-endian)",
                           h->descr);
    if (st == DML_OK) {
        size_t count = (size_t)h->shape[0] * (h->rank == 2 ? (size_t)h->shape[1] : 1);
        *data = malloc(count * es + 1);
        if (!*data || fread(*data, es, count, f) != count) {
            free(*data);
            *data = NULL;
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "truncated: the header promises %zu values", count);
        }
    }
    fclose(f);
    return st;
}

dml_status dml_read_npy(const char *path, dml_dataset *ds, dml_error *err)
{
    npy_header h = {0};
    unsigned char *raw = NULL;
    dml_status st = read_array(path, &h, &raw, err);
    if (st != DML_OK)
        return st;
    if (h.rank != 2) {
        free(raw);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "expected a 2-D array of rows");
    }
    char lpath[4096];
    snprintf(lpath, sizeof lpath, "%.*s.labels.npy", (int)(strlen(path) - 4), path);
    FILE *probe = fopen(lpath, "rb");
    int labelled = probe != NULL;
    if (probe)
        fclose(probe);
    if ((st = dml_dataset_alloc(ds, (int)h.shape[0], (int)h.shape[1], labelled, err)) != DML_OK) {
        free(raw);
        return st;
    }
    size_t es = elem_size(h.descr);
    for (size_t i = 0; i < (size_t)ds->n * ds->d; i++)
        ds->x[i] = (float)value_at(h.descr, raw + i * es);
    ds->from_bytes = !strcmp(h.descr, "|u1");
    free(raw);
    if (!labelled)
        return DML_OK;
    npy_header lh = {0};
    if ((st = read_array(lpath, &lh, &raw, err)) != DML_OK)
        return st;
    if (lh.descr[1] != 'i' || lh.shape[0] != ds->n || lh.rank != 1)
        st = dml_error_set(err, DML_ERR_DATA, lpath, 0, 0,
                           "expected %d integer labels (int32 or int64, 1-D) for %s", ds->n, path);
    for (int i = 0; st == DML_OK && i < ds->n; i++)
        ds->y[i] = (int32_t)value_at(lh.descr, raw + (size_t)i * elem_size(lh.descr));
    free(raw);
    return st;
}
