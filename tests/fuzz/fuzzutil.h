/* Shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c): the readers under test take paths,
 * so each input is written to files in one temporary folder per process. */
#ifndef DML_TESTS_FUZZUTIL_H
#define DML_TESTS_FUZZUTIL_H

#include <stddef.h>
#include <stdint.h>

/* The process's folder under $TMPDIR (or /tmp), made on first use and removed at exit (with
 * whatever fz_write left in it). Aborts when it cannot be made: nothing could be fuzzed. */
const char *fz_dir(void);

/* Writes data[n] to fz_dir()/name and puts that path in path[cap]; aborts on failure. */
void fz_write(const char *name, const uint8_t *data, size_t n, char *path, size_t cap);

/* Writes data[n] gzip-compressed, as fz_write. */
void fz_write_gz(const char *name, const uint8_t *data, size_t n, char *path, size_t cap);

/* For LLVMFuzzerInitialize of a harness whose library allocates what a damaged size field says
 * and touches little of it: one allocation may be up to 16 GB (libFuzzer's -malloc_limit_mb);
 * -rss_limit_mb still bounds the memory used. libFuzzer reads its flags after this call. */
void fz_allow_untouched_allocations(int *argc, char ***argv);

/* Removes fz_dir()/name if present. */
void fz_remove(const char *name);

#endif
