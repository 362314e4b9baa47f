/* NumPy .npy (format versions 1 to 3): the magic "\x93NUMPY", a version, a little-endian header
 * length (uint16 in v1, uint32 after), a Python dict literal with descr, fortran_order and shape,
 * then the values. Rows are float32, float64 or uint8 [n, d] in C order; labels come from a
 * sibling <stem>.labels.npy of int32 or int64 [n] when one exists. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/readers.h"
#include "data/rows.h"

#define NPY_MAX_RANK 8
#define CHUNK 65536 /* values converted per read */

typedef struct npy_array {
    FILE *f;          /* positioned at the first value */
    char descr[16];   /* "<f4", "<f8", "|u1", "<i4", "<i8", ... */
    int fortran;
    int rank;
    unsigned long long shape[NPY_MAX_RANK];
    size_t count, elem; /* values, bytes per value */
} npy_array;

/* The value of 'key' in the header dict, or NULL. */
static const char *dict_value(const char *text, const char *key)
{
    char quoted[32];
    for (int q = 0; q < 2; q++) {
        snprintf(quoted, sizeof quoted, q ? "\"%s\"" : "'%s'", key);
        const char *p = strstr(text, quoted);
        if (!p)
            continue;
        p += strlen(quoted);
        while (isspace((unsigned char)*p))
            p++;
        if (*p++ != ':')
            return NULL;
        while (isspace((unsigned char)*p))
            p++;
        return p;
    }
    return NULL;
}

/* "(3, 4)", "(3,)", "()": returns 1 and fills rank/shape when well formed. */
static int parse_shape(const char *p, npy_array *a)
{
    if (*p++ != '(')
        return 0;
    a->rank = 0;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == ')')
            return 1;
        if (!isdigit((unsigned char)*p) || a->rank == NPY_MAX_RANK)
            return 0;
        char *end;
        a->shape[a->rank++] = strtoull(p, &end, 10);
        p = end;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == ',')
            p++;
        else if (*p != ')')
            return 0;
    }
}

static dml_status parse_header(const char *text, const char *path, npy_array *a, dml_error *err)
{
    const char *descr = dict_value(text, "descr"), *order = dict_value(text, "fortran_order"),
               *shape = dict_value(text, "shape");
    if (!descr || !order || !shape || (*descr != '\'' && *descr != '"'))
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "malformed .npy header (expected descr, fortran_order and shape): %s",
                             DML_SHOWN(text));
    size_t len = strcspn(descr + 1, "'\"");
    snprintf(a->descr, sizeof a->descr, "%.*s", (int)(len < 15 ? len : 15), descr + 1);
    a->fortran = strncmp(order, "True", 4) == 0;
    if (!a->fortran && strncmp(order, "False", 5) != 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "malformed fortran_order in: %s",
                             DML_SHOWN(text));
    if (!parse_shape(shape, a))
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "malformed shape in: %s",
                             DML_SHOWN(text));
    return DML_OK;
}

/* The dtypes read: uint8, float32 and float64 rows; int32 and int64 labels. 0 for others. */
static size_t elem_size(const char *descr)
{
    static const struct { const char *descr; size_t size; } known[] = {
        {"|u1", 1}, {"<u1", 1}, {"<f4", 4}, {"<f8", 8}, {"<i4", 4}, {"<i8", 8}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(descr, known[i].descr))
            return known[i].size;
    return 0;
}

/* Opens path and reads its header; checks the file holds exactly the values it promises. */
static dml_status npy_open(const char *path, npy_array *a, dml_error *err)
{
    memset(a, 0, sizeof *a);
    char *text = NULL;
    dml_status st = DML_OK;
    struct stat sb;
    if (!(a->f = fopen(path, "rb")) || fstat(fileno(a->f), &sb) != 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open the file");
    uint8_t magic[8], b[4] = {0};
    if (fread(magic, 1, 8, a->f) != 8 || memcmp(magic, "\x93NUMPY", 6) != 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "not a .npy file (bad magic string)");
    if (magic[6] < 1 || magic[6] > 3)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             ".npy format version %d: expected 1 to 3", magic[6]);
    size_t wide = magic[6] >= 2 ? 4 : 2;
    if (fread(b, 1, wide, a->f) != wide)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "truncated .npy header");
    size_t len = (size_t)b[0] | (size_t)b[1] << 8 | (size_t)b[2] << 16 | (size_t)b[3] << 24;
    if (len > (size_t)sb.st_size || !(text = malloc(len + 1)) || fread(text, 1, len, a->f) != len) {
        free(text);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "truncated .npy header");
    }
    text[len] = '\0';
    st = parse_header(text, path, a, err);
    free(text);
    if (st != DML_OK)
        return st;
    a->elem = elem_size(a->descr);
    a->count = 1;
    for (int i = 0; i < a->rank; i++) {
        if (a->shape[i] && a->count > SIZE_MAX / 8 / a->shape[i])
            return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "the shape is too large");
        a->count *= (size_t)a->shape[i];
    }
    unsigned long long have = (unsigned long long)sb.st_size - (8 + wide + len),
                       want = (unsigned long long)a->count * a->elem;
    if (a->elem && want != have)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "%s: the header promises %zu values (%llu bytes), the file has "
                             "%llu bytes of data", have < want ? "truncated" : "wrong size",
                             a->count, want, have);
    return DML_OK;
}

