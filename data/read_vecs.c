/* TEXMEX .fvecs / .ivecs / .bvecs: each vector is a little-endian int32 dimension followed by
 * that many float32 / int32 / uint8 values; every vector has the same dimension. Unlabelled. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/readers.h"
#include "data/rows.h"

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

/* The file's layout: every record is a 4-byte dimension d and d values of es bytes. */
typedef struct vecs_file {
    FILE *f;
    char kind; /* 'f', 'i' or 'b' of ".?vecs" */
    size_t es;
    int n, d;
    unsigned long long rec; /* bytes a vector */
    uint8_t *buf;           /* [cap] records read at once */
    size_t cap;
} vecs_file;

/* Opens path and checks its size is n whole records of the first one's dimension; on error
 * v->f is closed. */
static dml_status vecs_open(const char *path, vecs_file *v, dml_error *err)
{
    memset(v, 0, sizeof *v);
    v->kind = path[strlen(path) - 5];
    v->es = v->kind == 'b' ? 1 : 4;
    struct stat sb;
    int32_t d = 0;
    dml_status st = DML_OK;
    if (!(v->f = fopen(path, "rb")) || fstat(fileno(v->f), &sb) != 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open the file");
        goto done;
    }
    unsigned long long size = (unsigned long long)sb.st_size;
    if (size == 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "the file is empty");
        goto done;
    }
    if (fread(&d, 4, 1, v->f) != 1 || d < 1 || d > MAX_DIM) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "not a .%cvecs file: the first vector's dimension is %d", v->kind, d);
        goto done;
    }
    v->rec = 4 + (unsigned long long)d * v->es;
    if (size % v->rec != 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "%llu bytes is not a whole number of vectors of dimension %d "
                           "(%llu bytes each): truncated, or vectors of different dimensions",
                           size, d, v->rec);
        goto done;
    }
    if (size / v->rec > INT_MAX) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "too many vectors (%llu)", size / v->rec);
        goto done;
    }
    v->n = (int)(size / v->rec);
    v->d = d;
done:
    if (st != DML_OK && v->f) {
        fclose(v->f);
        v->f = NULL;
    }
    return st;
}

/* x[count, d] = vectors [lo, lo + count), each record's dimension checked. */
static dml_status vecs_read(vecs_file *v, const char *path, int lo, int count, float *x,
                            dml_error *err)
{
    enum { RECORDS = 1024 }; /* read at once */
    size_t want = (size_t)v->rec * (count < RECORDS ? (size_t)count : RECORDS);
    if (want > v->cap) {
        uint8_t *p = realloc(v->buf, want);
        if (!p)
            return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
        v->buf = p;
        v->cap = want;
    }
    if (fseeko(v->f, (off_t)((unsigned long long)lo * v->rec), SEEK_SET) != 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot seek to vector %d", lo);
    for (int at = 0; at < count; at += RECORDS) {
        int k = count - at < RECORDS ? count - at : RECORDS;
        if (fread(v->buf, (size_t)v->rec, (size_t)k, v->f) != (size_t)k)
            return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "read error at vector %d",
                                 lo + at);
        for (int i = 0; i < k; i++) {
            const uint8_t *row = v->buf + (size_t)i * v->rec;
            int32_t di;
            memcpy(&di, row, 4);
            if (di != v->d)
                return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                     "vector %d (0-based) has dimension %d, the first one %d",
                                     lo + at + i, di, v->d);
            convert_row(x + (size_t)(at + i) * (size_t)v->d, row + 4, v->d, v->kind);
        }
    }
    return DML_OK;
}

static void vecs_close(void *impl)
{
    vecs_file *v = impl;
    if (v->f)
        fclose(v->f);
    free(v->buf);
    free(v);
}

/* The values as .fvecs, .ivecs and .bvecs store them. */
static const char *value_type(char kind)
{
    return kind == 'f' ? "float32" : kind == 'i' ? "int32" : "uint8";
}

static dml_status read_vecs(const char *path, const char *inner, dml_dataset *ds,
                            dml_error *err)
{
    (void)inner; /* one data set per file */
    vecs_file v;
    dml_status st = vecs_open(path, &v, err);
    if (st == DML_OK)
        st = dml_dataset_alloc(ds, v.n, v.d, 0, err);
    if (st == DML_OK)
        st = vecs_read(&v, path, 0, v.n, ds->x, err);
    ds->from_bytes = v.kind == 'b';
    ds->value_type = value_type(v.kind);
    if (v.f)
        fclose(v.f);
    free(v.buf);
    return st;
}

static dml_status stream_read(dml_rows *r, int lo, int count, float *x, dml_error *err)
{
    return vecs_read(r->impl, r->file, lo, count, x, err);
}

static dml_status stream_vecs(const char *path, const char *inner, dml_rows *r, dml_error *err)
{
    (void)inner;
    vecs_file *v = malloc(sizeof *v);
    if (!v)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
    dml_status st = vecs_open(path, v, err);
    if (st != DML_OK) {
        free(v);
        return st;
    }
    r->n = v->n;
    r->d = v->d;
    r->from_bytes = v->kind == 'b';
    r->value_type = value_type(v->kind);
    r->impl = v;
    r->read = stream_read;
    r->close = vecs_close;
    return DML_OK;
}

static int probe_vecs(const char *spec, char *file, size_t n)
{
    return dml_reader_probe_suffix(spec, ".fvecs", file, n) ||
           dml_reader_probe_suffix(spec, ".ivecs", file, n) ||
           dml_reader_probe_suffix(spec, ".bvecs", file, n);
}

const dml_reader dml_reader_vecs = {".fvecs/.ivecs/.bvecs", probe_vecs, read_vecs, stream_vecs};
