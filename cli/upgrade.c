/* dml upgrade MODEL.h5 [OUT.h5] */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "serve/serve.h"

static const char HELP[] =
    "usage: dml upgrade MODEL.h5 [OUT.h5]\n"
    "\n"
    "Rewrites a model file written by an earlier dml (format_version 1) in the current format\n"
    "(version 2), in place unless OUT.h5 is given; the write is atomic. Only this command reads\n"
    "version 1, whose strings a damaged file can make libhdf5 crash or hang on: it reads in a\n"
    "child process, so such a file ends in an error (exit 2) and OUT.h5 is left as it was.\n"
    "\n"
    "  -h, --help   this text\n";

#define CHILD_SECONDS 120 /* a damaged length can make libhdf5 fill gigabytes: not for ever */

/* Version 1 goes through libhdf5's global-heap parser, which a damaged file can crash or hang,
 * so the rewrite runs in a child process and a crash there is this command's clean error. */
static int upgrade_in_child(const char *path, const char *out)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("dml upgrade: fork");
        return 1;
    }
    if (pid == 0) {
        alarm(CHILD_SECONDS);
        dml_error err = {0};
        dml_status st = dml_model_file_upgrade(path, out, &err);
        if (st != DML_OK)
            dml_cli_report_error("upgrade", st, &err);
        _exit(dml_status_exit_code(st));
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0)
        ;
    if (WIFEXITED(ws))
        return WEXITSTATUS(ws);
    fprintf(stderr, "dml upgrade: %s: libhdf5 %s reading this version-1 file (it is damaged); %s "
            "was not written\n", path, WTERMSIG(ws) == SIGALRM ? "hung" : "crashed", out);
    return 2;
}

int dml_cli_upgrade(int argc, char **argv)
{
    const char *path = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            return 0;
        } else if (argv[i][0] != '-' && (!path || !out)) {
            *(path ? &out : &path) = argv[i];
        } else {
            fprintf(stderr, "dml upgrade: unexpected argument '%s'\n\n%s", argv[i], HELP);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "dml upgrade: which model?\n\n%s", HELP);
        return 2;
    }
    int rc = upgrade_in_child(path, out ? out : path);
    if (rc == 0)
        printf("wrote %s (format %s %d)\n", out ? out : path, DML_MODEL_FORMAT,
               DML_MODEL_FORMAT_VERSION);
    return rc;
}
