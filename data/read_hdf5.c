/* HDF5 data: X [n, d] (float32, float64 or uint8) with optional integer labels y [n]; another
 * dataset named by file.h5:/path (labels from a sibling y); ann-benchmarks files (train, or
 * file.h5:/test); paired files (anchor / positive). HDF5 converts the stored type to float. */
#include <hdf5.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/isolate.h"
#include "data/readers.h"
#include "data/rows.h"

static int exists(hid_t file, const char *name)
{
    return H5Lexists(file, name, H5P_DEFAULT) > 0; /* < 0 when a parent group is missing */
}

/* "float32", "uint8", "int64", ... for messages. */
static void type_name(hid_t type, char *buf, size_t n)
{
    size_t bits = H5Tget_size(type) * 8;
    switch (H5Tget_class(type)) {
    case H5T_FLOAT: snprintf(buf, n, "float%zu", bits); break;
    case H5T_INTEGER:
        snprintf(buf, n, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_STRING: snprintf(buf, n, "strings"); break;
    default: snprintf(buf, n, "a non-numeric type"); break;
    }
}

/* An open dataset with its type and shape; ids < 0 when not open. */
typedef struct h5_array {
    hid_t ds, type, space;
    int rank;
    hsize_t dims[H5S_MAX_RANK];
    char type_name[32];
} h5_array;

static dml_status array_open(hid_t file, const char *path, const char *name, h5_array *a,
                             dml_error *err)
{
    a->type = a->space = -1;
    a->ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (a->ds < 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "'%s' is not a dataset", name);
    a->type = H5Dget_type(a->ds);
    a->space = H5Dget_space(a->ds);
    a->rank = H5Sget_simple_extent_ndims(a->space);
    if (a->type < 0 || a->space < 0 || a->rank < 0 || a->rank > H5S_MAX_RANK ||
        H5Sget_simple_extent_dims(a->space, a->dims, NULL) < 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot read the shape of '%s'", name);
    type_name(a->type, a->type_name, sizeof a->type_name);
    return DML_OK;
}

static void array_close(h5_array *a)
{
    if (a->space >= 0)
        H5Sclose(a->space);
    if (a->type >= 0)
        H5Tclose(a->type);
    if (a->ds >= 0)
        H5Dclose(a->ds);
    a->ds = a->type = a->space = -1;
}

/* A dataset's declared shape costs nothing in the file, and HDF5 returns the fill value for
 * values never written: refuse one with no stored values, a chunked one with chunks never
 * written (compressed or not), or a contiguous one stored shorter than its shape, before
 * allocating what the shape promises. */
static dml_status check_stored(const h5_array *a, const char *path, const char *name,
                               unsigned long long count, dml_error *err)
{
    H5D_space_status_t status;
    if (H5Dget_space_status(a->ds, &status) < 0 || status == H5D_SPACE_STATUS_NOT_ALLOCATED)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "'%s' has no stored values (never written)", name);
    hid_t dcpl = H5Dget_create_plist(a->ds);
    int chunked = dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED;
    hsize_t cdims[H5S_MAX_RANK], written = 0;
    unsigned long long chunks = 1;
    if (chunked && H5Pget_chunk(dcpl, a->rank, cdims) == a->rank) {
        for (int i = 0; i < a->rank; i++)
            chunks *= cdims[i] ? (a->dims[i] + cdims[i] - 1) / cdims[i] : 1;
    } else {
        chunked = 0;
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (chunked) {
        if (H5Dget_num_chunks(a->ds, a->space, &written) < 0 || written < chunks)
            return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                 "'%s' has %llu of its %llu chunks written: the rest was never "
                                 "written", name, (unsigned long long)written, chunks);
        return DML_OK;
    }
    unsigned long long stored = H5Dget_storage_size(a->ds),
                       need = count * (unsigned long long)H5Tget_size(a->type);
    if (stored < need)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "'%s' stores %llu of the %llu bytes its shape needs: truncated",
                             name, stored, need);
    return DML_OK;
}

/* Opens rows [n, d] stored as float32, float64 or uint8 and checks their shape and storage;
 * *from_bytes when stored as uint8, *value_type which of the three. On error a is closed. */
