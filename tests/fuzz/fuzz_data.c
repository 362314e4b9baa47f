/* dml_dataset_open on untrusted files of every non-HDF5 format (HDF5 has fuzz_hdf5.c, so that
 * a fault inside libhdf5 does not stop the search here). The first byte picks the format; for
 * IDX and npy, the bytes after a "#LABELS#" marker are the sibling labels file. A reader must
 * return a status, never crash, leak or read past what it allocated. */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "tests/fuzz/fuzzutil.h"

#define MARK "#LABELS#"

typedef struct format {
    const char *data, *labels; /* file names; labels NULL when the format has none */
    int gzip;                  /* 1: the harness compresses both files (valid gzip streams) */
} format;

static const format FORMATS[] = {
    {"x-images-idx3-ubyte", "x-labels-idx1-ubyte", 0},
    {"x-images-idx3-ubyte.gz", "x-labels-idx1-ubyte.gz", 1},
    {"x-images-idx3-ubyte.gz", "x-labels-idx1-ubyte.gz", 0}, /* raw bytes: broken gzip */
    {"x.npy", "x.labels.npy", 0},
    {"x.fvecs", NULL, 0},
    {"x.ivecs", NULL, 0},
    {"x.bvecs", NULL, 0},
    {"x.csv", NULL, 0},
};
#define N_FORMATS (sizeof FORMATS / sizeof FORMATS[0])

static void put(const format *f, const char *name, const uint8_t *p, size_t n, char *path,
                size_t cap)
{
    if (f->gzip)
        fz_write_gz(name, p, n, path, cap);
    else
        fz_write(name, p, n, path, cap);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const format *f = &FORMATS[data[0] % N_FORMATS];
    const uint8_t *body = data + 1, *labels = NULL;
    size_t n = size - 1, n_labels = 0;
    const uint8_t *mark = f->labels ? memmem(body, n, MARK, strlen(MARK)) : NULL;
    if (mark) {
        labels = mark + strlen(MARK);
        n_labels = (size_t)(body + n - labels);
        n = (size_t)(mark - body);
    }
    char path[1024], lpath[1024];
    put(f, f->data, body, n, path, sizeof path);
    if (labels)
        put(f, f->labels, labels, n_labels, lpath, sizeof lpath);
    dml_dataset ds;
    dml_error err = {0};
    if (dml_dataset_open(path, &ds, &err) == DML_OK &&
        (ds.n < 1 || ds.d < 1 || !ds.x || (ds.y && ds.n_classes < 1)))
        abort(); /* dataset.h's promise for a dataset that opened */
    dml_dataset_free(&ds);
    fz_remove(f->data);
    if (labels)
        fz_remove(f->labels);
    return 0;
}
