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

/* Every byte goes through one write loop (not stdio's internal one), so that the first
 * failure's errno is kept for the message and a test can inject it. at < 0 appends (write),
 * otherwise the bytes go at that offset (pwrite). */
static void put(dml_file_out *o, const char *buf, size_t n, int64_t at)
{
    while (!o->err && n > 0) {
        ssize_t k = at < 0 ? write(o->fd, buf, n) : pwrite(o->fd, buf, n, (off_t)at);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) /* 0: nothing written to a regular file, as good as a full disk */
            o->err = k < 0 ? errno : ENOSPC;
        else {
            buf += k;
            n -= (size_t)k;
            at += at < 0 ? 0 : k;
        }
    }
}

dml_status dml_file_out_open(dml_file_out *o, const char *path, const char *what, dml_error *err)
{
    o->path = path;
    o->what = what;
    o->stream = NULL;
    dml_tmp_path(path, o->tmp, sizeof o->tmp);
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    o->err = o->fd < 0 ? errno : 0;
    return o->err ? dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the %s: %s", what,
                                  strerror(o->err))
                  : DML_OK;
}

void dml_file_out_write(dml_file_out *o, const void *p, size_t n)
{
    put(o, p, n, -1);
}

void dml_file_out_write_at(dml_file_out *o, const void *p, size_t n, uint64_t at)
{
    put(o, p, n, (int64_t)at);
}

void dml_file_out_truncate(dml_file_out *o, uint64_t size)
{
    if (!o->err && ftruncate(o->fd, (off_t)size) != 0)
        o->err = errno;
}

static ssize_t cookie_write(void *c, const char *buf, size_t n)
{
    dml_file_out *o = c;
    put(o, buf, n, -1);
    return o->err ? -1 : (ssize_t)n;
}

FILE *dml_file_out_stream(dml_file_out *o)
{
    if (!o->stream && !o->err &&
        !(o->stream = fopencookie(o, "w", (cookie_io_functions_t){NULL, cookie_write, NULL, NULL})))
        o->err = errno;
    return o->stream;
}

dml_status dml_file_out_finish(dml_file_out *o, int ok, dml_error *err)
{
    if (o->stream) {
        int failed = ferror(o->stream);
        failed |= fclose(o->stream) != 0; /* its buffered bytes are written now */
        if (failed && !o->err)
            o->err = EIO;
        o->stream = NULL;
    }
    if (o->fd >= 0 && close(o->fd) != 0 && !o->err)
        o->err = errno; /* a delayed write error */
    o->fd = -1;
    if (ok && !o->err)
        return dml_file_commit(o->tmp, o->path, err);
    unlink(o->tmp);
    if (!ok)
        return DML_ERR_IO; /* the caller's failure, already in err */
    return dml_error_set(err, DML_ERR_IO, o->path, 0, 0, "cannot write the %s: %s", o->what,
                         strerror(o->err));
}

dml_status dml_file_write_atomic(const char *path, const char *what, const void *bytes, size_t n,
                                 dml_error *err)
{
    dml_file_out o;
    dml_status st = dml_file_out_open(&o, path, what, err);
    if (st != DML_OK)
        return st;
    dml_file_out_write(&o, bytes, n);
    return dml_file_out_finish(&o, 1, err);
}

dml_status dml_file_write_stdio(const char *path, const char *what,
                                void (*write_body)(FILE *f, const void *ctx), const void *ctx,
                                dml_error *err)
{
    dml_file_out o;
    dml_status st = dml_file_out_open(&o, path, what, err);
    if (st != DML_OK)
        return st;
    FILE *f = dml_file_out_stream(&o);
    if (f)
        write_body(f, ctx);
    return dml_file_out_finish(&o, 1, err); /* a failed stream or write is in o.err */
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
