/* losses/: metric losses, miners and the joint quantization term, as losses.md defines them.
 * Each maps embedding tensors (plus labels or pairs) to a [1,1] loss node on the tape; miners
 * work on the shared pairwise distance matrix. Labels are int32 per row, not copied: they must
 * outlive the step.
 *
 * Edge cases (all give a zero loss with zero gradient, never NaN): a batch with no positive
 * pair, a batch with no negative (one class only), every hinge inactive (mean_nonzero then
 * divides by nothing and returns 0), duplicate rows (distance 0 has a zero gradient), B = 2. */
#ifndef DML_LOSSES_H
#define DML_LOSSES_H

#include "nn/nn.h"

typedef enum dml_distance {
    DML_DIST_EUCLIDEAN,
    DML_DIST_SQUARED_EUCLIDEAN,
    DML_DIST_COSINE /* 1 - cos */
} dml_distance;

typedef enum dml_miner { DML_MINER_ALL, DML_MINER_HARD, DML_MINER_SEMIHARD } dml_miner;

typedef enum dml_reduction { DML_REDUCE_MEAN, DML_REDUCE_MEAN_NONZERO } dml_reduction;

/* The loss ops, one table the gradient tests walk (see losses/ops.c). */
extern const dml_op_def *const dml_loss_ops[];
extern const int dml_loss_op_count;

/* D[i,j] between the rows of a and b under the configured distance. */
dml_tensor *dml_distance_matrix(dml_graph *g, dml_tensor *a, dml_tensor *b, dml_distance dist);

/* Cosine similarities S [B, B + K] of z's rows against z's own rows, then refs' K rows (refs
 * NULL: K = 0), all L2-normalised: the input of the similarity losses below. */
dml_tensor *dml_cosine_sim_refs(dml_graph *g, dml_tensor *z, dml_tensor *refs);

/* A loss computed over one rank's anchors (docs/scale.md, "The sharded loss"): the anchors are
 * rows [lo, lo + n) of the global batch, the rows of its matrices against every candidate; the
 * loss's sums and counts are summed over the ranks with sum (in place, v[n], the same on every
 * rank), so each rank's value is the global loss. NULL wherever a loss takes one: every row an
 * anchor, one process's arithmetic. */
typedef struct dml_loss_shard {
    int lo, n;
    void (*sum)(void *ctx, double *v, int n);
    void *ctx;
} dml_loss_shard;

/* Contrastive (Hadsell et al. 2006) over all ordered pairs i != j of d [B,B]:
 * positives [d - pos_margin]+^p, negatives [neg_margin - d]+^p. */
dml_tensor *dml_loss_contrastive(dml_graph *g, dml_tensor *d, const int32_t *labels,
                                 float pos_margin, float neg_margin, int power,
                                 dml_reduction reduction);
/* The same over d [B, N] of the batch against N references whose first B are the batch itself
 * and the rest extra rows (a cross-batch memory), labelled ref_labels[N]: the pairs (i, j) for
 * j != i, B (N - 1) of them. With shard, d's rows are the anchors lo.. of the batch. */
dml_tensor *dml_loss_contrastive_refs(dml_graph *g, dml_tensor *d, const int32_t *labels,
                                      const int32_t *ref_labels, float pos_margin,
                                      float neg_margin, int power, dml_reduction reduction,
                                      const dml_loss_shard *shard);

/* Triplet [d(a,p) - d(a,n) + margin]+ (or softplus when soft) over the triplets a miner picks
 * from d [B,B]: all (every valid triplet), hard (farthest positive, nearest negative per
 * anchor), semihard (FaceNet: the nearest negative farther than the positive within the
 * margin, else the hardest negative). */
dml_tensor *dml_loss_triplet(dml_graph *g, dml_tensor *d, const int32_t *labels, float margin,
                             dml_miner miner, int soft, dml_reduction reduction);
/* The same over d [B, N] of the batch against N references whose first B are the batch itself
 * and the rest extra rows (a cross-batch memory), labelled ref_labels[N]: each anchor's
 * positives and negatives are drawn from all N (a itself excluded). With shard, d's rows are
 * the anchors lo.. of the batch. */
dml_tensor *dml_loss_triplet_refs(dml_graph *g, dml_tensor *d, const int32_t *labels,
                                  const int32_t *ref_labels, float margin, dml_miner miner, int soft,
                                  dml_reduction reduction, const dml_loss_shard *shard);
/* The same over explicit triplets: rows anchor[t], positive[t], negative[t] of d. */
dml_tensor *dml_loss_triplet_explicit(dml_graph *g, dml_tensor *d, const int32_t *anchor,
                                      const int32_t *positive, const int32_t *negative, int n,
                                      float margin, int soft, dml_reduction reduction);

/* Multiple negatives ranking (Henderson et al. 2017): S = scale * cos(a_i, p_j); cross-entropy
 * with target i. hard_neg [B,D] (may be NULL) adds candidates for every anchor; labels (may be
 * NULL) drop off-diagonal candidates of the anchor's label; symmetric adds p_i -> a_i. */
dml_tensor *dml_loss_mnr(dml_graph *g, dml_tensor *a, dml_tensor *p, dml_tensor *hard_neg,
                         const int32_t *labels, float scale, int symmetric);
/* The same with extra [K, D] candidates for every anchor (hard negatives, or a cross-batch
 * memory of earlier positives), labelled extra_labels[K] (NULL: none is dropped); with labels,
 * an extra candidate of the anchor's label is dropped, as the batch's other positives are.
 * symmetric's p_i -> a_i terms rank among the batch's anchors only. With shard, a and p are the
 * whole batch and only the anchors (and, symmetric, the positives) lo .. lo + n are this rank's
 * terms. */
