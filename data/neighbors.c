/* Ground-truth neighbour lists from .ivecs and HDF5 files. Both are read as 32-bit integers
 * (not through the float data readers, which would round ids above 2^24). */
#include "data/neighbors.h"
#include "data/readers.h"

#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_K (1 << 20) /* more neighbours per query than anyone stores: a corrupt header */

static dml_status alloc_ids(dml_neighbors *nb, const char *path, long long n, long long k,
                            dml_error *err)
{
    if (n < 1 || k < 1 || n > INT_MAX || k > MAX_K || (size_t)n > SIZE_MAX / sizeof(int32_t) / (size_t)k)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                             "%lld queries of %lld neighbours: expected at least one of each "
                             "(and at most %d neighbours)", n, k, MAX_K);
    nb->ids = malloc((size_t)n * (size_t)k * sizeof(int32_t));
    if (!nb->ids)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory for %lld x %lld ids",
                             n, k);
    nb->n = (int)n;
    nb->k = (int)k;
    return DML_OK;
}

static dml_status read_ivecs(const char *path, dml_neighbors *nb, dml_error *err)
{
    FILE *f = fopen(path, "rb");
    struct stat sb;
    if (!f || fstat(fileno(f), &sb) != 0) {
        if (f)
            fclose(f);
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open the file");
    }
    int32_t k = 0;
    dml_status st = DML_OK;
    unsigned long long size = (unsigned long long)sb.st_size;
    if (fread(&k, 4, 1, f) != 1 || k < 1 || k > MAX_K)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "not an .ivecs file: the first vector's length is %d", k);
    unsigned long long rec = 4 + 4ull * (unsigned long long)(k > 0 ? k : 1);
    if (st == DML_OK && size % rec != 0)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "%llu bytes is not a whole number of vectors of %d ids: truncated, or "
                           "vectors of different lengths", size, k);
    if (st == DML_OK)
        st = alloc_ids(nb, path, (long long)(size / rec), k, err);
    rewind(f);
    for (int i = 0; st == DML_OK && i < nb->n; i++) {
        int32_t ki;
        if (fread(&ki, 4, 1, f) != 1 || fread(nb->ids + (size_t)i * k, 4, (size_t)k, f) != (size_t)k)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "read error at vector %d", i);
        else if (ki != k)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "vector %d (0-based) has %d ids, the first one %d", i, ki, k);
    }
    fclose(f);
    return st;
}

static dml_status read_h5(const char *path, const char *name, dml_neighbors *nb, dml_error *err)
{
    dml_status st = DML_OK;
    H5E_BEGIN_TRY { /* our own messages, not the HDF5 error stack */
        hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT), ds = -1, type = -1, space = -1;
        hsize_t dims[2] = {0, 0};
        if (file < 0)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "not an HDF5 file, or a truncated one");
        else if (H5Lexists(file, name, H5P_DEFAULT) <= 0 ||
                 (ds = H5Dopen2(file, name, H5P_DEFAULT)) < 0)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "no dataset '%s' in the file", name);
        else if ((type = H5Dget_type(ds)) < 0 || (space = H5Dget_space(ds)) < 0 ||
                 H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_ndims(space) != 2 ||
                 H5Sget_simple_extent_dims(space, dims, NULL) < 0)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "'%s': expected a 2-D integer dataset [queries, neighbours]", name);
        else if ((st = alloc_ids(nb, path, (long long)dims[0], (long long)dims[1], err)) == DML_OK &&
                 H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, nb->ids) < 0)
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "cannot read '%s': the file is truncated or corrupt", name);
        if (space >= 0)
            H5Sclose(space);
        if (type >= 0)
            H5Tclose(type);
        if (ds >= 0)
            H5Dclose(ds);
        if (file >= 0)
            H5Fclose(file);
    } H5E_END_TRY;
    return st;
}

/* "F.h5:/name" or "F.hdf5:/name", as the HDF5 data reader reads it: the file and the name. */
static int split_h5(const char *spec, char *file, size_t n, const char **name)
{
    if (!dml_reader_hdf5.probe(spec, file, n) || spec[strlen(file)] != ':' || !spec[strlen(file) + 1])
        return 0;
    *name = spec + strlen(file) + 1;
    return 1;
}

dml_status dml_neighbors_open(const char *spec, dml_neighbors *nb, dml_error *err)
{
    memset(nb, 0, sizeof *nb);
    char file[4096];
    const char *name = NULL;
    struct stat sb;
    dml_status st;
    if (split_h5(spec, file, sizeof file, &name))
        st = stat(file, &sb) != 0 ? dml_error_set(err, DML_ERR_DATA, file, 0, 0, "no such file")
                                  : read_h5(file, name, nb, err);
    else if (dml_reader_probe_suffix(spec, ".ivecs", file, sizeof file))
        st = stat(spec, &sb) != 0 ? dml_error_set(err, DML_ERR_DATA, spec, 0, 0, "no such file")
                                  : read_ivecs(spec, nb, err);
    else
        st = dml_error_set(err, DML_ERR_DATA, spec, 0, 0,
                           "unknown ground-truth format: expected file.ivecs or "
                           "file.h5:/dataset (an integer [queries, neighbours] dataset)");
    for (size_t i = 0; st == DML_OK && i < (size_t)nb->n * (size_t)nb->k; i++)
        if (nb->ids[i] < 0)
            st = dml_error_set(err, DML_ERR_DATA, spec, 0, 0,
                               "query %zu's neighbour %zu (0-based) is %d: expected a database row",
                               i / (size_t)nb->k, i % (size_t)nb->k, nb->ids[i]);
    if (st != DML_OK) {
        dml_neighbors_free(nb);
        return st;
    }
    snprintf(nb->source, sizeof nb->source, "%s", spec);
    return DML_OK;
}

void dml_neighbors_free(dml_neighbors *nb)
{
    free(nb->ids);
    memset(nb, 0, sizeof *nb);
}

int dml_neighbors_beside(const char *queries, char *spec, size_t n)
{
    char file[4096];
    const char *name = NULL;
    if (!split_h5(queries, file, sizeof file, &name) || strcmp(name, "/test") != 0)
        return 0;
    int found = 0;
    struct stat sb;
    if (stat(file, &sb) != 0)
        return 0;
    H5E_BEGIN_TRY {
        hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
        found = f >= 0 && H5Lexists(f, "neighbors", H5P_DEFAULT) > 0;
        if (f >= 0)
            H5Fclose(f);
    } H5E_END_TRY;
    if (found)
        snprintf(spec, n, "%s:/neighbors", file);
    return found;
}
