/* The readers behind dml_dataset_open (data/ only). Each fills x (and y when the file has
 * labels) and n, d; dml_dataset_open validates the values afterwards. */
#ifndef DML_DATA_READERS_H
#define DML_DATA_READERS_H

#include "data/dataset.h"

/* Where Debian's dataset-fashion-mnist package puts the files. */
#define DML_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

dml_status dml_read_idx(const char *images_path, dml_dataset *ds, dml_error *err);
/* inner: a dataset path inside the file, or NULL for X (or ann-benchmarks' train). */
dml_status dml_read_hdf5(const char *path, const char *inner, dml_dataset *ds, dml_error *err);
dml_status dml_read_npy(const char *path, dml_dataset *ds, dml_error *err);
dml_status dml_read_vecs(const char *path, dml_dataset *ds, dml_error *err);
dml_status dml_read_csv(const char *path, dml_dataset *ds, dml_error *err);

#endif
