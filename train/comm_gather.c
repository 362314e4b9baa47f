/* The gather node of data-parallel training (train/comm.h): forward allgathers the local rows,
 * backward keeps this rank's block of the global gradient. */
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

static const dml_op_def gather_op = {"comm_gather", gather_forward, gather_backward};

dml_tensor *dml_comm_gather(dml_graph *g, const dml_comm *comm, dml_tensor *x)
{
    if (!x)
        return NULL;
    dml_tensor *out = dml_graph_node(g, &gather_op, comm->size * x->rows, x->cols, x, NULL, NULL);
    if (out)
        out->ctx = comm;
    return dml_graph_run(g, out);
}
