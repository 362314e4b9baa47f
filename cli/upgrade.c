/* dml upgrade MODEL.h5 [OUT.h5] */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "serve/serve.h"

static const char HELP[] =
    "usage: dml upgrade MODEL.h5 [OUT.h5]\n"
    "\n"
    "Rewrites a model file written by an earlier dml (format_version 1) in the current format\n"
    "(version 2), in place unless OUT.h5 is given; the write is atomic. Only this command reads\n"
    "version 1, whose strings a damaged file can make libhdf5 crash on: run it on files your own\n"
    "dml wrote.\n"
    "\n"
    "  -h, --help   this text\n";

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
    dml_error err = {0};
    dml_status st = dml_model_file_upgrade(path, out ? out : path, &err);
    if (st == DML_OK)
        printf("wrote %s (format %s %d)\n", out ? out : path, DML_MODEL_FORMAT,
               DML_MODEL_FORMAT_VERSION);
    else
        dml_cli_report_error("upgrade", st, &err);
    return dml_status_exit_code(st);
}
