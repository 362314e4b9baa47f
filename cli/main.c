/* dml: the command line. Each command lives in its own cli/<command>.c; main only
 * dispatches (and sets what SIGTERM and SIGINT do) and maps nothing itself: every command
 * returns its exit code. */
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dml.h"
#include "cli/cli.h"
#include "data/fileio.h"

static const char USAGE[] =
    "dml " DML_VERSION_STRING ": deep metric learning encoders and product quantizers\n"
    "\n"
    "usage: dml <command> [options]   (dml <command> --help for its options)\n"
    "\n"
    "commands:\n"
    "  train CONFIG.yaml [--out DIR] [--set key.path=value ...] [--resume]\n"
    "                       train an encoder; writes model.h5, checkpoint.h5, metrics.jsonl, report.html\n"
    "  eval MODEL.h5 --data SPEC [--db SPEC] [--pq] [--json]\n"
    "                       retrieval metrics of a trained model on float embeddings and PQ codes\n"
    "  encode MODEL.h5 INPUT OUTPUT.h5 [--pq]\n"
    "                       embed a data set (and encode it with the model's PQ codebooks)\n"
    "  export MODEL.h5 --faiss OUT.index --db SPEC [--pq | --flat] | --onnx OUT.onnx\n"
    "                       files a search library or runtime loads\n"
    "  info MODEL.h5        what a model file holds\n"
    "  upgrade MODEL.h5 [OUT.h5]\n"
    "                       rewrite a model file of an earlier dml in the current format\n"
    "\n"
    "exit codes: 0 success, 1 runtime failure (divergence, I/O), 2 bad usage, config or input data\n";

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
} command;

static const command COMMANDS[] = {
    {"train", dml_cli_train},   {"eval", dml_cli_eval}, {"encode", dml_cli_encode},
    {"export", dml_cli_export}, {"info", dml_cli_info},
    {"upgrade", dml_cli_upgrade}, {NULL, NULL},
};

void dml_cli_report_error(const char *command, dml_status st, const dml_error *err)
{
    char msg[2048];
    if (err->msg[0])
        dml_error_format(err, msg, sizeof msg);
    else
        snprintf(msg, sizeof msg, "failed (%s)", dml_status_name(st));
    fprintf(stderr, "dml %s: %s\n", command, msg);
}

/* SIGTERM or SIGINT ends a command at once, removing the temporary files of the outputs being
 * written (an existing output stays as it was), with the shell's 128 + the signal. dml train
 * replaces this while it trains, to stop at a step boundary with a checkpoint. */
static void on_signal(int sig)
{
    dml_tmp_remove_live();
    _exit(128 + sig);
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int main(int argc, char **argv)
{
    /* Every command closes its HDF5 files before it returns, so libhdf5's exit handler has
     * nothing to do but report blocks it leaked itself while refusing a damaged file ("HDF5:
     * infinite loop closing library"), which would follow a clean error message. */
    H5dont_atexit();
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("dml %s\n", DML_VERSION_STRING);
        return 0;
    }
    catch_signals();
    for (const command *c = COMMANDS; c->name; c++)
        if (!strcmp(argv[1], c->name))
            return c->run(argc - 1, argv + 1);
    fprintf(stderr, "dml: unknown command '%s'\n\n%s", argv[1], USAGE);
    return 2;
}
