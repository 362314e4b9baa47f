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

/* A temporary file whose bytes go through one write loop (not stdio's internal one), so that
 * the first failure's errno is kept for the message and a test can inject it. */
typedef struct sink {
    int fd;
    int err; /* the first failure's errno, 0 while all is well */
    char tmp[4096];
} sink;

static void sink_open(sink *s, const char *path)
{
    dml_tmp_path(path, s->tmp, sizeof s->tmp);
    s->fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    s->err = s->fd < 0 ? errno : 0;
}

static ssize_t sink_write(void *c, const char *buf, size_t n)
{
    sink *s = c;
    size_t left = n;
    while (!s->err && left > 0) {
        ssize_t k = write(s->fd, buf, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) /* 0: nothing written to a regular file, as good as a full disk */
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
    if (s->fd >= 0 && close(s->fd) != 0 && !s->err)
        s->err = errno; /* a delayed write error */
    s->fd = -1;
    return s->err ? -1 : 0;
}

/* After sink_close: the temporary file renamed over path, or removed with the reason. */
static dml_status sink_commit(sink *s, int failed, const char *path, const char *what,
                              dml_error *err)
{
    if (!failed && !s->err)
        return dml_file_commit(s->tmp, path, err);
    unlink(s->tmp);
    return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the %s: %s", what,
                         s->err ? strerror(s->err) : "a write failed");
}

dml_status dml_file_write_atomic(const char *path, const char *what, const void *bytes, size_t n,
                                 dml_error *err)
{
    sink s;
    sink_open(&s, path);
    sink_write(&s, bytes, n);
    sink_close(&s);
    return sink_commit(&s, 0, path, what, err);
}

dml_status dml_file_write_stdio(const char *path, const char *what,
                                void (*write_body)(FILE *f, const void *ctx), const void *ctx,
                                dml_error *err)
{
    sink s;
    sink_open(&s, path);
    FILE *f = s.err ? NULL
                    : fopencookie(&s, "w", (cookie_io_functions_t){NULL, sink_write, NULL,
                                                                   sink_close});
    if (!f) {
        if (!s.err)
            s.err = errno;
        sink_close(&s);
        return sink_commit(&s, 1, path, what, err);
    }
    write_body(f, ctx);
    int failed = ferror(f);
    failed |= fclose(f) != 0; /* calls sink_close */
    return sink_commit(&s, failed, path, what, err);
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
