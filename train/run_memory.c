/* loss.memory: cross-batch memory (Wang et al., CVPR 2020, "Cross-Batch Memory for Embedding
 * Learning"). A ring of the last `size` embeddings of earlier batches and their labels, kept
 * outside the tape: they are extra references for the loss (contrastive: more pairs; MNR: more
 * candidates), with no gradient flowing into them. Embeddings drift slowly once training has
 * settled, which is why stale rows still carry signal and why loss.memory.start_step waits.
 *
 * The step's own embeddings join the ring only after backward (dml_memory_push), so a batch
 * never meets itself in the memory, and backward reads the memory as forward saw it. Under
 * several ranks every rank pushes the whole gathered batch, so the rings stay equal. */
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

dml_status dml_memory_init(dml_memory *m, int size, int dim, dml_error *err)
{
    memset(m, 0, sizeof *m);
    if (size == 0)
        return DML_OK;
    m->size = size;
    m->dim = dim;
    m->x = malloc((size_t)size * dim * sizeof(float));
    m->y = calloc((size_t)size, sizeof *m->y);
    if (!m->x || !m->y)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                             "out of memory for loss.memory (%d rows of %d)", size, dim);
    return DML_OK;
}

void dml_memory_free(dml_memory *m)
{
    free(m->x);
    free(m->y);
    memset(m, 0, sizeof *m);
}

size_t dml_memory_arena_bytes(int size, int dim, int batch)
{
    /* The memory's part of a step's tape: the batch-by-memory scores and their gradient, their
     * concatenation with the batch's own (twice over, with the loss's saved softmax terms, or
     * a triplet miner's three index lists), the normalised memory rows with their gradient
     * buffers, and the references' labels (losses/distance.c's dml_distance_refs). */
    size_t b = (size_t)batch, k = (size_t)size;
    return sizeof(float) * (9 * b * (b + k) + 3 * k * (size_t)dim + 4 * k) +
           sizeof(int32_t) * (b + k) + (1u << 16);
}

dml_tensor *dml_memory_refs(const dml_memory *m, dml_graph *g)
{
    return m->n > 0 ? dml_leaf(g, m->x, NULL, m->n, m->dim) : NULL;
}

void dml_memory_hold(dml_memory *m, const float *z, const int32_t *y, int b)
{
    m->held = z;
    m->held_y = y;
    m->n_held = b;
}

void dml_memory_push(dml_memory *m)
{
    for (int i = 0; i < m->n_held; i++) {
        memcpy(m->x + (size_t)m->head * m->dim, m->held + (size_t)i * m->dim,
               (size_t)m->dim * sizeof(float));
        m->y[m->head] = m->held_y ? m->held_y[i] : 0;
        m->head = (m->head + 1) % m->size;
        if (m->n < m->size)
            m->n++;
    }
    m->n_held = 0;
}
