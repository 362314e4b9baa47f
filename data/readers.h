/* The readers behind dml_dataset_open (data/ only), one file each (data/read_<format>.c), all
 * registered in one table (data/readers.c): adding a format is one file and one row.
 *
 * A reader's probe says whether a spec is its own and which file it reads (the spec up to
 * ":/dataset" for HDF5, the spec itself for the others). Its read fills x, n, d (y when the
 * file has labels, already range-checked; x_b for paired files) and from_bytes, or returns an
 * error naming its file with ds left for dml_dataset_open to free; dml_dataset_open checks
 * that the file exists before, and emptiness and finiteness after. */
#ifndef DML_DATA_READERS_H
#define DML_DATA_READERS_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/fileio.h"

/* Every reader takes the files' little-endian numbers as they are. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "dml's readers assume a little-endian machine"
#endif

/* Where Debian's dataset-fashion-mnist package puts the files. */
#define DML_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

struct dml_rows;

typedef struct dml_reader {
    const char *forms; /* the specs it reads, for the "unknown data format" message */
    /* 1 when spec is this format's, with the file it reads in file[n]; else 0 */
    int (*probe)(const char *spec, char *file, size_t n);
    /* inner: what follows "file:" in the spec (a dataset path inside an HDF5 file), or NULL */
    dml_status (*read)(const char *file, const char *inner, dml_dataset *ds, dml_error *err);
    /* Optional: opens the file for reading ranges (data/rows.h): sets r's n, d, y, from_bytes
     * and its read, impl and close, or leaves read NULL for a file it reads only whole (a paired
     * HDF5 file). NULL: the format is always read whole. */
    dml_status (*stream)(const char *file, const char *inner, struct dml_rows *r, dml_error *err);
} dml_reader;

extern const dml_reader dml_reader_hdf5, dml_reader_idx, dml_reader_npy, dml_reader_vecs,
    dml_reader_csv;

/* The table, in probing order; NULL-terminated. */
extern const dml_reader *const dml_readers[];

/* The probe of a reader known by its file name's ending: 1 (file = spec) when spec ends with
 * suffix. */
int dml_reader_probe_suffix(const char *spec, const char *suffix, char *file, size_t n);

/* The reader whose probe takes spec (fashion-mnist: names resolved to the package's files),
 * once its file is known to exist: *reader, its file, and inner = what follows "file:" ("" for
 * none). Errors name the file: no such file, or an unknown format. */
dml_status dml_reader_find(const char *spec, const dml_reader **reader, char *file, size_t n,
                           char *inner, size_t n_inner, dml_error *err);

/* An error naming source and the 0-based row (first_row + i) and column of the first value of
 * x[n, d] that is not finite. view: "data", "anchor" or "positive". */
dml_status dml_check_finite(const char *source, const float *x, int n, int d, long first_row,
                            const char *view, dml_error *err);

/* max label + 1 over y[n] (0 when y is NULL): a data set's n_classes. */
int dml_labels_classes(const int32_t *y, int n);

/* y[i] = v[i] after checking 0 <= v[i] <= DML_MAX_LABEL; an error names file and the row. */
dml_status dml_labels_narrow(int32_t *y, const int64_t *v, size_t n, const char *file,
                             dml_error *err);

#endif
