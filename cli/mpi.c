/* The trainer's communicator (train/comm.h) over MPI: only the dml binary links MPI, libdml
 * never does. MPI is initialised only when mpirun launched the process (OpenMPI sets
 * OMPI_COMM_WORLD_SIZE), so a plain `dml train` runs exactly the single-process path. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>

#include "cli/cli.h"

static dml_comm world;
static int initialised;

static void allreduce_sum(void *ctx, float *buf, size_t n)
{
    (void)ctx;
    /* One call per step: counts above INT_MAX floats (8 GB of gradients) go in pieces. */
    for (size_t off = 0; off < n; off += INT_MAX) {
        size_t k = n - off < (size_t)INT_MAX ? n - off : (size_t)INT_MAX;
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

static void allreduce_sum_f64(void *ctx, double *buf, size_t n)
{
    (void)ctx;
    for (size_t off = 0; off < n; off += INT_MAX) {
        size_t k = n - off < (size_t)INT_MAX ? n - off : (size_t)INT_MAX;
        MPI_Allreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
}

static void allgather(void *ctx, const void *send, void *recv, size_t bytes)
{
    (void)ctx;
    if (bytes > INT_MAX) /* a step's embeddings: never near 2 GB */
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
}

static void bcast(void *ctx, void *buf, size_t bytes)
{
    (void)ctx;
    if (bytes > INT_MAX)
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
}

static void reduce_scatter(void *ctx, const float *send, float *recv, size_t n)
{
    (void)ctx;
    if (n > INT_MAX) /* a rank's embeddings: never near 8 GB */
        MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Reduce_scatter_block(send, recv, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

/* The open nonblocking sums: the array grows in a run's first step only (as many as its
 * buckets), then is reused. */
static MPI_Request *open_req;
static int n_open, cap_open;

static void iallreduce_sum(void *ctx, float *buf, size_t n)
{
    (void)ctx;
    if (n > INT_MAX) /* a bucket is a few MB */
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (n_open == cap_open) {
        int cap = cap_open ? 2 * cap_open : 16;
        MPI_Request *req = realloc(open_req, (size_t)cap * sizeof *req);
        if (!req)
            MPI_Abort(MPI_COMM_WORLD, 1);
        open_req = req;
        cap_open = cap;
    }
    MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                   &open_req[n_open++]);
}

static void progress(void *ctx)
{
    (void)ctx;
    int done;
    if (n_open)
        MPI_Testall(n_open, open_req, &done, MPI_STATUSES_IGNORE);
}

static void wait_all(void *ctx)
{
    (void)ctx;
    MPI_Waitall(n_open, open_req, MPI_STATUSES_IGNORE);
    n_open = 0;
}

/* Point-to-point messages stay under this size whatever the rows add up to. */
#define COLLECT_CHUNK ((size_t)64 << 20)

void dml_cli_mpi_collect(const dml_comm *c, void *all, const void *mine, const size_t *offset,
                         const size_t *bytes)
{
    for (int k = 1; k < c->size; k++) {
        if (c->rank != 0 && c->rank != k)
            continue;
        for (size_t off = 0; off < bytes[k]; off += COLLECT_CHUNK) {
            int n = (int)(bytes[k] - off < COLLECT_CHUNK ? bytes[k] - off : COLLECT_CHUNK);
            if (c->rank == 0)
                MPI_Recv((char *)all + offset[k] + off, n, MPI_BYTE, k, 0, MPI_COMM_WORLD,
                         MPI_STATUS_IGNORE);
            else
                MPI_Send((const char *)mine + off, n, MPI_BYTE, 0, 0, MPI_COMM_WORLD);
        }
    }
}

void dml_cli_mpi_share_rows(void *ctx, void *buf, size_t row_bytes, const int *row_begin)
{
    const dml_comm *c = ctx;
    int *counts = malloc(2 * (size_t)c->size * sizeof *counts), *displs = counts + c->size;
    if (!counts || (size_t)row_begin[c->size] * row_bytes > INT_MAX) /* eval's per-query rows */
        MPI_Abort(MPI_COMM_WORLD, 1);
    for (int k = 0; k < c->size; k++) {
        counts[k] = (int)((size_t)(row_begin[k + 1] - row_begin[k]) * row_bytes);
        displs[k] = (int)((size_t)row_begin[k] * row_bytes);
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, MPI_BYTE,
                   MPI_COMM_WORLD);
    free(counts);
}

int dml_cli_mpi_first_failure(const dml_comm *c, int failed)
{
    int first = failed ? c->rank : c->size;
    MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return first < c->size ? first : -1;
}

const dml_comm *dml_cli_mpi_open(int *argc, char ***argv)
{
    if (!getenv("OMPI_COMM_WORLD_SIZE"))
        return NULL;
    MPI_Init(argc, argv);
    initialised = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    world.allreduce_sum = allreduce_sum;
    world.allreduce_sum_f64 = allreduce_sum_f64;
    world.allgather = allgather;
    world.bcast = bcast;
    world.reduce_scatter = reduce_scatter;
    world.iallreduce_sum = iallreduce_sum;
    world.progress = progress;
    world.wait_all = wait_all;
    return world.size > 1 ? &world : NULL; /* mpirun -np 1: the single-process path */
}

void dml_cli_mpi_close(void)
{
    if (initialised)
        MPI_Finalize();
    initialised = 0;
    free(open_req);
    open_req = NULL;
    n_open = cap_open = 0;
}
