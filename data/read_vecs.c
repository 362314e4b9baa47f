/* TEXMEX .fvecs / .ivecs / .bvecs: each vector is a little-endian int32 dimension followed by
 * that many float32 / int32 / uint8 values; every vector has the same dimension. Unlabelled. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/readers.h"

#define MAX_DIM (1 << 24)

static void convert_row(float *out, const uint8_t *p, int d, char kind)
{
    if (kind == 'f') {
        memcpy(out, p, (size_t)d * sizeof(float));
        return;
    }
    for (int j = 0; j < d; j++) {
        int32_t v;
        if (kind == 'b') {
            out[j] = p[j];
        } else {
            memcpy(&v, p + 4 * (size_t)j, 4);
            out[j] = (float)v;
        }
    }
}

static dml_status read_vecs(const char *path, const char *inner, dml_dataset *ds,
                            dml_error *err)
{
    (void)inner; /* one data set per file */
    char kind = path[strlen(path) - 5]; /* 'f', 'i' or 'b' of ".?vecs" */
    size_t es = kind == 'b' ? 1 : 4;
    struct stat sb;
    FILE *f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &sb) != 0) {
        if (f)
            fclose(f);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open the file");
    }
    uint8_t *row = NULL;
    int32_t d = 0;
    dml_status st = DML_OK;
    unsigned long long size = (unsigned long long)sb.st_size;
    if (size == 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "the file is empty");
        goto done;
    }
    if (fread(&d, 4, 1, f) != 1 || d < 1 || d > MAX_DIM) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "not a .%cvecs file: the first vector's dimension is %d", kind, d);
        goto done;
    }
    unsigned long long rec = 4 + (unsigned long long)d * es;
    if (size % rec != 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "%llu bytes is not a whole number of vectors of dimension %d "
                           "(%llu bytes each): truncated, or vectors of different dimensions",
                           size, d, rec);
        goto done;
    }
    if (size / rec > INT_MAX) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "too many vectors (%llu)", size / rec);
        goto done;
    }
    int n = (int)(size / rec);
    if ((st = dml_dataset_alloc(ds, n, d, 0, err)) != DML_OK)
        goto done;
    if (!(row = malloc((size_t)rec))) {
        st = dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
        goto done;
    }
    rewind(f);
    for (int i = 0; i < n; i++) {
        int32_t di;
        if (fread(row, 1, (size_t)rec, f) != (size_t)rec) {
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "read error at vector %d", i);
            goto done;
        }
        memcpy(&di, row, 4);
        if (di != d) {
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "vector %d (0-based) has dimension %d, the first one %d", i, di, d);
            goto done;
        }
        convert_row(ds->x + (size_t)i * (size_t)d, row + 4, d, kind);
    }
    ds->from_bytes = kind == 'b';
done:
    free(row);
    fclose(f);
    return st;
}

static int probe_vecs(const char *spec, char *file, size_t n)
{
    return dml_reader_probe_suffix(spec, ".fvecs", file, n) ||
           dml_reader_probe_suffix(spec, ".ivecs", file, n) ||
           dml_reader_probe_suffix(spec, ".bvecs", file, n);
}

const dml_reader dml_reader_vecs = {".fvecs/.ivecs/.bvecs", probe_vecs, read_vecs};
