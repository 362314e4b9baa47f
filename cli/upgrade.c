/* dml upgrade MODEL.h5 [OUT.h5] */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "data/isolate.h"
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

typedef struct upgrade_args {
    const char *path, *out;
} upgrade_args;

static dml_status upgrade(const void *ctx, dml_error *err)
{
    const upgrade_args *a = ctx;
    return dml_model_file_upgrade(a->path, a->out, err);
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
    /* Version 1 goes through libhdf5's global-heap parser, which a damaged file can crash or
     * hang: the rewrite runs in a child process, where a crash is this command's clean error. */
    upgrade_args a = {path, out ? out : path};
    dml_error err = {0};
    dml_status st = dml_isolated(upgrade, &a, CHILD_SECONDS, 0, path,
                                 "libhdf5, reading this version-1 file,", &err);
    if (st == DML_OK)
        printf("wrote %s (format %s %d)\n", a.out, DML_MODEL_FORMAT, DML_MODEL_FORMAT_VERSION);
    else
        dml_cli_report_error("upgrade", st, &err);
    return dml_status_exit_code(st);
}
