/* A data SPEC opened for reading its rows in ranges, for data sets larger than memory.
 *
 * HDF5 (by hyperslab), .npy and .fvecs/.ivecs/.bvecs (by offset) are read a range at a time and
 * never held whole; the other forms (IDX, CSV, paired files with two views) are read whole at
 * open and served from memory, so every SPEC dml_dataset_open takes opens here too. Labels are
 * small (4 bytes a row) and read whole at open. A range is checked as it is read: a NaN or Inf
 * names the file, its row and column, as dml_dataset_open does for the whole file.
 *
 *   dml_rows r;
 *   if (dml_rows_open("big.hdf5", &r, &err) == DML_OK) {
 *       for (int lo = 0; lo < r.n && st == DML_OK; lo += 4096)
 *           st = dml_rows_read(&r, lo, min(4096, r.n - lo), buf, &err);
 *       dml_rows_close(&r);
 *   }
 *
 * Not thread-safe (libhdf5 is the serial build): one reader at a time per dml_rows. */
#ifndef DML_DATA_ROWS_H
#define DML_DATA_ROWS_H

#include <stdint.h>

#include "data/dataset.h"

typedef struct dml_rows dml_rows;

/* Reads rows [lo, lo + count) of the file as floats into x[count, d]; 0 on success, else an
 * error that names the file. Set by a reader's stream function. */
typedef dml_status (*dml_rows_read_fn)(dml_rows *r, int lo, int count, float *x, dml_error *err);

struct dml_rows {
    int n, d;          /* rows and features */
    int32_t *y;        /* [n] labels in 0..DML_MAX_LABEL, or NULL when unlabelled */
    int n_classes;     /* max label + 1; 0 when unlabelled */
    int from_bytes;    /* values stored as bytes (0..255) */
    const char *value_type; /* as dml_dataset's */
    int streamed;      /* 1: ranges are read from the file; 0: it was read whole (whole below) */
    char source[512];  /* the spec */
    char file[4096];   /* the file read */
    /* private */
    dml_rows_read_fn read; /* streamed only */
    void *impl;            /* the reader's open file and layout */
    void (*close)(void *impl);
    dml_dataset whole;     /* not streamed: the data set dml_dataset_open read */
};

/* Opens spec (every form dml_dataset_open takes) and reads its shape and labels; errors as
 * dml_dataset_open's (DML_ERR_DATA naming the file). On error *r is closed. */
dml_status dml_rows_open(const char *spec, dml_rows *r, dml_error *err);
void dml_rows_close(dml_rows *r);
/* The same for a spec whose format reads ranges (r->streamed 1); for any other, DML_OK with
 * nothing read and r->streamed 0 (the caller reads it whole, with dml_dataset_open). */
dml_status dml_rows_try_stream(const char *spec, dml_rows *r, dml_error *err);

/* x[count, d] = rows [lo, lo + count), 0 <= lo, lo + count <= n, as floats; every value checked
 * finite. */
dml_status dml_rows_read(dml_rows *r, int lo, int count, float *x, dml_error *err);

/* The whole data set into *ds, as dml_dataset_open would give it, without reading the file
 * again: a data set read whole is handed over, streamed rows are read in one pass. r is closed
 * either way; on error *ds is empty. */
dml_status dml_rows_take(dml_rows *r, dml_dataset *ds, dml_error *err);

/* The data set read whole (a format that does not stream, e.g. a paired file whose second view
 * a dual encoder's other tower reads), or NULL when the rows are streamed. */
const dml_dataset *dml_rows_whole(const dml_rows *r);

/* The bytes the rows take as float32 in memory: what reading them whole would cost. */
double dml_rows_bytes(const dml_rows *r);

#endif
