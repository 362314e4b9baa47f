/* A fault injector for the I/O-failure tests (tests/test_faults.c), preloaded into the dml CLI
 * with LD_PRELOAD: the Nth call of one kind (write, fsync, close or rename) on a file whose path
 * contains FAULT_MATCH fails with FAULT_ERRNO, as a full disk or a failing device would make it
 * fail, and every other call goes through. It interposes libc's public entry points, so it sees
 * the calls libhdf5 makes (open, pwrite, close) as well as dml's own (fsync, rename, fclose).
 *
 *   FAULT_MATCH   substring of the paths watched
 *   FAULT_SKIP    substring of paths among those that are not watched after all
 *   FAULT_CALL    write | fsync | close | rename
 *   FAULT_NTH     1-based call to fail; 0 counts only
 *   FAULT_ERRNO   the errno the failed call sets (default ENOSPC)
 *   FAULT_SLEEP_MS  instead of failing, the call first sleeps this long (a slow disk), then
 *                 goes through: what a test needs to act while a file is being written
 *   FAULT_COUNTS  file the calls seen are written to at exit: "write N fsync N close N rename N"
 *
 * Written-to descriptors (and FILE streams) are watched for write and close; any watched
 * descriptor for fsync. Folders are not watched: dml syncs a folder after a rename as a best
 * effort, which is allowed to fail. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { K_WRITE, K_FSYNC, K_CLOSE, K_RENAME, K_COUNT };
static const char *const KIND[K_COUNT] = {"write", "fsync", "close", "rename"};

#define MAX_FD 4096
static unsigned char watched[MAX_FD]; /* 1: watched, 2: watched and opened for writing */
static long calls[K_COUNT];

static void *real(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (!f)
        abort();
    return f;
}

static int matches(const char *path)
{
    const char *m = getenv("FAULT_MATCH"), *skip = getenv("FAULT_SKIP");
    return path && m && *m && strstr(path, m) && !(skip && *skip && strstr(path, skip));
}

/* Counts the call and says whether this one fails (errno set). */
static int fail_now(int kind)
{
    calls[kind]++;
    const char *call = getenv("FAULT_CALL"), *nth = getenv("FAULT_NTH");
    if (!call || strcmp(call, KIND[kind]) != 0 || !nth || atol(nth) != calls[kind])
        return 0;
    const char *ms = getenv("FAULT_SLEEP_MS");
    if (ms) {
        long t = atol(ms);
        nanosleep(&(struct timespec){t / 1000, t % 1000 * 1000000L}, NULL);
        return 0;
    }
    const char *e = getenv("FAULT_ERRNO");
    errno = e ? atoi(e) : ENOSPC;
    return 1;
}

static void watch(int fd, const char *path, int writing)
{
    if (fd >= 0 && fd < MAX_FD)
        watched[fd] = matches(path) ? (unsigned char)(1 + (writing != 0)) : 0;
}

static int writes(int flags)
{
    return (flags & O_ACCMODE) != O_RDONLY;
}

#define OPEN_LIKE(name, ...)                                                                  \
    int name(__VA_ARGS__, int flags, ...)                                                     \
    {                                                                                         \
        mode_t mode = 0;                                                                      \
        if (flags & (O_CREAT | O_TMPFILE)) {                                                  \
            va_list ap;                                                                       \
            va_start(ap, flags);                                                              \
            mode = va_arg(ap, mode_t);                                                        \
            va_end(ap);                                                                       \
        }

OPEN_LIKE(open, const char *path)
    int (*f)(const char *, int, ...) = real("open");
    int fd = f(path, flags, mode);
    if (!(flags & O_DIRECTORY))
        watch(fd, path, writes(flags));
    return fd;
}

OPEN_LIKE(open64, const char *path)
    int (*f)(const char *, int, ...) = real("open64");
    int fd = f(path, flags, mode);
    if (!(flags & O_DIRECTORY))
        watch(fd, path, writes(flags));
    return fd;
}

OPEN_LIKE(openat, int dir, const char *path)
    int (*f)(int, const char *, int, ...) = real("openat");
    int fd = f(dir, path, flags, mode);
    if (!(flags & O_DIRECTORY))
        watch(fd, path, writes(flags));
    return fd;
}

static FILE *watch_stream(FILE *s, const char *path, const char *how)
{
    if (s)
        watch(fileno(s), path, strpbrk(how, "wa+") != NULL);
    return s;
}

FILE *fopen(const char *path, const char *how)
{
    FILE *(*f)(const char *, const char *) = real("fopen");
    return watch_stream(f(path, how), path, how);
}

FILE *fopen64(const char *path, const char *how)
{
    FILE *(*f)(const char *, const char *) = real("fopen64");
    return watch_stream(f(path, how), path, how);
}

static int written(int fd)
{
    return fd >= 0 && fd < MAX_FD && watched[fd] == 2;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    ssize_t (*f)(int, const void *, size_t) = real("write");
    return written(fd) && fail_now(K_WRITE) ? -1 : f(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t at)
{
    ssize_t (*f)(int, const void *, size_t, off_t) = real("pwrite");
    return written(fd) && fail_now(K_WRITE) ? -1 : f(fd, buf, n, at);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at)
{
    ssize_t (*f)(int, const void *, size_t, off_t) = real("pwrite64");
    return written(fd) && fail_now(K_WRITE) ? -1 : f(fd, buf, n, at);
}

int fsync(int fd)
{
    int (*f)(int) = real("fsync");
    return fd >= 0 && fd < MAX_FD && watched[fd] && fail_now(K_FSYNC) ? -1 : f(fd);
}

int fdatasync(int fd)
{
    int (*f)(int) = real("fdatasync");
    return fd >= 0 && fd < MAX_FD && watched[fd] && fail_now(K_FSYNC) ? -1 : f(fd);
}

/* A failed close still closes (as Linux's does): the error is what a delayed write reports. */
int close(int fd)
{
    int (*f)(int) = real("close");
    int fail = written(fd) && fail_now(K_CLOSE);
    int saved = errno;
    if (fd >= 0 && fd < MAX_FD)
        watched[fd] = 0;
    int rc = f(fd);
    if (fail) {
        errno = saved;
        return -1;
    }
    return rc;
}

/* The stream's buffered bytes are written at fclose: a full disk shows there. */
int fclose(FILE *s)
{
    int (*f)(FILE *) = real("fclose");
    int fd = fileno(s), fail = written(fd) && fail_now(K_CLOSE);
    int saved = errno;
    if (fd >= 0 && fd < MAX_FD)
        watched[fd] = 0;
    int rc = f(s);
    if (fail) {
        errno = saved;
        return EOF;
    }
    return rc;
}

int rename(const char *from, const char *to)
{
    int (*f)(const char *, const char *) = real("rename");
    return (matches(from) || matches(to)) && fail_now(K_RENAME) ? -1 : f(from, to);
}

__attribute__((destructor)) static void report(void)
{
    const char *path = getenv("FAULT_COUNTS");
    if (!path)
        return;
    FILE *(*fo)(const char *, const char *) = real("fopen");
    int (*fc)(FILE *) = real("fclose");
    FILE *out = fo(path, "w");
    if (!out)
        return;
    for (int k = 0; k < K_COUNT; k++)
        fprintf(out, "%s %ld\n", KIND[k], calls[k]);
    fc(out);
}
