/* The table of nn's ops: the one list the gradient tests walk, so an op added without a
 * row here (and a check there) is caught. */
#include "nn/nn.h"

extern const dml_op_def dml_op_matmul, dml_op_dense, dml_op_dense_relu, dml_op_add, dml_op_scale,
    dml_op_sum, dml_op_mse, dml_op_relu, dml_op_leaky_relu, dml_op_tanh, dml_op_gelu,
    dml_op_sigmoid, dml_op_l2_normalize, dml_op_slice_cols, dml_op_concat_cols,
    dml_op_concat_rows, dml_op_pairwise_dist;

const dml_op_def *const dml_nn_ops[] = {
    &dml_op_matmul,      &dml_op_dense,      &dml_op_add,         &dml_op_scale,
    &dml_op_sum,         &dml_op_mse,        &dml_op_relu,        &dml_op_leaky_relu,
    &dml_op_tanh,        &dml_op_gelu,       &dml_op_sigmoid,     &dml_op_l2_normalize,
    &dml_op_slice_cols,  &dml_op_concat_cols, &dml_op_pairwise_dist, &dml_op_dense_relu,
    &dml_op_concat_rows,
};

const int dml_nn_op_count = (int)(sizeof dml_nn_ops / sizeof dml_nn_ops[0]);
