/* Atomic output files: write to a temporary name beside the target, flush it to
 * disk, then rename over the target. A crash leaves the old file or the new one. */
#ifndef DML_DATA_FILEIO_H
#define DML_DATA_FILEIO_H

#include <stddef.h>
#include <stdio.h>

#include "data/error.h"

/* The temporary name used for path: "<dir>/.<base>.tmp.<pid>". */
void dml_tmp_path(const char *path, char *tmp, size_t n);

/* fsync tmp, rename it to path, fsync the folder. On failure tmp is removed. */
dml_status dml_file_commit(const char *tmp, const char *path, dml_error *err);

/* Writes bytes[n] to path atomically: a temporary name, every byte written, then
 * dml_file_commit. A failure removes the temporary file, leaves an existing path as it was and
 * is DML_ERR_IO "cannot write the <what>: <the system's reason>". */
dml_status dml_file_write_atomic(const char *path, const char *what, const void *bytes, size_t n,
                                 dml_error *err);

/* The same for a file printed by write_body(f, ctx) to a stream on the temporary name: a failed
 * write (while printing, or the flush at the end) fails the whole file. */
dml_status dml_file_write_stdio(const char *path, const char *what,
                                void (*write_body)(FILE *f, const void *ctx), const void *ctx,
                                dml_error *err);

/* Create a folder and its parents (mkdir -p). */
dml_status dml_mkdirs(const char *dir, dml_error *err);

/* 1 if a regular file exists at path. */
int dml_file_exists(const char *path);

#endif
