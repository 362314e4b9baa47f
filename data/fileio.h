/* Atomic output files: write to a temporary name beside the target, flush it to
 * disk, then rename over the target. A crash leaves the old file or the new one. */
#ifndef DML_DATA_FILEIO_H
#define DML_DATA_FILEIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/error.h"

/* The temporary name used for path: "<dir>/.<base>.tmp.<pid>". */
void dml_tmp_path(const char *path, char *tmp, size_t n);

/* Removes the temporary files of every dml_file_out open now (unlink only; errno is kept):
 * async-signal-safe, for a SIGTERM or SIGINT handler that ends the process. A temporary file a
 * SIGKILL leaves is removed by the next dml_file_out_open of the same path. */
void dml_tmp_remove_live(void);

/* fsync tmp, rename it to path, fsync the folder. On failure tmp is removed. */
dml_status dml_file_commit(const char *tmp, const char *path, dml_error *err);

/* An atomic output file written in steps, for files larger than memory: every byte, appended
 * or placed at an offset, goes through one write loop, whose first failure (with its errno) is
 * kept and reported by dml_file_out_finish. Later writes after a failure do nothing.
 *
 *   dml_file_out o;
 *   if (dml_file_out_open(&o, path, "index", &err) == DML_OK) {
 *       dml_file_out_write(&o, header, n);
 *       ...
 *       st = dml_file_out_finish(&o, st == DML_OK, &err);
 *   } */
typedef struct dml_file_out {
    int fd;             /* the temporary file */
    int live;           /* its slot among the files dml_tmp_remove_live removes, or -1 */
    int err;            /* the first failure's errno, 0 while all is well */
    FILE *stream;       /* dml_file_out_stream's, or NULL */
    const char *path, *what;
    char tmp[4096];
} dml_file_out;

/* Creates path's temporary file; DML_ERR_IO "cannot write the <what>: <reason>" when it cannot.
 * First removes path's temporary files of processes that are gone (killed mid-write).
 * path and what are kept (not copied) until dml_file_out_finish. */
dml_status dml_file_out_open(dml_file_out *o, const char *path, const char *what, dml_error *err);
void dml_file_out_write(dml_file_out *o, const void *p, size_t n);              /* appends */
void dml_file_out_write_at(dml_file_out *o, const void *p, size_t n, uint64_t at);
void dml_file_out_truncate(dml_file_out *o, uint64_t size);                     /* ftruncate */
/* A buffered stream whose bytes are appended through the same loop (NULL, and o failed, when it
 * cannot be made); dml_file_out_finish flushes and closes it. */
FILE *dml_file_out_stream(dml_file_out *o);
/* ok and every write done: dml_file_commit (fsync, rename over path). A failed write removes
 * the temporary file and is DML_ERR_IO naming path, the what and the first failure's reason. ok
 * 0 (the caller failed, its error already in err) removes it and returns DML_ERR_IO leaving err
 * alone. Either way an existing path is left as it was. */
dml_status dml_file_out_finish(dml_file_out *o, int ok, dml_error *err);

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
