/* bench/scale_mpi.c: the scaling row of `make bench` (bench/scale.py). Under
 * `mpirun -np N build/bench_scale CONFIG --steps S --warmup W [--set key=value ...]`, every rank
 * runs the trainer's data-parallel step (dml_run_step over cli/mpi.c's communicator); rank 0
 * prints one JSON line: global samples/s over the timed steps and the share of the step spent
 * in the gradient allreduce and the embedding allgather (this rank's wall time in each call,
 * waits for slower ranks included; a sharded loss's reduce-scatter, the gather's backward, is
 * counted with the allgather). Without mpirun it is the one-process step.
 * --times PREFIX: each rank also writes PREFIX.<rank>, one line per gradient allreduce ("ar") and
 * embedding allgather ("ag") of the timed steps: its CLOCK_MONOTONIC entry and exit times. The
 * ranks of bench/cluster.sh share one machine, hence one clock: from the last rank's entry to the
 * last exit is the call's communication time with no rank's compute (or wait) in it, and that
 * costs the step no traffic (the lines are written after the last step). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "data/error.h"
#include "train/run.h"
#include "train/trainer.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The MPI communicator, each call timed. */
typedef struct timed {
    const dml_comm *inner;
    double allreduce_s, allgather_s;
    /* with --times: entry and exit of each call, preallocated (the step allocates nothing) */
    char *kind;
    double (*span)[2];
    size_t n_span, cap_span;
} timed;

static void record(timed *t, char kind, double t0, double t1)
{
    if (t->n_span < t->cap_span) {
        t->kind[t->n_span] = kind;
        t->span[t->n_span][0] = t0;
        t->span[t->n_span++][1] = t1;
    }
}

static void t_allreduce(void *ctx, float *buf, size_t n)
{
    timed *t = ctx;
    double t0 = now();
    t->inner->allreduce_sum(t->inner->ctx, buf, n);
    double t1 = now();
    t->allreduce_s += t1 - t0;
    record(t, 'r', t0, t1);
}

static void t_allgather(void *ctx, const void *send, void *recv, size_t bytes)
{
    timed *t = ctx;
    double t0 = now();
    t->inner->allgather(t->inner->ctx, send, recv, bytes);
    double t1 = now();
    t->allgather_s += t1 - t0;
    record(t, 'g', t0, t1);
}

/* A sharded loss's gather backward (docs/scale.md): timed and recorded as the gather's. */
static void t_reduce_scatter(void *ctx, const float *send, float *recv, size_t n)
{
    timed *t = ctx;
    double t0 = now();
    t->inner->reduce_scatter(t->inner->ctx, send, recv, n);
    double t1 = now();
    t->allgather_s += t1 - t0;
    record(t, 'g', t0, t1);
}

/* The overlapped buckets (train.allreduce_bucket_mb): starting and progressing them counts as
 * allreduce time; the wait, the part backward did not hide, is recorded as the "ar" call. */
static void t_iallreduce(void *ctx, float *buf, size_t n)
{
    timed *t = ctx;
    double t0 = now();
    t->inner->iallreduce_sum(t->inner->ctx, buf, n);
    t->allreduce_s += now() - t0;
}

static void t_progress(void *ctx)
{
    timed *t = ctx;
    double t0 = now();
    t->inner->progress(t->inner->ctx);
    t->allreduce_s += now() - t0;
}

static void t_wait_all(void *ctx)
{
    timed *t = ctx;
    double t0 = now();
    t->inner->wait_all(t->inner->ctx);
    double t1 = now();
    t->allreduce_s += t1 - t0;
    record(t, 'r', t0, t1);
}

static void t_allreduce_f64(void *ctx, double *buf, size_t n)
{
    timed *t = ctx;
    t->inner->allreduce_sum_f64(t->inner->ctx, buf, n);
}

static void t_bcast(void *ctx, void *buf, size_t bytes)
{
    timed *t = ctx;
    t->inner->bcast(t->inner->ctx, buf, bytes);
}

