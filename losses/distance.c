/* The configured distance between two row sets, built from nn's ops, and the distances or
 * cosines of a batch against itself and extra references. */
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

/* The labels of in's references: the batch's, then in->refs' (in->labels itself without refs);
 * NULL when memory ran out. */
static const int32_t *reference_labels(const dml_loss_input *in)
{
    if (!in->refs)
        return in->labels;
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
    return y;
}

dml_tensor *dml_loss_shard_rows(dml_graph *g, dml_tensor *x, const dml_loss_shard *shard)
{
    if (!shard || !x)
        return x;
    size_t at = (size_t)shard->lo * x->cols;
    return dml_leaf(g, x->data + at, x->grad ? x->grad + at : NULL, shard->n, x->cols);
}

dml_tensor *dml_distance_refs(const dml_loss_input *in, dml_distance dist,
                              const int32_t **ref_labels)
{
    dml_tensor *a = dml_loss_shard_rows(in->g, in->z, in->shard);
    dml_tensor *d = dml_distance_matrix(in->g, a, in->z, dist);
    *ref_labels = in->labels;
    if (!in->refs || !d)
        return d;
    if (!(*ref_labels = reference_labels(in)))
        return NULL;
    return dml_concat_cols(in->g, d, dml_distance_matrix(in->g, a, in->refs, dist));
}

dml_tensor *dml_cosine_sim_refs(dml_graph *g, dml_tensor *z, dml_tensor *refs)
{
    dml_tensor *zn = dml_l2_normalize(g, z);
    dml_tensor *s = dml_matmul(g, zn, zn, 1);
    return refs ? dml_concat_cols(g, s, dml_matmul(g, zn, dml_l2_normalize(g, refs), 1)) : s;
}

dml_tensor *dml_similarity_refs(const dml_loss_input *in, const int32_t **ref_labels)
{
    if (!in->z || !(*ref_labels = reference_labels(in)))
        return NULL;
    if (!in->shard)
        return dml_cosine_sim_refs(in->g, in->z, in->refs);
    /* the shard's anchors normalised on their own: the same rows as the whole batch's */
    dml_graph *g = in->g;
    dml_tensor *an = dml_l2_normalize(g, dml_loss_shard_rows(g, in->z, in->shard));
    dml_tensor *s = dml_matmul(g, an, dml_l2_normalize(g, in->z), 1);
    return in->refs ? dml_concat_cols(g, s, dml_matmul(g, an, dml_l2_normalize(g, in->refs), 1))
                    : s;
}
