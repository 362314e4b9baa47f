/* The gather nodes of data-parallel training (train/comm.h): forward allgathers the local rows,
 * backward keeps this rank's block of the global gradient, or of its sum over the ranks. */
#include <string.h>

#include "train/comm.h"

static void gather_forward(dml_tensor *out)
{
    const dml_tensor *x = out->src[0];
    const dml_comm *comm = out->ctx;
    comm->allgather(comm->ctx, x->data, out->data, (size_t)x->rows * x->cols * sizeof(float));
}

/* Every rank holds the whole loss, so the global gradient is the same on every rank: rows
 * [rank * n, (rank + 1) * n) of it are d(loss)/d(x) for this rank's x, nothing to sum. */
static void gather_backward(dml_tensor *out)
{
    dml_tensor *x = out->src[0];
    const dml_comm *comm = out->ctx;
    size_t n = (size_t)x->rows * x->cols;
    const float *g = out->grad + (size_t)comm->rank * n;
    if (x->grad)
        for (size_t i = 0; i < n; i++)
            x->grad[i] += g[i];
}

/* Each rank's gradient is its anchors' part: the sum over the ranks of rows [rank * n, (rank +
 * 1) * n) is d(loss)/d(x). out->cache: [n] for the reduce-scatter's result. */
static void gather_summed_backward(dml_tensor *out)
{
    dml_tensor *x = out->src[0];
    const dml_comm *comm = out->ctx;
    size_t n = (size_t)x->rows * x->cols;
    float *sum = out->cache;
    comm->reduce_scatter(comm->ctx, out->grad, sum, n);
    if (x->grad)
        for (size_t i = 0; i < n; i++)
            x->grad[i] += sum[i];
}

static const dml_op_def gather_op = {"comm_gather", gather_forward, gather_backward};
static const dml_op_def gather_summed_op = {"comm_gather_summed", gather_forward,
                                            gather_summed_backward};

static dml_tensor *gather_node(dml_graph *g, const dml_op_def *op, const dml_comm *comm,
                               dml_tensor *x)
{
    if (!x)
        return NULL;
    dml_tensor *out = dml_graph_node(g, op, comm->size * x->rows, x->cols, x, NULL, NULL);
    if (out)
        out->ctx = comm;
    return out;
}

dml_tensor *dml_comm_gather(dml_graph *g, const dml_comm *comm, dml_tensor *x)
{
    return dml_graph_run(g, gather_node(g, &gather_op, comm, x));
}

dml_tensor *dml_comm_gather_summed(dml_graph *g, const dml_comm *comm, dml_tensor *x)
{
    dml_tensor *out = gather_node(g, &gather_summed_op, comm, x);
    if (out && !(out->cache = dml_graph_alloc(g, (size_t)x->rows * x->cols * sizeof(float))))
        return NULL;
    return dml_graph_run(g, out);
}
