#define _GNU_SOURCE /* fopencookie */
#include "data/fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void dml_tmp_path(const char *path, char *tmp, size_t n)
{
    const char *slash = strrchr(path, '/');
    int dir_len = slash ? (int)(slash - path + 1) : 0;
    snprintf(tmp, n, "%.*s.%s.tmp.%ld", dir_len, path, path + dir_len, (long)getpid());
}

/* The folder path is in ("." for a bare name). */
static void dir_of(const char *path, char *dir, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(dir, n, "%.*s", (int)(slash - path) + (slash == path), path);
    else
        snprintf(dir, n, ".");
}

/* The temporary files being written, for dml_tmp_remove_live: a fixed table a signal handler
 * reads without locks or allocation. A slot is claimed (FREE -> BUSY) while its path is copied
 * and then LIVE; the handler takes a LIVE slot to BUSY while it unlinks the path, so that no
 * thread rewrites a path being read. A file opened with every slot taken is written as well,
 * only not removed by a signal. */
#define LIVE_SLOTS 16
enum { SLOT_FREE, SLOT_BUSY, SLOT_LIVE };
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "a signal handler may only use lock-free atomics");
static atomic_int live_state[LIVE_SLOTS];
static char live_path[LIVE_SLOTS][sizeof ((dml_file_out *)0)->tmp];

static int live_add(const char *tmp)
{
    for (int i = 0; i < LIVE_SLOTS; i++) {
        int expected = SLOT_FREE;
        if (atomic_compare_exchange_strong(&live_state[i], &expected, SLOT_BUSY)) {
            snprintf(live_path[i], sizeof live_path[i], "%s", tmp);
            atomic_store(&live_state[i], SLOT_LIVE);
            return i;
        }
    }
    return -1;
}

static void live_drop(int i)
{
    if (i < 0)
        return;
    /* fails only while a handler on another thread is unlinking this path: it is quick */
    for (int expected = SLOT_LIVE;
         !atomic_compare_exchange_weak(&live_state[i], &expected, SLOT_FREE);
         expected = SLOT_LIVE)
        ;
}

void dml_tmp_remove_live(void)
{
    int saved = errno;
    for (int i = 0; i < LIVE_SLOTS; i++) {
        int expected = SLOT_LIVE;
        if (atomic_compare_exchange_strong(&live_state[i], &expected, SLOT_BUSY)) {
            unlink(live_path[i]);
            atomic_store(&live_state[i], SLOT_LIVE);
        }
    }
    errno = saved;
}

/* Removes path's temporary files "<dir>/.<base>.tmp.<pid>" whose process is gone: what a writer
 * killed by SIGKILL, which no handler sees, leaves behind. kill(pid, 0) knows this host's
 * processes only: a writer on another host sharing the folder would look gone and lose its
 * file, but two processes writing one output at once lose one of the outputs anyway. A live
 * pid (perhaps reused by another program) keeps its file. Best effort: failures are ignored. */
static void remove_stale(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096], prefix[512], stale[8192];
    int n = snprintf(prefix, sizeof prefix, ".%s.tmp.", slash ? slash + 1 : path);
    if (n < 0 || (size_t)n >= sizeof prefix)
        return;
    dir_of(path, dir, sizeof dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *e; (e = readdir(d));) {
        const char *digits = e->d_name + n;
        if (strncmp(e->d_name, prefix, (size_t)n) != 0 || *digits < '1' || *digits > '9')
            continue;
        char *end;
        errno = 0;
        long pid = strtol(digits, &end, 10);
        if (*end || errno || (pid_t)pid != pid || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
            snprintf(stale, sizeof stale, "%s/%s", dir, e->d_name);
            unlink(stale);
        }
    }
    closedir(d);
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
    dir_of(path, dir, sizeof dir);
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
    remove_stale(path);
    o->live = live_add(o->tmp); /* before the file exists: no signal finds it unlisted */
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    o->err = o->fd < 0 ? errno : 0;
    if (o->fd < 0)
        live_drop(o->live);
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
    dml_status st = DML_ERR_IO; /* !ok: the caller's failure, already in err */
    if (ok && !o->err)
        st = dml_file_commit(o->tmp, o->path, err); /* which removes tmp when it fails */
    else
        unlink(o->tmp);
    live_drop(o->live); /* only now: until the rename or unlink, a signal removes tmp */
    if (ok && o->err)
        st = dml_error_set(err, DML_ERR_IO, o->path, 0, 0, "cannot write the %s: %s", o->what,
                           strerror(o->err));
    return st;
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
