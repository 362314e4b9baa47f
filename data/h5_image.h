/* HDF5 output files built in memory and written by dml itself. */
#ifndef DML_DATA_H5_IMAGE_H
#define DML_DATA_H5_IMAGE_H

#include <hdf5.h>
#include <stdint.h>

#include "data/error.h"
#include "data/fileio.h"

/* Builds an HDF5 file with fill(file, ctx) (1 on success) in memory, through the core driver
 * without a backing store, then writes its image to path with dml_file_write_atomic. libhdf5
 * never writes to disk: a full disk or a failing device reaches dml's own write path, which
 * names the reason, and never leaves libhdf5 with a half-closed file (which its exit handler
 * would crash on). The file is in HDF5 1.10's format (superblock 3, version-2 object headers,
 * both checksummed). A failure of fill is DML_ERR_IO "cannot write the <what>". */
dml_status dml_h5_write_atomic(const char *path, const char *what,
                               int (*fill)(hid_t file, const void *ctx), const void *ctx,
                               dml_error *err);

/* An HDF5 file too large to build in memory, written atomically in the same discipline: fill
 * builds its groups and attributes and reserves its large datasets with dml_h5_reserve; only
 * that metadata is built in memory (the core driver, HDF5 1.10's format as above), and
 * dml_h5_out_open writes it to the temporary file. The datasets' bytes then go, a range at a
 * time and in the file's byte order, through dml_h5_out_write, and dml_h5_out_finish commits
 * the file (or removes it): every byte through dml's own write path (data/fileio.h).
 *
 *   dml_h5_out o = {.n = 2, .name = {"X", "y"}};
 *   if (dml_h5_out_open(&o, path, "embeddings file", fill, ctx, &err) == DML_OK) {
 *       for each range: dml_h5_out_write(&o, 0, byte_offset_in_X, bytes, n);
 *       st = dml_h5_out_finish(&o, st == DML_OK, &err);
 *   } */
#define DML_H5_OUT_MAX 4
typedef struct dml_h5_out {
    int n;                               /* the datasets written by range */
    const char *name[DML_H5_OUT_MAX];    /* their paths; one fill did not create is 0 bytes */
    uint64_t offset[DML_H5_OUT_MAX];     /* each one's address in the file */
    uint64_t bytes[DML_H5_OUT_MAX];      /* and size */
    dml_file_out file;
} dml_h5_out;

/* A scalar fixed-length (NUL-terminated UTF-8) string attribute: it lives inside the
 * checksummed object header, so a reader never follows a pointer into the global heap, whose
 * parser crashes on corrupted files. 1 on success. */
int dml_h5_put_str(hid_t loc, const char *name, const char *value);
/* A contiguous dataset whose storage is allocated now and never filled by libhdf5: its bytes
 * come from dml_h5_out_write. 1 on success. */
int dml_h5_reserve(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims);
/* Builds the metadata and writes it to path's temporary file. DML_ERR_IO "cannot write the
 * <what>" when fill or libhdf5 fails, or the metadata would not fit ahead of the data. */
dml_status dml_h5_out_open(dml_h5_out *o, const char *path, const char *what,
                           int (*fill)(hid_t file, const void *ctx), const void *ctx,
                           dml_error *err);
/* Bytes [at, at + n) of dataset i, as stored in the file. */
void dml_h5_out_write(dml_h5_out *o, int i, uint64_t at, const void *p, size_t n);
/* dml_file_out_finish: the file committed when ok and every write succeeded, else removed. */
dml_status dml_h5_out_finish(dml_h5_out *o, int ok, dml_error *err);

#endif
