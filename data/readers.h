/* The readers behind dml_dataset_open (data/ only). Each fills x, n, d (y when the file has
 * labels, already range-checked; x_b for paired files) and from_bytes, or returns an error
 * naming its file with ds left for dml_dataset_open to free. dml_dataset_open checks emptiness
 * and finiteness afterwards. */
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

/* inner: a dataset path inside the file, or NULL for X (else anchor/positive, else train). */
dml_status dml_read_hdf5(const char *path, const char *inner, dml_dataset *ds, dml_error *err);
dml_status dml_read_idx(const char *images_path, dml_dataset *ds, dml_error *err);
dml_status dml_read_npy(const char *path, dml_dataset *ds, dml_error *err);
dml_status dml_read_vecs(const char *path, dml_dataset *ds, dml_error *err);
dml_status dml_read_csv(const char *path, dml_dataset *ds, dml_error *err);

/* y[i] = v[i] after checking 0 <= v[i] <= DML_MAX_LABEL; an error names file and the row. */
dml_status dml_labels_narrow(int32_t *y, const int64_t *v, size_t n, const char *file,
                             dml_error *err);

#endif
