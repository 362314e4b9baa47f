/* Temporary files for the fuzz harnesses. */
#include "tests/fuzz/fuzzutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* libhdf5 1.10.8 (Debian 12) leaks on the error paths of corrupt files: after H5Fopen fails on
 * a corrupt root group (H5G_mkroot), after H5Dopen2 fails on a corrupt layout message
 * (H5D__layout_oh_read), cached object headers of an earlier file (H5C_protect), and inside
 * attribute and link lookups of a damaged model file. No id reaches dml, so it has nothing to
 * free. Leaks allocated inside libhdf5 are suppressed (by its module: libhdf5 has no frame
 * pointers for deeper frames); the harnesses that read HDF5 check dml's side instead: no HDF5
 * object open after each input. Harnesses that never load libhdf5 are unaffected. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libhdf5_serial.so\n";
}

/* A huge allocation returns NULL, as malloc does outside ASan, rather than aborting: libhdf5
 * asks for what a corrupt size field says (257 TB in H5C_protect for a damaged model.h5, found
 * by the model harness) and fails cleanly when it gets NULL, as it does outside ASan (`dml info`
 * on that file: exit 2, 15 MB). libFuzzer's -malloc_limit_mb still reports any allocation above
 * its limit that succeeds, dml's own included. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static char dir[512];

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (d) {
        char path[1024];
        for (struct dirent *e; (e = readdir(d));) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

const char *fz_dir(void)
{
    if (!dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/dml-fuzz-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(dir)) {
            perror(dir);
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

void fz_write(const char *name, const uint8_t *data, size_t n, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", fz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

void fz_write_gz(const char *name, const uint8_t *data, size_t n, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", fz_dir(), name);
    gzFile gz = gzopen(path, "wb");
    if (!gz || (n && gzwrite(gz, data, (unsigned)n) != (int)n) || gzclose(gz) != Z_OK) {
        fprintf(stderr, "%s: cannot write\n", path);
        abort();
    }
}

void fz_remove(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fz_dir(), name);
    unlink(path);
}

void fz_allow_untouched_allocations(int *argc, char ***argv)
{
    static char limit[] = "-malloc_limit_mb=16384", *args[256];
    int n = *argc < 254 ? *argc : 254;
    memcpy(args, *argv, (size_t)n * sizeof *args);
    args[n++] = limit;
    args[n] = NULL;
    *argc = n;
    *argv = args;
}
