#include "train/checkpoint.h"

#include <hdf5.h>

#include "data/h5_image.h"
#include <stdlib.h>
#include <string.h>

static hid_t mem_type(dml_ckpt_type t)
{
    switch (t) {
    case DML_CKPT_F32: return H5T_NATIVE_FLOAT;
    case DML_CKPT_F64: return H5T_NATIVE_DOUBLE;
    case DML_CKPT_I64: return H5T_NATIVE_INT64;
    case DML_CKPT_U8: return H5T_NATIVE_UINT8;
    }
    return H5T_NATIVE_UINT8;
}

static hid_t file_type(dml_ckpt_type t)
{
    switch (t) {
    case DML_CKPT_F32: return H5T_IEEE_F32LE;
    case DML_CKPT_F64: return H5T_IEEE_F64LE;
    case DML_CKPT_I64: return H5T_STD_I64LE;
    case DML_CKPT_U8: return H5T_STD_U8LE;
    }
    return H5T_STD_U8LE;
}

static int write_entry(hid_t file, const dml_ckpt_entry *e)
{
    hsize_t dims[1] = {e->n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(file, e->name, file_type(e->type), space, H5P_DEFAULT, H5P_DEFAULT,
                          H5P_DEFAULT);
    int ok = ds >= 0 && (e->n == 0 || H5Dwrite(ds, mem_type(e->type), H5S_ALL, H5S_ALL,
                                               H5P_DEFAULT, e->data) >= 0);
    if (ds >= 0)
        H5Dclose(ds);
    H5Sclose(space);
    return ok;
}

static int write_format(hid_t file)
{
    /* fixed-length, as a model's strings: read without libhdf5's global heap (dml info) */
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, sizeof DML_CHECKPOINT_FORMAT);
    H5Tset_strpad(str, H5T_STR_NULLTERM);
    H5Tset_cset(str, H5T_CSET_UTF8);
    hid_t scalar = H5Screate(H5S_SCALAR);
    long long version = DML_CHECKPOINT_VERSION;
    hid_t a = H5Acreate2(file, "format", str, scalar, H5P_DEFAULT, H5P_DEFAULT);
    hid_t b = H5Acreate2(file, "format_version", H5T_STD_I64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && b >= 0 && H5Awrite(a, str, DML_CHECKPOINT_FORMAT) >= 0 &&
             H5Awrite(b, H5T_NATIVE_LLONG, &version) >= 0;
    if (a >= 0)
        H5Aclose(a);
    if (b >= 0)
        H5Aclose(b);
    H5Sclose(scalar);
    H5Tclose(str);
    return ok;
}

typedef struct entry_list {
    const dml_ckpt_entry *e;
    int n;
} entry_list;

static int fill(hid_t file, const void *ctx)
{
    const entry_list *es = ctx;
    int ok = write_format(file);
    for (int i = 0; ok && i < es->n; i++)
        ok = write_entry(file, &es->e[i]);
    return ok;
}

dml_status dml_checkpoint_write(const char *path, const dml_ckpt_entry *entries, int n_entries,
                                dml_error *err)
{
    entry_list es = {entries, n_entries};
    return dml_h5_write_atomic(path, "checkpoint", fill, &es, err);
}

/* The first n values of the dataset, whatever its length. */
static int read_prefix(hid_t ds, const dml_ckpt_entry *e, hsize_t n)
{
    hid_t file_space = H5Dget_space(ds), mem_space = H5Screate_simple(1, &n, NULL);
    hsize_t start = 0;
    int ok = H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, NULL, &n, NULL) >= 0 &&
             H5Dread(ds, mem_type(e->type), mem_space, file_space, H5P_DEFAULT, e->data) >= 0;
    H5Sclose(mem_space);
    H5Sclose(file_space);
    return ok;
}

static dml_status read_entry(hid_t file, const char *path, const dml_ckpt_entry *e, dml_error *err)
{
    hid_t ds = H5Dopen2(file, e->name, H5P_DEFAULT);
    if (ds < 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "the checkpoint has no '%s': it was written by another kind of run",
                             e->name);
    hid_t space = H5Dget_space(ds);
    hssize_t n = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    dml_status st = DML_OK;
    hsize_t n_read = n < (hssize_t)e->n ? (hsize_t)n : e->n;
    if (n != (hssize_t)e->n && !e->any_length)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "'%s' holds %lld values where this run needs %zu: the config no longer "
                           "matches the checkpoint",
                           e->name, (long long)n, e->n);
    else if (n_read > 0 && !read_prefix(ds, e, n_read))
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot read '%s'", e->name);
    H5Dclose(ds);
    return st;
}