static dml_status matrix_open(hid_t file, const char *path, const char *name, h5_array *a, int *n,
                              int *d, int *from_bytes, const char **value_type, dml_error *err)
{
    dml_status st = array_open(file, path, name, a, err);
    if (st != DML_OK)
        goto fail;
    H5T_class_t cls = H5Tget_class(a->type);
    size_t size = H5Tget_size(a->type);
    int is_byte = cls == H5T_INTEGER && size == 1 && H5Tget_sign(a->type) == H5T_SGN_NONE;
    if (!is_byte && !(cls == H5T_FLOAT && (size == 4 || size == 8))) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "'%s' holds %s: expected float32, float64 or uint8", name, a->type_name);
        goto fail;
    }
    if (a->rank != 2) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "'%s' has %d dimensions: expected 2 ([rows, features])", name, a->rank);
        goto fail;
    }
    unsigned long long rows = a->dims[0], cols = a->dims[1];
    if (rows == 0 || cols == 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "'%s' is empty (%llu x %llu)", name,
                           rows, cols);
        goto fail;
    }
    if (rows > INT_MAX || cols > INT_MAX || rows > SIZE_MAX / sizeof(float) / cols) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "'%s' is too large (%llu x %llu)", name,
                           rows, cols);
        goto fail;
    }
    if ((st = check_stored(a, path, name, rows * cols, err)) != DML_OK)
        goto fail;
    *n = (int)rows;
    *d = (int)cols;
    *from_bytes = is_byte;
    *value_type = is_byte ? "uint8" : size == 4 ? "float32" : "float64";
    return DML_OK;
fail:
    array_close(a);
    return st;
}

/* Rows [n, d] as floats; *from_bytes and *value_type as matrix_open's. */
static dml_status read_matrix(hid_t file, const char *path, const char *name, float **x, int *n,
                              int *d, int *from_bytes, const char **value_type, dml_error *err)
{
    h5_array a;
    dml_status st = matrix_open(file, path, name, &a, n, d, from_bytes, value_type, err);
    if (st != DML_OK)
        return st;
    if (!(*x = malloc((size_t)*n * (size_t)*d * sizeof(float)))) {
        st = dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory for '%s' (%d x %d)",
                           name, *n, *d);
    } else if (H5Dread(a.ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *x) < 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "cannot read '%s': the file is truncated or corrupt", name);
    }
    array_close(&a);
    return st;
}

/* Integer labels [n] (or [n, 1]) for the n rows of xname. */
static dml_status read_labels(hid_t file, const char *path, const char *name, const char *xname,
                              int n, int32_t **y, dml_error *err)
{
    int64_t *v = NULL;
    h5_array a;
    dml_status st = array_open(file, path, name, &a, err);
    if (st != DML_OK)
        goto done;
    if (H5Tget_class(a.type) != H5T_INTEGER) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "'%s' holds %s: expected integer labels", name, a.type_name);
        goto done;
    }
    if (a.rank != 1 && !(a.rank == 2 && a.dims[1] == 1)) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "'%s' has %d dimensions: expected one label per row ([rows])", name,
                           a.rank);
        goto done;
    }
    if (a.dims[0] != (hsize_t)n) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "'%s' has %llu labels but '%s' has %d rows", name,
                           (unsigned long long)a.dims[0], xname, n);
        goto done;
    }
    if ((st = check_stored(&a, path, name, (unsigned long long)n, err)) != DML_OK)
        goto done;
    v = malloc((size_t)n * sizeof *v);
    *y = malloc((size_t)n * sizeof **y);
    if (!v || !*y) {
        st = dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory for '%s'", name);
        goto done;
    }
    if (H5Dread(a.ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "cannot read '%s': the file is truncated or corrupt", name);
        goto done;
    }
    st = dml_labels_narrow(*y, v, (size_t)n, path, err);
done:
    free(v);
    array_close(&a);
    return st;
}

/* The labels beside a dataset: "/group/X" -> "/group/y", "X" -> "y". */
static void sibling_labels(const char *name, char *out, size_t n)
{
    const char *slash = strrchr(name, '/');
    snprintf(out, n, "%.*sy", slash ? (int)(slash - name + 1) : 0, name);
}

static dml_status read_rows(hid_t file, const char *path, const char *name, dml_dataset *ds,
                            dml_error *err)
{
    dml_status st = read_matrix(file, path, name, &ds->x, &ds->n, &ds->d, &ds->from_bytes,
                                 &ds->value_type, err);
    char yname[1024];
    sibling_labels(name, yname, sizeof yname);
    if (st == DML_OK && strcmp(yname, name) != 0 && exists(file, yname))
        st = read_labels(file, path, yname, name, ds->n, &ds->y, err);
    return st;
}

static dml_status read_pairs(hid_t file, const char *path, dml_dataset *ds, dml_error *err)
{
    dml_status st = read_rows(file, path, "anchor", ds, err);
    int n_b = 0;
    if (st == DML_OK)
        st = read_matrix(file, path, "positive", &ds->x_b, &n_b, &ds->d_b, &ds->from_bytes_b,
                         &ds->value_type_b, err);
    if (st == DML_OK && n_b != ds->n)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "'anchor' has %d rows but 'positive' has %d: expected one pair per row",
                           ds->n, n_b);
    return st;
}

