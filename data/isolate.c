/* dml_isolated: fork, limits, wait, and the child's fate as a status. */
#define _DEFAULT_SOURCE /* RLIMIT_AS in <sys/resource.h> with _XOPEN_SOURCE */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/isolate.h"

/* The address space the process has mapped, in bytes (0 when unknown). */
static size_t mapped_bytes(void)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

/* All of n bytes through fd (a pipe), retried over interruptions and short transfers. */
static int transfer(int fd, void *buf, size_t n, int writing)
{
    char *p = buf;
    while (n > 0) {
        ssize_t k = writing ? write(fd, p, n) : read(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return 0;
        p += k;
        n -= (size_t)k;
    }
    return 1;
}

dml_status dml_isolated(dml_status (*fn)(const void *ctx, dml_error *err), const void *ctx,
                        int seconds, size_t memory, const char *file, const char *what,
                        dml_error *err)
{
    size_t base = memory ? mapped_bytes() : 0;
    int fds[2];
    if (pipe(fds) != 0)
        return dml_error_set(err, DML_ERR_IO, file, 0, 0, "cannot start a process for %s: %s",
                             what, strerror(errno));
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return dml_error_set(err, DML_ERR_IO, file, 0, 0, "cannot start a process for %s: %s",
                             what, strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        /* The caller's handlers (a test framework's, a service's) must not catch the crash
         * and carry on in the child as if it were the caller. */
        static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGALRM};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
            signal(fatal[i], SIG_DFL);
        if (base) {
            struct rlimit lim = {base + memory, base + memory};
            setrlimit(RLIMIT_AS, &lim);
        }
        alarm((unsigned)seconds);
        dml_error e = {0};
        e.code = fn(ctx, &e);
        _exit(transfer(fds[1], &e, sizeof e, 1) ? 0 : 1);
    }
    close(fds[1]);
    dml_error e = {0};
    int got = transfer(fds[0], &e, sizeof e, 0);
    close(fds[0]);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && got) {
        if (e.code != DML_OK && err)
            *err = e;
        return e.code;
    }
    int sig = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0; /* 0: it exited without a verdict */
    if (sig == SIGALRM)
        return dml_error_set(err, DML_ERR_DATA, file, 0, 0,
                             "%s took more than %d s: the file is damaged", what, seconds);
    return dml_error_set(err, DML_ERR_DATA, file, 0, 0,
                         "%s crashed (signal %d, %s)%s: the file is damaged", what, sig,
                         strsignal(sig), memory ? " or ran out of its memory limit" : "");
}
