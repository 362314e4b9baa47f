/* The configured distance between two row sets, built from nn's ops. */
#include <string.h>

#include "losses/loss_table.h"

dml_tensor *dml_distance_matrix(dml_graph *g, dml_tensor *a, dml_tensor *b, dml_distance dist)
{
    switch (dist) {
    case DML_DIST_EUCLIDEAN: return dml_pairwise_dist(g, a, b, 0);
    case DML_DIST_SQUARED_EUCLIDEAN: return dml_pairwise_dist(g, a, b, 1);
    case DML_DIST_COSINE: {
        dml_tensor *an = dml_l2_normalize(g, a);
        dml_tensor *bn = a == b ? an : dml_l2_normalize(g, b);
        return dml_affine(g, dml_matmul(g, an, bn, 1), -1.0f, 1.0f);
    }
    }
    return NULL;
}

dml_tensor *dml_distance_refs(const dml_loss_input *in, dml_distance dist,
                              const int32_t **ref_labels)
{
    dml_tensor *d = dml_distance_matrix(in->g, in->z, in->z, dist);
    *ref_labels = in->labels;
    if (!in->refs || !d)
        return d;
    /* the batch's labels, then the references': arena memory, as the step's tensors */
    size_t b = (size_t)in->z->rows, k = (size_t)in->refs->rows;
    int32_t *y = dml_graph_alloc(in->g, (b + k) * sizeof *y);
    if (!y)
        return NULL;
    memcpy(y, in->labels, b * sizeof *y);
    if (in->ref_labels)
        memcpy(y + b, in->ref_labels, k * sizeof *y);
    else /* unlabelled references: none is a positive */
        for (size_t i = 0; i < k; i++)
            y[b + i] = -1;
    *ref_labels = y;
    return dml_concat_cols(in->g, d, dml_distance_matrix(in->g, in->z, in->refs, dist));
}