typedef struct names {
    char buf[256];
    int count;
} names;

static herr_t add_name(hid_t group, const char *name, const H5L_info_t *info, void *ctx)
{
    (void)group;
    (void)info;
    names *n = ctx;
    size_t used = strlen(n->buf);
    snprintf(n->buf + used, sizeof n->buf - used, "%s'%s'", n->count++ ? ", " : "", name);
    return 0;
}

/* The rows a spec names: inner, else X, else the pair anchor/positive (*name NULL), else
 * ann-benchmarks' train. */
static dml_status resolve(hid_t file, const char *path, const char *inner, const char **name,
                          dml_error *err)
{
    *name = NULL;
    if (inner) {
        *name = inner;
        return exists(file, inner) ? DML_OK
                                   : dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                                   "no dataset '%s' in the file", inner);
    }
    if (exists(file, "X")) {
        *name = "X";
        return DML_OK;
    }
    if (exists(file, "anchor") || exists(file, "positive")) {
        if (!exists(file, "anchor") || !exists(file, "positive"))
            return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                 "a paired file needs both 'anchor' and 'positive' datasets");
        return DML_OK;
    }
    if (exists(file, "train")) {
        *name = "train";
        return DML_OK;
    }
    names found = {{0}, 0};
    hsize_t at = 0;
    H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, &at, add_name, &found);
    return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                         "no dataset 'X' (nor 'anchor'/'positive', nor ann-benchmarks' 'train'); "
                         "the file has %s", found.count ? found.buf : "nothing at its root");
}

static dml_status read_file(hid_t file, const char *path, const char *inner, dml_dataset *ds,
                            dml_error *err)
{
    const char *name;
    dml_status st = resolve(file, path, inner, &name, err);
    if (st != DML_OK)
        return st;
    return name ? read_rows(file, path, name, ds, err) : read_pairs(file, path, ds, err);
}

/* ---------------------------------------------------------------------------------------------
 * libhdf5 1.10 can crash on a damaged file's metadata (a corrupt local heap: SIGSEGV inside
 * H5Lexists) or fill gigabytes before it answers, and dml cannot see either coming without
 * parsing HDF5's object headers itself. A data file may come from anywhere, so the reader's
 * metadata calls (open, the dataset looked up, its type, shape and storage, its chunk index, the
 * labels' likewise) are first made in a child process with a time and a memory limit, and only a
 * file they pass is opened here. A file they refuse is refused with the child's message (which
 * a memory limit met inside libhdf5 may have turned into another refusal: either way a damaged
 * file). */

#define WALK_SECONDS 60
#define WALK_MEMORY ((size_t)256 << 20) /* a metadata walk needs a few MB; libhdf5 on damaged files, gigabytes */

typedef struct walk_args {
    const char *path, *inner;
} walk_args;

/* The labels beside rows name, if any: their type and storage, not their values. */
static dml_status walk_labels(hid_t file, const char *path, const char *name, int n,
                              dml_error *err)
{
    char yname[1024];
    sibling_labels(name, yname, sizeof yname);
    if (strcmp(yname, name) == 0 || !exists(file, yname))
        return DML_OK;
    h5_array a;
    dml_status st = array_open(file, path, yname, &a, err);
    if (st == DML_OK && a.rank >= 1 && a.dims[0] == (hsize_t)n)
        st = check_stored(&a, path, yname, (unsigned long long)n, err);
    array_close(&a);
    return st;
}

static dml_status walk_metadata(const void *ctx, dml_error *err)
{
    const walk_args *w = ctx;
    dml_status st;
    H5E_BEGIN_TRY {
        const char *name = NULL;
        hid_t file = H5Fopen(w->path, H5F_ACC_RDONLY, H5P_DEFAULT);
        st = file < 0 ? dml_error_set(err, DML_ERR_DATA, w->path, 0, 0,
                                      "not an HDF5 file, or a truncated one")
                      : resolve(file, w->path, w->inner, &name, err);
        static const char *const views[2] = {"anchor", "positive"};
        for (int v = 0; st == DML_OK && v < (name ? 1 : 2); v++) {
            const char *x = name ? name : views[v];
            h5_array a;
            int n, d, bytes;
            const char *type;
            if ((st = matrix_open(file, w->path, x, &a, &n, &d, &bytes, &type, err)) == DML_OK) {
                array_close(&a);
                st = walk_labels(file, w->path, x, n, err);
            }
        }
        if (file >= 0)
            H5Fclose(file);
    } H5E_END_TRY;
    return st;
}

