/* HDF5 data: X [n, d] (float or integer) with optional integer labels y [n]; another dataset
 * named by file.h5:/path (labels from a sibling y); ann-benchmarks files (train / test);
 * paired files (anchor / positive). HDF5 converts the stored type to float on read. */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/readers.h"

static int exists(hid_t file, const char *name)
{
    return H5Lexists(file, name, H5P_DEFAULT) > 0;
}

/* Reads a numeric dataset of rank want_rank into a malloc'ed buffer of mem_type. */
static dml_status read_array(hid_t file, const char *path, const char *name, int want_rank,
                             hid_t mem_type, void **out, hsize_t dims[2], dml_error *err)
{
    dml_status st = DML_OK;
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "no dataset '%s'", name);
    hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
    H5T_class_t cls = H5Tget_class(type);
    int rank = H5Sget_simple_extent_ndims(space);
    dims[0] = dims[1] = 1;
    if (cls != H5T_FLOAT && cls != H5T_INTEGER)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "'%s' is not numeric", name);
    else if (rank != want_rank && !(want_rank == 1 && rank == 2))
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "'%s' has %d dimensions: expected %d",
                           name, rank, want_rank);
    if (st == DML_OK) {
        H5Sget_simple_extent_dims(space, dims, NULL);
        if (want_rank == 1 && rank == 2 && dims[1] != 1)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "'%s' is %llu x %llu: expected one label per row", name,
                               (unsigned long long)dims[0], (unsigned long long)dims[1]);
    }
    if (st == DML_OK) {
        size_t count = (size_t)dims[0] * (want_rank == 2 ? dims[1] : 1);
        *out = malloc((count ? count : 1) * H5Tget_size(mem_type));
        if (!*out)
            st = dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory for '%s'", name);
        else if (count && H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot read '%s'", name);
        if (st != DML_OK && *out) {
            free(*out);
            *out = NULL;
        }
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(ds);
    return st;
}

/* The labels beside a dataset: "/group/X" -> "/group/y". */
static void sibling_labels(const char *name, char *out, size_t n)
{
    const char *slash = strrchr(name, '/');
    snprintf(out, n, "%.*sy", slash ? (int)(slash - name + 1) : 0, name);
}

static dml_status read_rows(hid_t file, const char *path, const char *name, dml_dataset *ds,
                            dml_error *err)
{
    hsize_t dims[2];
    void *x = NULL;
    dml_status st = read_array(file, path, name, 2, H5T_NATIVE_FLOAT, &x, dims, err);
    if (st != DML_OK)
        return st;
    if (dims[0] > INT32_MAX || dims[1] > INT32_MAX) {
        free(x);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "'%s' is too large", name);
    }
    ds->x = x;
    ds->n = (int)dims[0];
    ds->d = (int)dims[1];
    hid_t h = H5Dopen2(file, name, H5P_DEFAULT);
    hid_t t = H5Dget_type(h);
    ds->from_bytes = H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1;
    H5Tclose(t);
    H5Dclose(h);
    char yname[1024];
    sibling_labels(name, yname, sizeof yname);
    if (!exists(file, yname))
        return DML_OK;
    void *y = NULL;
    if ((st = read_array(file, path, yname, 1, H5T_NATIVE_INT32, &y, dims, err)) != DML_OK)
        return st;
    ds->y = y;
    if ((int)dims[0] != ds->n)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "'%s' has %llu labels for %d rows in '%s'", yname,
                             (unsigned long long)dims[0], ds->n, name);
    return DML_OK;
}

static dml_status read_pairs(hid_t file, const char *path, dml_dataset *ds, dml_error *err)
{
    dml_dataset b = {0};
    dml_status st = read_rows(file, path, "anchor", ds, err);
    if (st == DML_OK)
        st = read_rows(file, path, "positive", &b, err);
    if (st == DML_OK && b.n != ds->n)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "%d anchors but %d positives", ds->n, b.n);
    if (st == DML_OK) {
        ds->x_b = b.x;
        ds->d_b = b.d;
        b.x = NULL;
    }
    dml_dataset_free(&b);
    return st;
}

dml_status dml_read_hdf5(const char *path, const char *inner, dml_dataset *ds, dml_error *err)
{
    dml_status st;
    H5E_BEGIN_TRY { /* our own messages, not the HDF5 error stack */
        hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (file < 0) {
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "cannot open: no such file, or not an HDF5 file");
        } else {
            if (inner && !exists(file, inner))
                st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "no dataset '%s'", inner);
            else if (inner)
                st = read_rows(file, path, inner, ds, err);
            else if (exists(file, "X"))
                st = read_rows(file, path, "X", ds, err);
            else if (exists(file, "anchor"))
                st = read_pairs(file, path, ds, err);
            else if (exists(file, "train"))
                st = read_rows(file, path, "train", ds, err);
            else
                st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                   "no dataset X (nor ann-benchmarks' train, nor anchor/positive)");
            H5Fclose(file);
        }
    } H5E_END_TRY;
    return st;
}
