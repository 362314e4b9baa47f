/* The configured distance between two row sets, built from nn's ops. */
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
