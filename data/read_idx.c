/* IDX files (MNIST, Fashion-MNIST): a big-endian header (magic 0x0000 type ndim, then ndim
 * uint32 sizes) and the raw values. zlib reads .gz and plain files alike. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/readers.h"

#define IDX_UBYTE 0x08

typedef struct idx_file {
    int ndim;
    uint32_t dims[4];
    uint8_t *values; /* [prod(dims)] */
} idx_file;

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static dml_status read_idx_file(const char *path, int want_ndim, idx_file *f, dml_error *err)
{
    memset(f, 0, sizeof *f);
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open: no such file or not readable");
    uint8_t head[4 + 4 * 4];
    dml_status st = DML_OK;
    if (gzread(gz, head, 4) != 4 || head[0] != 0 || head[1] != 0 || head[2] != IDX_UBYTE ||
        head[3] != want_ndim) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "not an IDX file of unsigned bytes with %d dimensions (bad magic number)",
                           want_ndim);
        goto done;
    }
    f->ndim = want_ndim;
    if (gzread(gz, head + 4, (unsigned)(4 * want_ndim)) != 4 * want_ndim) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "truncated IDX header");
        goto done;
    }
    size_t total = 1;
    for (int i = 0; i < want_ndim; i++) {
        f->dims[i] = be32(head + 4 + 4 * i);
        total *= f->dims[i];
    }
    if (total > ((size_t)1 << 34) || !(f->values = malloc(total ? total : 1))) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "IDX sizes too large (%zu values)", total);
        goto done;
    }
    if ((size_t)gzread(gz, f->values, (unsigned)total) != total)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "truncated: the header promises %zu values", total);
done:
    gzclose(gz);
    if (st != DML_OK) {
        free(f->values);
        f->values = NULL;
    }
    return st;
}

/* "…/train-images-idx3-ubyte.gz" -> "…/train-labels-idx1-ubyte.gz" */
static int labels_path(const char *images, char *out, size_t n)
{
    const char *at = strstr(images, "images-idx3-ubyte");
    if (!at)
        return 0;
    snprintf(out, n, "%.*slabels-idx1-ubyte%s", (int)(at - images), images,
             at + strlen("images-idx3-ubyte"));
    return 1;
}

dml_status dml_read_idx(const char *images_path, dml_dataset *ds, dml_error *err)
{
    idx_file img, lab;
    dml_status st = read_idx_file(images_path, 3, &img, err);
    if (st != DML_OK)
        return st;
    char lpath[4096];
    int labelled = labels_path(images_path, lpath, sizeof lpath);
    if (labelled && (st = read_idx_file(lpath, 1, &lab, err)) != DML_OK) {
        free(img.values);
        return st;
    }
    if (labelled && lab.dims[0] != img.dims[0]) {
        st = dml_error_set(err, DML_ERR_DATA, lpath, 0, 0, "%u labels for %u images in %s",
                           lab.dims[0], img.dims[0], images_path);
        goto done;
    }
    int n = (int)img.dims[0], d = (int)(img.dims[1] * img.dims[2]);
    if ((st = dml_dataset_alloc(ds, n, d, labelled, err)) != DML_OK)
        goto done;
    for (size_t i = 0; i < (size_t)n * d; i++)
        ds->x[i] = (float)img.values[i];
    for (int i = 0; labelled && i < n; i++)
        ds->y[i] = lab.values[i];
    ds->from_bytes = 1;
done:
    free(img.values);
    if (labelled)
        free(lab.values);
    return st;
}