static void describe_shape(const npy_array *a, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < a->rank && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%llu%s", a->shape[i],
                                 a->rank == 1 ? "," : i + 1 < a->rank ? ", " : "");
    if (used < n)
        snprintf(buf + used, n - used, ")");
}

/* One value: integers exactly in *iv (and as a double), floats as a double. */
static double value_at(const npy_array *a, const uint8_t *p, int64_t *iv)
{
    float f;
    double v;
    int32_t i4;
    *iv = 0;
    if (a->descr[1] == 'f' && a->elem == 4) {
        memcpy(&f, p, 4);
        return f;
    }
    if (a->descr[1] == 'f') {
        memcpy(&v, p, 8);
        return v;
    }
    if (a->elem == 1) {
        *iv = *p;
    } else if (a->elem == 4) {
        memcpy(&i4, p, 4);
        *iv = i4;
    } else {
        memcpy(iv, p, 8);
    }
    return (double)*iv;
}

/* Reads all values, converted, into out: float[count] when as_float, else int64[count]; chunk
 * holds CHUNK values as stored. */
static dml_status npy_convert(npy_array *a, const char *path, int as_float, void *out,
                              uint8_t *chunk, dml_error *err)
{
    for (size_t at = 0; at < a->count; at += CHUNK) {
        size_t k = a->count - at < CHUNK ? a->count - at : CHUNK;
        if (fread(chunk, a->elem, k, a->f) != k)
            return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "read error");
        for (size_t i = 0; i < k; i++) {
            int64_t iv;
            double v = value_at(a, chunk + i * a->elem, &iv);
            if (as_float)
                ((float *)out)[at + i] = (float)v;
            else
                ((int64_t *)out)[at + i] = iv;
        }
    }
    return DML_OK;
}

/* npy_convert with a chunk of its own, for a file read once. */
static dml_status npy_read(npy_array *a, const char *path, int as_float, void *out, dml_error *err)
{
    uint8_t *chunk = malloc(CHUNK * a->elem);
    if (!chunk)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
    dml_status st = npy_convert(a, path, as_float, out, chunk, err);
    free(chunk);
    return st;
}

static dml_status read_labels(const char *lpath, const char *xpath, dml_dataset *ds, dml_error *err)
{
    npy_array a;
    dml_status st = npy_open(lpath, &a, err);
    char shape[128];
    describe_shape(&a, shape, sizeof shape);
    int is_int = a.descr[1] == 'i' && (a.elem == 4 || a.elem == 8);
    if (st == DML_OK && !is_int)
        st = dml_error_set(err, DML_ERR_DATA, lpath, 0, 0,
                           "dtype '%s': expected integer labels, int32 ('<i4') or int64 ('<i8')",
                           a.descr);
    if (st == DML_OK && (a.count != (size_t)ds->n || a.rank < 1 || a.rank > 2 ||
                         (a.rank == 2 && a.shape[1] != 1)))
        st = dml_error_set(err, DML_ERR_DATA, lpath, 0, 0,
                           "shape %s: expected one label for each of the %d rows of %s", shape,
                           ds->n, xpath);
    int64_t *v = NULL;
    if (st == DML_OK && (!(v = malloc((size_t)ds->n * sizeof *v)) ||
                         !(ds->y = malloc((size_t)ds->n * sizeof *ds->y))))
        st = dml_error_set(err, DML_ERR_NOMEM, lpath, 0, 0, "out of memory");
    if (st == DML_OK)
        st = npy_read(&a, lpath, 0, v, err);
    if (st == DML_OK)
        st = dml_labels_narrow(ds->y, v, (size_t)ds->n, lpath, err);
    free(v);
    if (a.f)
        fclose(a.f);
    return st;
}

