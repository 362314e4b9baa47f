/* The configured distance between two row sets, built from nn's ops, and the cosine
 * similarities and labels of a batch against itself and extra references. */
#include <string.h>

#include "losses/losses.h"

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

dml_tensor *dml_cosine_sim_refs(dml_graph *g, dml_tensor *z, dml_tensor *refs)
{
    dml_tensor *zn = dml_l2_normalize(g, z);
    dml_tensor *s = dml_matmul(g, zn, zn, 1);
    return refs ? dml_concat_cols(g, s, dml_matmul(g, zn, dml_l2_normalize(g, refs), 1)) : s;
}

const int32_t *dml_labels_with_refs(dml_graph *g, const int32_t *labels, int b,
                                    const int32_t *ref_labels, int k)
{
    if (k == 0)
        return labels;
    int32_t *all = dml_graph_alloc(g, ((size_t)b + (size_t)k) * sizeof *all);
    if (!all)
        return NULL;
    memcpy(all, labels, (size_t)b * sizeof *all);
    memcpy(all + b, ref_labels, (size_t)k * sizeof *all);
    return all;
}
