/* dml train CONFIG.yaml [--out DIR] [--set key.path=value ...] [--resume] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "data/fileio.h"
#include "train/call.h"

static const char HELP[] =
    "usage: dml train CONFIG.yaml [--out DIR] [--set key.path=value ...] [--resume]\n"
    "\n"
    "Trains the encoder a config describes (see configs/ and docs/config.md) and writes into\n"
    "DIR (default runs/<config name>): model.h5, checkpoint.h5, metrics.jsonl, report.html.\n"
    "\n"
    "  --out DIR              the run folder\n"
    "  --set key.path=value   override one config key (the value is YAML); repeatable\n"
    "  --resume               continue the run of DIR/checkpoint.h5: the same config and\n"
    "                         data (train.steps may grow; docs/config.md lists the keys\n"
    "                         that may change), the same train.threads to resume to the bit\n"
    "  -h, --help             this text\n"
    "\n"
    "SIGINT or SIGTERM (a cluster's preemption) writes checkpoint.h5 at the next step and exits\n"
    "130 or 143; --resume then ends with the model an uninterrupted run ends with. A second\n"
    "SIGINT stops at once.\n"
    "\n"
    "A run locks DIR while it writes it (DIR/.lock): a second dml train into DIR exits 2\n"
    "naming the first one's pid.\n"
    "\n"
    "Under `mpirun -np N dml train CONFIG` the N ranks train one model data-parallel: each\n"
    "computes 1/N of every batch (train.batch_size must divide by N; left unset, it is rounded\n"
    "down to fit), the result is the model one process trains, and rank 0 alone writes DIR\n"
    "(docs/scale.md).\n";

/* The signal that asked the run to stop, 0 until one does. */
static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
    if (stop_signal && sig == SIGINT) { /* asked twice: no checkpoint, stop now */
        dml_tmp_remove_live(); /* the checkpoint being written, say */
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
        return;
    }
    stop_signal = sig;
    static const char msg[] = "\ndml train: stopping after this step, with a checkpoint "
                              "(SIGINT again: stop now)\n";
    ssize_t rc = write(STDERR_FILENO, msg, sizeof msg - 1); /* async-signal-safe, unlike stdio */
    (void)rc;
}

static void catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sa.sa_flags = SA_RESTART; /* a checkpoint being written when it comes is not cut short */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int dml_cli_train(int argc, char **argv)
{
    const char *config = NULL, *out = NULL;
    int resume = 0, n_sets = 0;
    char **sets = calloc((size_t)argc, sizeof *sets);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            free(sets);
            return 0;
        } else if (!strcmp(argv[i], "--resume")) {
            resume = 1;
        } else if ((!strcmp(argv[i], "--out") || !strcmp(argv[i], "--set")) && i + 1 < argc) {
            if (argv[i][2] == 'o')
                out = argv[++i];
            else
                sets[n_sets++] = argv[++i];
        } else if (argv[i][0] != '-' && !config) {
            config = argv[i];
        } else {
            fprintf(stderr, "dml train: unexpected argument '%s'\n\n%s", argv[i], HELP);
            free(sets);
            return 2;
        }
    }
    if (!config) {
        fprintf(stderr, "dml train: which config? \n\n%s", HELP);
        free(sets);
        return 2;
    }
    const dml_comm *comm = dml_cli_mpi_open(&argc, &argv);
    FILE *quiet = comm && comm->rank > 0 ? fopen("/dev/null", "w") : NULL; /* rank 0 reports */
    dml_error err = {0};
    dml_train_request req = {.config_path = config, .sets = (const char *const *)sets,
                             .n_sets = n_sets, .out_dir = out, .resume = resume,
                             .log = quiet ? quiet : stderr, .stop = &stop_signal, .comm = comm,
                             .first_failure = dml_cli_mpi_first_failure};
    catch_stop_signals();
    dml_status st = dml_train_call(&req, NULL, &err);
    char name[64] = "train";
    if (comm)
        snprintf(name, sizeof name, "train (rank %d of %d)", comm->rank, comm->size);
    if (st != DML_OK)
        dml_cli_report_error(name, st, &err);
    if (quiet)
        fclose(quiet);
    dml_cli_mpi_close();
    free(sets);
    /* the shell's convention for a process a signal ended: 128 + its number */
    return st == DML_ERR_INTERRUPTED ? 128 + stop_signal : dml_status_exit_code(st);
}