static dml_status check_in_child(const char *path, const char *inner, dml_error *err)
{
    walk_args w = {path, inner};
    return dml_isolated(walk_metadata, &w, WALK_SECONDS, WALK_MEMORY, path,
                        "libhdf5, reading the file's metadata,", err);
}

static dml_status read_hdf5(const char *path, const char *inner, dml_dataset *ds, dml_error *err)
{
    dml_status st = check_in_child(path, inner, err);
    if (st != DML_OK)
        return st;
    H5E_BEGIN_TRY { /* our own messages, not the HDF5 error stack */
        hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (file < 0) {
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "not an HDF5 file, or a truncated one");
        } else {
            st = read_file(file, path, inner, ds, err);
            H5Fclose(file);
        }
    } H5E_END_TRY;
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Streaming: the file and its rows stay open, and each range is one hyperslab read. */

typedef struct h5_stream {
    hid_t file;
    h5_array a;
    char name[1024];
} h5_stream;

static void stream_close(void *impl)
{
    h5_stream *s = impl;
    H5E_BEGIN_TRY {
        array_close(&s->a);
        H5Fclose(s->file);
    } H5E_END_TRY;
    free(s);
}

static dml_status stream_read(dml_rows *r, int lo, int count, float *x, dml_error *err)
{
    h5_stream *s = r->impl;
    dml_status st = DML_OK;
    H5E_BEGIN_TRY {
        hsize_t start[2] = {(hsize_t)lo, 0}, size[2] = {(hsize_t)count, (hsize_t)r->d};
        hid_t mem = H5Screate_simple(2, size, NULL);
        if (mem < 0 || H5Sselect_hyperslab(s->a.space, H5S_SELECT_SET, start, NULL, size, NULL) < 0 ||
            H5Dread(s->a.ds, H5T_NATIVE_FLOAT, mem, s->a.space, H5P_DEFAULT, x) < 0)
            st = dml_error_set(err, DML_ERR_DATA, r->file, 0, 0,
                               "cannot read rows %d..%d of '%s': the file is truncated or corrupt",
                               lo, lo + count - 1, s->name);
        if (mem >= 0)
            H5Sclose(mem);
    } H5E_END_TRY;
    return st;
}

/* Paired files (two views) are left to be read whole: r->read stays NULL. */
static dml_status stream_hdf5(const char *path, const char *inner, dml_rows *r, dml_error *err)
{
    h5_stream *s = calloc(1, sizeof *s);
    if (!s)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
    s->a.ds = s->a.type = s->a.space = -1;
    dml_status st = check_in_child(path, inner, err);
    if (st != DML_OK) {
        free(s);
        return st;
    }
    H5E_BEGIN_TRY {
        const char *name = NULL;
        s->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (s->file < 0)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "not an HDF5 file, or a truncated one");
        else
            st = resolve(s->file, path, inner, &name, err);
        if (st == DML_OK && name) {
            snprintf(s->name, sizeof s->name, "%s", name);
            st = matrix_open(s->file, path, name, &s->a, &r->n, &r->d, &r->from_bytes,
                             &r->value_type, err);
            char yname[1024];
            sibling_labels(name, yname, sizeof yname);
            if (st == DML_OK && strcmp(yname, name) != 0 && exists(s->file, yname))
                st = read_labels(s->file, path, yname, name, r->n, &r->y, err);
        }
        if (st != DML_OK || !name) {
            array_close(&s->a);
            if (s->file >= 0)
                H5Fclose(s->file);
            free(s);
            s = NULL;
        }
    } H5E_END_TRY;
    if (s) {
        r->impl = s;
        r->read = stream_read;
        r->close = stream_close;
    }
    return st;
}

/* "file.h5:/path" names a dataset inside an HDF5 file; any other ':' belongs to the path. */
static int probe_hdf5(const char *spec, char *file, size_t n)
{
    static const char *const exts[] = {".h5:", ".hdf5:"};
    for (int i = 0; i < 2; i++) {
        const char *at = strstr(spec, exts[i]);
        if (at) {
            size_t len = (size_t)(at - spec) + strlen(exts[i]) - 1; /* up to the ':' */
            snprintf(file, n, "%.*s", (int)len, spec);
            return 1;
        }
    }
    return dml_reader_probe_suffix(spec, ".h5", file, n) ||
           dml_reader_probe_suffix(spec, ".hdf5", file, n);
}

const dml_reader dml_reader_hdf5 = {".h5[:/dataset], .hdf5", probe_hdf5, read_hdf5, stream_hdf5};
