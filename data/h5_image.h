/* HDF5 output files built in memory and written by dml itself. */
#ifndef DML_DATA_H5_IMAGE_H
#define DML_DATA_H5_IMAGE_H

#include <hdf5.h>

#include "data/error.h"

/* Builds an HDF5 file with fill(file, ctx) (1 on success) in memory, through the core driver
 * without a backing store, then writes its image to path with dml_file_write_atomic. libhdf5
 * never writes to disk: a full disk or a failing device reaches dml's own write path, which
 * names the reason, and never leaves libhdf5 with a half-closed file (which its exit handler
 * would crash on). The file is in HDF5 1.10's format (superblock 3, version-2 object headers,
 * both checksummed). A failure of fill is DML_ERR_IO "cannot write the <what>". */
dml_status dml_h5_write_atomic(const char *path, const char *what,
                               int (*fill)(hid_t file, const void *ctx), const void *ctx,
                               dml_error *err);

#endif
