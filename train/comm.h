/* The communicator the trainer is handed for data-parallel training over several processes
 * (docs/scale.md). train/ knows nothing of MPI: the dml binary implements this over MPI
 * (cli/mpi.c), and libdml, serve/ above all, links no MPI. NULL everywhere means one process,
 * exactly the single-process code path.
 *
 * The calls are collective: every rank makes the same calls in the same order. A failure is
 * not returned: the implementation aborts the whole job (MPI's default error handler), since a
 * rank cannot go on alone. */
#ifndef DML_TRAIN_COMM_H
#define DML_TRAIN_COMM_H

#include <stddef.h>

#include "nn/nn.h"

typedef struct dml_comm {
    int rank, size;
    void *ctx;
    /* buf[n] summed element-wise over the ranks, in place; every rank gets the same bits */
    void (*allreduce_sum)(void *ctx, float *buf, size_t n);
    void (*allreduce_sum_f64)(void *ctx, double *buf, size_t n); /* the same in double */
    /* send[bytes] of every rank, in rank order, into recv[size * bytes] */
    void (*allgather)(void *ctx, const void *send, void *recv, size_t bytes);
    /* buf[bytes] of rank 0 into every rank's buf */
    void (*bcast)(void *ctx, void *buf, size_t bytes);
    /* send[size * n] summed element-wise over the ranks, this rank's block of n into recv[n]
     * (1/N of an allreduce's bytes) */
    void (*reduce_scatter)(void *ctx, const float *send, float *recv, size_t n);
    /* Nonblocking sums (train.allreduce_bucket_mb, docs/scale.md): iallreduce_sum starts
     * allreduce_sum's sum of buf[n], complete only after wait_all returns (buf untouched until
     * then); progress lets the open sums advance while the caller computes (MPI over TCP moves a
     * nonblocking collective only inside MPI calls). NULL: the communicator has none, and the
     * trainer sums in one blocking call. */
    void (*iallreduce_sum)(void *ctx, float *buf, size_t n);
    void (*progress)(void *ctx);
    void (*wait_all)(void *ctx);
} dml_comm;

/* A tape node: x[n, d] of every rank gathered in rank order into [size * n, d]. Its backward
 * hands this rank's rows of the gathered gradient back to x: a loss that couples the rows of a
 * batch is computed over the global batch on every rank (the same numbers everywhere), and each
 * rank back-propagates only its own rows' part through its encoder. x without a gradient (an
 * input) is gathered as data only. */
dml_tensor *dml_comm_gather(dml_graph *g, const dml_comm *comm, dml_tensor *x);
/* The same gather for a sharded loss (docs/scale.md), where each rank's loss is its own anchors'
 * share: each rank's gradient of the gathered rows is a part of the whole, so the backward sums
 * them over the ranks (a reduce-scatter) and hands this rank its rows' sum. */
dml_tensor *dml_comm_gather_summed(dml_graph *g, const dml_comm *comm, dml_tensor *x);

#endif
