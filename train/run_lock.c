/* The run folder's lock: one dml train writes a folder at a time, else two runs into one --out
 * both end "successfully" with one model lost. DIR/.lock holds its holder's "pid host" for the
 * messages; the lock itself is a POSIX record lock on it (fcntl, which NFS carries between
 * hosts), dropped by the kernel when the holder exits however it exits, so the file a killed
 * run leaves behind is recognised as stale without trusting a pid that may be reused. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train/run.h"

/* The whole file, for writing, without waiting. */
static int lock_file(int fd)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    return fcntl(fd, F_SETLK, &fl);
}

/* The file's "pid host" (pid 0 and host "?" when it has none: its holder is still writing it). */
static void holder(int fd, long *pid, char *host, size_t size)
{
    char text[300] = "";
    ssize_t n = pread(fd, text, sizeof text - 1, 0);
    text[n > 0 ? n : 0] = '\0';
    *pid = 0;
    snprintf(host, size, "?");
    char name[256];
    if (sscanf(text, "%ld %255s", pid, name) == 2)
        snprintf(host, size, "%s", name);
}

/* 1 while fd is still the file at path: a holder that ends unlinks it, and a lock taken on the
 * unlinked file would lock nothing. */
static int still_there(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

dml_status dml_run_lock_take(dml_run_lock *l, const char *dir, FILE *log, dml_error *err)
{
    l->fd = -1;
    snprintf(l->path, sizeof l->path, "%s/.lock", dir);
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return dml_error_set(err, DML_ERR_IO, l->path, 0, 0, "cannot create the run's lock "
                                 "file: %s", strerror(errno));
        if (lock_file(fd) != 0) {
            int e = errno;
            if (e != EACCES && e != EAGAIN) { /* a file system without locks: run as before */
                fprintf(log, "# %s: warning: cannot lock (%s); nothing stops another dml "
                             "train from writing %s meanwhile\n", l->path, strerror(e), dir);
                struct stat st;
                if (fstat(fd, &st) == 0 && st.st_size == 0) /* nobody's: ours, just made */
                    unlink(l->path);
                close(fd);
                return DML_OK;
            }
            long pid;
            char host[256];
            holder(fd, &pid, host, sizeof host);
            close(fd);
            if (pid == 0)
                return dml_error_set(err, DML_ERR_USAGE, dir, 0, 0, "in use by another dml "
                                     "train (starting); wait for it to end, or give another "
                                     "--out");
            return dml_error_set(err, DML_ERR_USAGE, dir, 0, 0, "in use by dml train (pid %ld "
                                 "on %s), which writes this run folder; wait for it to end, or "
                                 "give another --out", pid, host);
        }
        if (!still_there(fd, l->path)) { /* its holder ended as we opened it: again */
            close(fd);
            fd = -1;
        }
    }
    if (fd < 0)
        return dml_error_set(err, DML_ERR_IO, l->path, 0, 0, "cannot take the run's lock: "
                             "the file keeps being replaced");
    long pid;
    char host[256], me[256] = "?";
    holder(fd, &pid, host, sizeof host);
    if (pid != 0) /* a holder that did not end cleanly (kill -9, a crash, a lost node) */
        fprintf(log, "# %s: taking over the lock of dml train (pid %ld on %s), which is no "
                     "longer running\n", dir, pid, host);
    gethostname(me, sizeof me - 1);
    char text[300];
    int n = snprintf(text, sizeof text, "%ld %s\n", (long)getpid(), me);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        int e = errno;
        unlink(l->path);
        close(fd);
        return dml_error_set(err, DML_ERR_IO, l->path, 0, 0, "cannot write the run's lock "
                             "file: %s", strerror(e));
    }
    l->fd = fd;
    return DML_OK;
}

void dml_run_lock_release(dml_run_lock *l)
{
    if (l->fd < 0)
        return;
    unlink(l->path); /* first: whoever opens it later finds no file, or a new one */
    close(l->fd);    /* drops the lock */
    l->fd = -1;
}