dml_tensor *dml_loss_mnr_extra(dml_graph *g, dml_tensor *a, dml_tensor *p, dml_tensor *extra,
                               const int32_t *labels, const int32_t *extra_labels, float scale,
                               int symmetric, const dml_loss_shard *shard);

/* Supervised contrastive (Khosla et al. 2020, L_out; PML's SupConLoss): over the rows of z, and
 * with zp (may be NULL) the rows of both views, the view i + B the second view of row i. Anchor
 * i's loss is -(1/|P(i)|) sum_{p in P(i)} log softmax_{a != i}(s_ia / temperature)_p, s the
 * cosines, P(i) the other rows and views of i's label (labels NULL: only i's other view, SimCLR's
 * NT-Xent). 0 when the batch has no positive or no negative pair; else the mean over the
 * anchors whose loss is > 0 (PML's AvgNonZeroReducer). With shard, the anchors are rows lo.. of
 * z (and of zp) against every row of both, the mean over every rank's anchors. */
dml_tensor *dml_loss_supcon(dml_graph *g, dml_tensor *z, dml_tensor *zp, const int32_t *labels,
                            float temperature, const dml_loss_shard *shard);

/* Additive angular (ArcFace, Deng et al. 2019) and additive cosine (CosFace, Wang et al. 2018)
 * margin softmax, PML's ArcFaceLoss, CosFaceLoss and SubCenterArcFaceLoss: cos = normalised(z)
 * normalised(w)^T against w [n_classes * sub_centers, D] (class c's sub-centres at rows
 * c * sub_centers ..), a class's cosine the largest of its sub-centres'; the true class's cosine
 * t becomes cos(acos(t) + margin) (ArcFace, margin in radians) or t - margin (CosFace); the
 * cross-entropy of scale times these logits, mean over rows. Gradients flow into z and w.
 * labels[i] must lie in [0, n_classes). */
dml_tensor *dml_loss_arcface(dml_graph *g, dml_tensor *z, dml_tensor *w, const int32_t *labels,
                             int n_classes, int sub_centers, float margin, float scale);
dml_tensor *dml_loss_cosface(dml_graph *g, dml_tensor *z, dml_tensor *w, const int32_t *labels,
                             int n_classes, int sub_centers, float margin, float scale);
/* Proxy Anchor (Kim et al. 2020) of rows z [B, D] labelled 0..C-1 against one proxy per class,
 * proxies [C, D] (learned: the gradient flows into both), on cosines; losses/proxy_anchor.c. */
dml_tensor *dml_loss_proxy_anchor(dml_graph *g, dml_tensor *z, dml_tensor *proxies,
                                  const int32_t *labels, float margin, float alpha);

/* DQN's pairwise cosine loss: mean over i != j of (s_ij - cos(z_i, z_j))^2, s = +1 for the
 * same label, -1 otherwise. With shard, only rows lo.. of z are this rank's i, the mean still
 * over the whole batch's pairs. */
dml_tensor *dml_loss_cosine_pair(dml_graph *g, dml_tensor *z, const int32_t *labels,
                                 const dml_loss_shard *shard);

/* The similarity losses read S [B, N] of cosines of the batch's rows against N references
 * whose first B are the batch itself (column i of row i is never a pair) and the rest extra
 * rows (a cross-batch memory), labelled ref_labels[N]. A row with no positive or no negative
 * adds nothing: zero loss, zero gradient.
 *
 * Multi-Similarity (Wang et al. 2019), PML's MultiSimilarityLoss: per row i, with P_i and N_i
 * its positive and negative references,
 *   L_i = (1/alpha) log(1 + sum_P exp(-alpha (s - base)))
 *       + (1/beta) log(1 + sum_N exp(beta (s - base))),
 * L = (1/B) sum_i L_i (a row without a positive or a negative counts in B with 0). With mine,
 * the pairs are first those PML's MultiSimilarityMiner keeps: a positive with s - epsilon < the
 * row's largest negative s, a negative with s + epsilon > the row's smallest positive s. With
 * shard, s's rows are the anchors lo.. of the batch and the mean is over every rank's rows. */
dml_tensor *dml_loss_multi_similarity(dml_graph *g, dml_tensor *s, const int32_t *labels,
                                      const int32_t *ref_labels, float alpha, float beta,
                                      float base, int mine, float epsilon,
                                      const dml_loss_shard *shard);
/* Circle loss (Sun et al. 2020), PML's CircleLoss: per row with both positives and negatives,
 * L_i = softplus(lse_N(gamma a_n (s - m)) + lse_P(-gamma a_p (s - 1 + m))), the weights
 * a_p = [1 + m - s]+ and a_n = [s + m]+ held constant (no gradient through them); L the mean
 * over those rows. The weights are computed from weights_at [B, N] when it is not NULL, else
 * from S: a gradient check fixes them there, at the point it checks, to see the function whose
 * gradient this is. With shard, s's rows are the anchors lo.. of the batch and the mean is over
 * every rank's rows with a loss. */
dml_tensor *dml_loss_circle(dml_graph *g, dml_tensor *s, dml_tensor *weights_at,
                            const int32_t *labels, const int32_t *ref_labels, float m, float gamma,
                            const dml_loss_shard *shard);

/* Binary cross-entropy of sigmoid(logits) against targets in [0, 1], mean over elements,
 * computed stably from the logits. */
dml_tensor *dml_loss_bce_logits(dml_graph *g, dml_tensor *logits, dml_tensor *target);

/* The quantization term of the joint loss: (1/B) sum_i |z_i - q(z_i)|^2, q the nearest
 * codeword under pq (codes reassigned in forward). The gradient flows into z only. */
dml_tensor *dml_loss_quantization(dml_graph *g, dml_tensor *z, const dml_pq *pq);

#endif
