/* The table of the losses' ops: the list tests/test_losses.c walks, so a loss op added
 * without a row here (and a gradient check there) is caught. */
#include "losses/losses.h"

extern const dml_op_def dml_op_triplet, dml_op_contrastive, dml_op_mnr, dml_op_cosine_pair,
    dml_op_bce_logits, dml_op_quantization, dml_op_multi_similarity, dml_op_circle, dml_op_supcon,
    dml_op_margin_softmax, dml_op_proxy_anchor;

const dml_op_def *const dml_loss_ops[] = {
    &dml_op_triplet,     &dml_op_contrastive, &dml_op_mnr,
    &dml_op_cosine_pair, &dml_op_bce_logits,  &dml_op_quantization,
    &dml_op_multi_similarity, &dml_op_circle, &dml_op_supcon, &dml_op_margin_softmax,
    &dml_op_proxy_anchor,
};

const int dml_loss_op_count = (int)(sizeof dml_loss_ops / sizeof dml_loss_ops[0]);