/* Opens path read-only and hands the file to read(file, ctx); libhdf5's own error printing off. */
static dml_status with_file(const char *path,
                            dml_status (*read)(hid_t file, const char *path, void *ctx,
                                               dml_error *err),
                            void *ctx, dml_error *err)
{
    dml_status st;
    H5E_BEGIN_TRY {
        hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (file < 0) {
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "cannot open the checkpoint (missing, or not an HDF5 file)");
        } else {
            st = read(file, path, ctx, err);
            H5Fclose(file);
        }
    } H5E_END_TRY;
    return st;
}

typedef struct entries_ctx {
    const dml_ckpt_entry *entries;
    int n;
} entries_ctx;

static dml_status read_entries(hid_t file, const char *path, void *ctx, dml_error *err)
{
    const entries_ctx *e = ctx;
    dml_status st = DML_OK;
    for (int i = 0; st == DML_OK && i < e->n; i++)
        st = read_entry(file, path, &e->entries[i], err);
    return st;
}

dml_status dml_checkpoint_read(const char *path, const dml_ckpt_entry *entries, int n_entries,
                               dml_error *err)
{
    return with_file(path, read_entries, &(entries_ctx){entries, n_entries}, err);
}

typedef struct text_ctx {
    const char *name;
    char **text;
} text_ctx;

static dml_status read_text(hid_t file, const char *path, void *ctx, dml_error *err)
{
    const char *name = ((text_ctx *)ctx)->name;
    char **text = ((text_ctx *)ctx)->text;
    if (H5Lexists(file, name, H5P_DEFAULT) == 0) /* < 0: H5Dopen2 fails and says so below */
        return DML_OK;
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
    hssize_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    dml_status st = DML_OK;
    if (n >= 0 && !buf)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the checkpoint");
    else if (!buf || (n > 0 && H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT,
                                       buf) < 0))
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot read '%s'", name);
    if (space >= 0)
        H5Sclose(space);
    if (ds >= 0)
        H5Dclose(ds);
    if (st != DML_OK) {
        free(buf);
        return st;
    }
    buf[n] = '\0';
    if (strlen(buf) != (size_t)n) { /* a NUL inside: not text this file wrote */
        free(buf);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "'%s' is not text", name);
    }
    *text = buf;
    return DML_OK;
}

dml_status dml_checkpoint_read_text(const char *path, const char *name, char **text,
                                    dml_error *err)
{
    *text = NULL;
    return with_file(path, read_text, &(text_ctx){name, text}, err);
}

/* The root's attribute name when it is one fixed-length string of fewer than n bytes (a
 * variable-length one is not read: its global heap is where libhdf5 crashes on damaged files). */
static int fixed_str(hid_t file, const char *name, char *out, size_t n)
{
    hid_t a = H5Aexists(file, name) > 0 ? H5Aopen(file, name, H5P_DEFAULT) : -1;
    hid_t t = a >= 0 ? H5Aget_type(a) : -1, s = a >= 0 ? H5Aget_space(a) : -1;
    memset(out, 0, n);
    int ok = t >= 0 && s >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) == 0 &&
             H5Tget_size(t) < n && H5Sget_simple_extent_npoints(s) == 1 && H5Aread(a, t, out) >= 0;
    if (s >= 0)
        H5Sclose(s);
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    return ok;
}

int dml_checkpoint_probe(const char *path, dml_checkpoint_summary *s)
{
    memset(s, 0, sizeof *s);
    int is = 0;
    H5E_BEGIN_TRY {
        hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        char format[32];
        H5G_info_t g;
        hsize_t size = 0;
        is = file >= 0 && fixed_str(file, "format", format, sizeof format) &&
             !strcmp(format, DML_CHECKPOINT_FORMAT) && H5Gget_info(file, &g) >= 0 &&
             H5Fget_filesize(file, &size) >= 0;
        if (is) {
            s->n_arrays = (long long)g.nlinks;
            s->bytes = (unsigned long long)size;
            hid_t v = H5Aexists(file, "format_version") > 0
                          ? H5Aopen(file, "format_version", H5P_DEFAULT)
                          : -1;
            if (v < 0 || H5Aread(v, H5T_NATIVE_LLONG, &s->version) < 0)
                s->version = -1;
            if (v >= 0)
                H5Aclose(v);
        }
        if (file >= 0)
            H5Fclose(file);
    } H5E_END_TRY;
    return is;
}
