#define _GNU_SOURCE /* fopencookie */
#include "data/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void dml_tmp_path(const char *path, char *tmp, size_t n)
{
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    snprintf(tmp, n, "%.*s.%s.tmp.%ld", dir_len, path, path + dir_len, (long)getpid());
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

dml_status dml_file_commit(const char *tmp, const char *path, dml_error *err)
{
    if (fsync_path(tmp, O_RDONLY) != 0 || rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the file: %s",
                             strerror(saved));
    }
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path) + (slash == path), path);
    else
        snprintf(dir, sizeof dir, ".");
    fsync_path(dir, O_RDONLY | O_DIRECTORY); /* best effort: some filesystems refuse */
    return DML_OK;
}

dml_status dml_file_write_atomic(const char *path, const char *what, const void *bytes, size_t n,
                                 dml_error *err)
{
    char tmp[4096];
    dml_tmp_path(path, tmp, sizeof tmp);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    const char *p = bytes;
    while (fd >= 0 && n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) { /* 0: nothing written to a regular file, as good as a full disk */
            if (k == 0)
                errno = ENOSPC;
            break;
        }
        p += k;
        n -= (size_t)k;
    }
    int saved = errno;
    if (fd >= 0 && close(fd) != 0 && n == 0) {
        saved = errno;
        n = 1; /* the kernel reported a delayed write error */
    }
    if (fd < 0 || n > 0) {
        if (fd >= 0)
            unlink(tmp);
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the %s: %s", what,
                             strerror(saved));
    }
    return dml_file_commit(tmp, path, err);
}

/* A stream over a file descriptor whose bytes go through dml's own write loop (not stdio's
 * internal one), so that the first failure's errno is kept and a test can inject it. */
typedef struct sink {
    int fd;
    int err; /* the first failure's errno, 0 while all is well */
} sink;

static ssize_t sink_write(void *c, const char *buf, size_t n)
{
    sink *s = c;
    size_t left = n;
    while (!s->err && left > 0) {
        ssize_t k = write(s->fd, buf, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            s->err = k < 0 ? errno : ENOSPC;
        else {
            buf += k;
            left -= (size_t)k;
        }
    }
    return s->err ? -1 : (ssize_t)n;
}

static int sink_close(void *c)
{
    sink *s = c;
    if (close(s->fd) != 0 && !s->err)
        s->err = errno; /* a delayed write error */
    return s->err ? -1 : 0;
}

dml_status dml_file_write_stdio(const char *path, const char *what,
                                void (*write_body)(FILE *f, const void *ctx), const void *ctx,
                                dml_error *err)
{
    char tmp[4096];
    dml_tmp_path(path, tmp, sizeof tmp);
    sink s = {open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666), 0};
    FILE *f = NULL;
    if (s.fd < 0 || !(f = fopencookie(&s, "w", (cookie_io_functions_t){NULL, sink_write, NULL,
                                                                        sink_close}))) {
        int saved = errno;
        if (s.fd >= 0) {
            close(s.fd);
            unlink(tmp);
        }
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the %s: %s", what,
                             strerror(saved));
    }
    write_body(f, ctx);
    int failed = ferror(f);
    failed |= fclose(f) != 0;
    if (failed) {
        unlink(tmp);
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the %s: %s", what,
                             s.err ? strerror(s.err) : "a write failed");
    }
    return dml_file_commit(tmp, path, err);
}

dml_status dml_mkdirs(const char *dir, dml_error *err)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return dml_error_set(err, DML_ERR_IO, buf, 0, 0, "cannot create the folder: %s",
                                     strerror(errno));
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return DML_OK;
}

int dml_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}
