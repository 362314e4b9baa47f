/* TEXMEX .fvecs / .ivecs / .bvecs: each vector is an int32 dimension followed by that many
 * float32 / int32 / uint8 values. Unlabelled. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/readers.h"

dml_status dml_read_vecs(const char *path, dml_dataset *ds, dml_error *err)
{
    size_t len = strlen(path);
    char kind = path[len - 5]; /* 'f', 'i' or 'b' of ".?vecs" */
    size_t es = kind == 'b' ? 1 : 4;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open: no such file");
    int32_t d;
    dml_status st = DML_OK;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    if (fread(&d, 4, 1, f) != 1 || d <= 0 || d > 1 << 20) {
        fclose(f);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "not a %cvecs file: bad first dimension", kind);
    }
    long row_bytes = 4 + (long)d * (long)es;
    if (size % row_bytes != 0) {
        fclose(f);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "%ld bytes is not a whole number of rows of dimension %d "
                             "(truncated, or rows of different widths)", size, d);
    }
    int n = (int)(size / row_bytes);
    if ((st = dml_dataset_alloc(ds, n, d, 0, err)) != DML_OK) {
        fclose(f);
        return st;
    }
    unsigned char *row = malloc((size_t)row_bytes);
    rewind(f);
    for (int i = 0; st == DML_OK && i < n; i++) {
        int32_t di;
        if (!row || fread(row, 1, (size_t)row_bytes, f) != (size_t)row_bytes) {
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot read row %d", i);
            break;
        }
        memcpy(&di, row, 4);
        if (di != d) {
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "row %d (0-based) has dimension %d, the first row %d", i, di, d);
            break;
        }
        for (int j = 0; j < d; j++) {
            const unsigned char *p = row + 4 + (size_t)j * es;
            float v;
            int32_t iv;
            if (kind == 'b') {
                v = *p;
            } else if (kind == 'i') {
                memcpy(&iv, p, 4);
                v = (float)iv;
            } else {
                memcpy(&v, p, 4);
            }
            ds->x[(size_t)i * d + j] = v;
        }
    }
    ds->from_bytes = kind == 'b';
    free(row);
    fclose(f);
    return st;
}