/* PREFIX.<rank>: "ar"/"ag" ENTRY EXIT per recorded call, in call order; 0 on failure */
static int write_times(const char *prefix, int rank, const timed *t)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.%d", prefix, rank);
    FILE *f = fopen(path, "w");
    if (!f)
        return 0;
    for (size_t i = 0; i < t->n_span; i++)
        fprintf(f, "%s %.9f %.9f\n", t->kind[i] == 'r' ? "ar" : "ag", t->span[i][0], t->span[i][1]);
    return fclose(f) == 0;
}

int main(int argc, char **argv)
{
    const dml_comm *mpi = dml_cli_mpi_open(&argc, &argv);
    int steps = 50, warmup = 5, n_sets = 0;
    char **sets = calloc((size_t)argc, sizeof *sets);
    const char *config = NULL, *times = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--times") && i + 1 < argc)
            times = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc)
            sets[n_sets++] = argv[++i];
        else
            config = argv[i];
    }
    dml_config *cfg = malloc(sizeof *cfg);
    dml_error err = {0};
    if (times && !mpi)
        fprintf(stderr, "bench_scale: --times needs mpirun (one process makes no calls)\n");
    dml_status st = !config || !sets || !cfg || (times && !mpi)
                        ? DML_ERR_USAGE
                        : dml_config_load(config, n_sets, sets, cfg, &err);
    timed t = {mpi, 0.0, 0.0, NULL, NULL, 0, 0};
    dml_comm comm = {mpi ? mpi->rank : 0, mpi ? mpi->size : 1, &t, t_allreduce, t_allreduce_f64,
                     t_allgather, t_bcast, t_reduce_scatter, t_iallreduce, t_progress,
                     t_wait_all};
    FILE *quiet = fopen("/dev/null", "w");
    dml_train_opts opts = {.out_dir = "/nonexistent", .log = quiet, .comm = mpi ? &comm : NULL};
    dml_run *r = NULL;
    if (st == DML_OK)
        st = dml_run_open(cfg, &opts, &r, &err);
    double t0 = 0.0;
    for (int i = 0; st == DML_OK && i < warmup + steps; i++) {
        if (i == warmup) {
            t.allreduce_s = t.allgather_s = 0.0;
            /* one allreduce and at most a few gathers a step; calls past the room go unrecorded */
            t.cap_span = times && steps > 0 ? 8 * (size_t)steps : 0;
            t.kind = t.cap_span ? malloc(t.cap_span) : NULL;
            t.span = t.cap_span ? malloc(t.cap_span * sizeof *t.span) : NULL;
            if (!t.kind || !t.span)
                t.cap_span = 0;
            t0 = now();
        }
        st = dml_run_step(r, NULL, NULL, &err);
    }
    double seconds = now() - t0;
    if (st == DML_OK && comm.rank == 0)
        printf("{\"ranks\": %d, \"batch\": %d, \"steps\": %d, \"seconds\": %.6f, "
               "\"samples_per_s\": %.1f, \"allreduce_share\": %.4f, \"allgather_share\": %.4f, "
               "\"param_floats\": %zu}\n",
               comm.size, r->batch, steps, seconds, r->batch * steps / seconds,
               t.allreduce_s / seconds, t.allgather_s / seconds, r->n_floats);
    if (st == DML_OK && times && mpi && !write_times(times, comm.rank, &t)) {
        fprintf(stderr, "bench_scale (rank %d): cannot write %s.%d\n", comm.rank, times, comm.rank);
        st = DML_ERR_IO;
    }
    if (st != DML_OK) {
        char msg[2048];
        dml_error_format(&err, msg, sizeof msg);
        fprintf(stderr, "bench_scale (rank %d): %s\n", comm.rank, msg);
    }
    free(t.kind);
    free(t.span);
    dml_run_close(r);
    fclose(quiet);
    free(cfg);
    free(sets);
    dml_cli_mpi_close();
    return st == DML_OK ? 0 : 1;
}