/* Opens path as rows [n, d] of float32, float64 or uint8 in C order; on error a->f is closed. */
static dml_status npy_open_rows(const char *path, npy_array *a, dml_error *err)
{
    dml_status st = npy_open(path, a, err);
    char shape[128];
    describe_shape(a, shape, sizeof shape);
    int is_byte = !strcmp(a->descr, "|u1") || !strcmp(a->descr, "<u1");
    if (st == DML_OK && !is_byte && strcmp(a->descr, "<f4") != 0 && strcmp(a->descr, "<f8") != 0)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "dtype '%s': expected float32 ('<f4'), float64 ('<f8') or uint8 ('|u1')",
                           a->descr);
    if (st == DML_OK && a->fortran)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "a Fortran-order array: expected C order (np.ascontiguousarray)");
    if (st == DML_OK && a->rank != 2)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "shape %s: expected 2 dimensions "
                           "([rows, features])", shape);
    if (st == DML_OK && (a->shape[0] == 0 || a->shape[1] == 0))
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "shape %s: the array is empty", shape);
    if (st == DML_OK && (a->shape[0] > INT_MAX || a->shape[1] > INT_MAX))
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "shape %s: too large", shape);
    if (st != DML_OK && a->f) {
        fclose(a->f);
        a->f = NULL;
    }
    return st;
}

/* The rows' values as stored (npy_open_rows takes uint8, float32 and float64). */
static const char *value_type(const npy_array *a)
{
    return a->elem == 1 ? "uint8" : a->elem == 4 ? "float32" : "float64";
}

/* The labels file beside path: <stem>.labels.npy, read when it exists. */
static dml_status read_sibling_labels(const char *path, dml_dataset *ds, dml_error *err)
{
    char lpath[4096];
    snprintf(lpath, sizeof lpath, "%.*s.labels.npy", (int)(strlen(path) - 4), path);
    return dml_file_exists(lpath) ? read_labels(lpath, path, ds, err) : DML_OK;
}

static dml_status read_npy(const char *path, const char *inner, dml_dataset *ds,
                           dml_error *err)
{
    (void)inner; /* one data set per file */
    npy_array a;
    dml_status st = npy_open_rows(path, &a, err);
    if (st == DML_OK)
        st = dml_dataset_alloc(ds, (int)a.shape[0], (int)a.shape[1], 0, err);
    if (st == DML_OK)
        st = npy_read(&a, path, 1, ds->x, err);
    if (a.f)
        fclose(a.f);
    ds->from_bytes = a.elem == 1;
    ds->value_type = value_type(&a);
    if (st == DML_OK)
        st = read_sibling_labels(path, ds, err);
    return st;
}

/* Streaming: each range is one read at its offset, converted in CHUNK-value pieces through a
 * chunk allocated once, since ranges are read while training. */
typedef struct npy_stream {
    npy_array a;
    long long data_at; /* the file offset of the first value */
    uint8_t *chunk;    /* CHUNK values as stored */
} npy_stream;

static void stream_close(void *impl)
{
    npy_stream *s = impl;
    fclose(s->a.f);
    free(s->chunk);
    free(s);
}

static dml_status stream_read(dml_rows *r, int lo, int count, float *x, dml_error *err)
{
    npy_stream *s = r->impl;
    long long at = s->data_at + (long long)lo * r->d * (long long)s->a.elem;
    s->a.count = (size_t)count * (size_t)r->d;
    if (fseeko(s->a.f, (off_t)at, SEEK_SET) != 0)
        return dml_error_set(err, DML_ERR_DATA, r->file, 0, 0, "cannot seek to row %d", lo);
    return npy_convert(&s->a, r->file, 1, x, s->chunk, err);
}

static dml_status stream_npy(const char *path, const char *inner, dml_rows *r, dml_error *err)
{
    (void)inner;
    npy_stream *s = calloc(1, sizeof *s);
    if (!s)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
    dml_status st = npy_open_rows(path, &s->a, err);
    dml_dataset labels = {0};
    if (st == DML_OK) {
        s->data_at = (long long)ftello(s->a.f);
        r->n = labels.n = (int)s->a.shape[0];
        r->d = (int)s->a.shape[1];
        r->from_bytes = s->a.elem == 1;
        r->value_type = value_type(&s->a);
        if (!(s->chunk = malloc(CHUNK * s->a.elem)))
            st = dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
    }
    if (st == DML_OK)
        st = read_sibling_labels(path, &labels, err);
    if (st != DML_OK) {
        if (s->a.f)
            fclose(s->a.f);
        free(s->chunk);
        free(s);
        free(labels.y);
        return st;
    }
    r->y = labels.y;
    r->impl = s;
    r->read = stream_read;
    r->close = stream_close;
    return DML_OK;
}

static int probe_npy(const char *spec, char *file, size_t n)
{
    return dml_reader_probe_suffix(spec, ".npy", file, n);
}

const dml_reader dml_reader_npy = {".npy", probe_npy, read_npy, stream_npy};
