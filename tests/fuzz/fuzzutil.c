/* Temporary files for the fuzz harnesses. */
#include "tests/fuzz/fuzzutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

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
