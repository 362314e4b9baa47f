/* Finite-difference gradient checks for every op in nn's table, and the ops' edge cases. */
#include "tests/testutil.h"

#include <math.h>
#include <string.h>

/* ---- builders: one per op, from its input leaves ---- */
static dml_tensor *b_matmul(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_matmul(g, in[0], in[1], 0); }
static dml_tensor *b_matmul_t(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_matmul(g, in[0], in[1], 1); }
static dml_tensor *b_dense(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_dense(g, in[0], in[1], in[2]); }
static dml_tensor *b_dense_relu(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_dense_relu(g, in[0], in[1], in[2]); }
static dml_tensor *b_add(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_add(g, in[0], in[1]); }
static dml_tensor *b_scale(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_scale(g, in[0], -1.7f); }
static dml_tensor *b_affine(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_affine(g, in[0], 0.5f, 2.0f); }
static dml_tensor *b_sum(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_sum(g, in[0]); }
static dml_tensor *b_mean(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_mean(g, in[0]); }
static dml_tensor *b_mse(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_mse(g, in[0], in[1]); }
static dml_tensor *b_relu(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_relu(g, in[0]); }
static dml_tensor *b_leaky(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_leaky_relu(g, in[0], 0.1f); }
static dml_tensor *b_tanh(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_tanh(g, in[0]); }
static dml_tensor *b_gelu(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_gelu(g, in[0]); }
static dml_tensor *b_sigmoid(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_sigmoid(g, in[0]); }
static dml_tensor *b_l2(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_l2_normalize(g, in[0]); }
static dml_tensor *b_slice(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_slice_cols(g, in[0], 2, 3); }
static dml_tensor *b_concat(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_concat_cols(g, in[0], in[1]); }
static dml_tensor *b_concat_rows(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_concat_rows(g, in[0], in[1]); }
static dml_tensor *b_dist(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_pairwise_dist(g, in[0], in[1], 0); }
static dml_tensor *b_dist_sq(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_pairwise_dist(g, in[0], in[1], 1); }
static dml_tensor *b_dist_self(dml_graph *g, dml_tensor **in, void *c) { (void)c; return dml_pairwise_dist(g, in[0], in[0], 0); }

typedef struct op_case {
    const char *op; /* the table name this case checks */
    tu_build_fn build;
    int n_in;
    int shape[3][2];
    float eps;
    double tol;
} op_case;

static const op_case CASES[] = {
    {"matmul", b_matmul, 2, {{4, 3}, {3, 5}}, 1e-2f, 2e-3},
    {"matmul", b_matmul_t, 2, {{4, 3}, {5, 3}}, 1e-2f, 2e-3},
    {"dense", b_dense, 3, {{4, 3}, {5, 3}, {1, 5}}, 1e-2f, 2e-3},
    {"dense_relu", b_dense_relu, 3, {{4, 3}, {5, 3}, {1, 5}}, 1e-3f, 2e-3},
    {"add", b_add, 2, {{3, 4}, {3, 4}}, 1e-2f, 2e-3},
    {"scale", b_scale, 1, {{3, 4}}, 1e-2f, 2e-3},
    {"scale", b_affine, 1, {{3, 4}}, 1e-2f, 2e-3},
    {"sum", b_sum, 1, {{3, 4}}, 1e-2f, 2e-3},
    {"sum", b_mean, 1, {{3, 4}}, 1e-2f, 2e-3},
    {"mse", b_mse, 2, {{3, 4}, {3, 4}}, 1e-2f, 2e-3},
    {"relu", b_relu, 1, {{4, 5}}, 1e-3f, 2e-3},
    {"leaky_relu", b_leaky, 1, {{4, 5}}, 1e-3f, 2e-3},
    {"tanh", b_tanh, 1, {{4, 5}}, 1e-3f, 2e-3},
    {"gelu", b_gelu, 1, {{4, 5}}, 1e-3f, 2e-3},
    {"sigmoid", b_sigmoid, 1, {{4, 5}}, 1e-3f, 2e-3},
    {"l2_normalize", b_l2, 1, {{4, 5}}, 1e-3f, 2e-3},
    {"slice_cols", b_slice, 1, {{3, 6}}, 1e-2f, 2e-3},
    {"concat_cols", b_concat, 2, {{3, 2}, {3, 4}}, 1e-2f, 2e-3},
    {"concat_rows", b_concat_rows, 2, {{2, 3}, {4, 3}}, 1e-2f, 2e-3},
    {"pairwise_dist", b_dist, 2, {{5, 4}, {6, 4}}, 1e-3f, 3e-3},
    {"pairwise_dist", b_dist_sq, 2, {{5, 4}, {6, 4}}, 1e-3f, 3e-3},
    {"pairwise_dist", b_dist_self, 1, {{6, 4}}, 1e-3f, 3e-3},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

/* Inputs away from the kinks: relu-like ops get no value within 0.05 of 0. */
static void fill_away_from_zero(float *x, size_t n, uint64_t seed)
{
    tu_fill_normal(x, n, 1.0f, seed);
    for (size_t i = 0; i < n; i++)
        if (fabsf(x[i]) < 0.05f)
            x[i] = x[i] < 0 ? -0.05f - x[i] : 0.05f + x[i];
}

static void run_case(const op_case *c, uint64_t seed)
{
    tu_input in[3];
    float buf[3][64];
    for (int k = 0; k < c->n_in; k++) {
        in[k].rows = c->shape[k][0];
        in[k].cols = c->shape[k][1];
        in[k].no_grad = 0;
        fill_away_from_zero(buf[k], (size_t)in[k].rows * in[k].cols, seed + (uint64_t)k);
        in[k].data = buf[k];
    }
    double worst = tu_gradcheck(c->build, NULL, c->n_in, in, c->eps, c->tol);
    print_message("  %-14s worst scaled error %.2e\n", c->op, worst);
}

static void test_every_op_has_a_gradient_check(void **state)
{
    (void)state;
    for (int i = 0; i < dml_nn_op_count; i++) {
        const dml_op_def *def = dml_nn_ops[i];
        assert_non_null(def->name);
        assert_non_null(def->forward);
        assert_non_null(def->backward);
        int checked = 0;
        for (int k = 0; k < N_CASES; k++)
            if (strcmp(CASES[k].op, def->name) == 0) {
                run_case(&CASES[k], 7 + (uint64_t)k);
                checked = 1;
            }
        if (!checked)
            fail_msg("op '%s' has no gradient check in tests/test_nn_ops.c", def->name);
    }
}

/* A zero row normalises to zero with a finite gradient; so does a row of tiny values. */
static void test_l2_normalize_zero_row(void **state)
{
    (void)state;
    dml_graph g;
    dml_graph_init(&g, 1 << 12);
    float x[6] = {0, 0, 0, 3, 4, 0};
    dml_tensor *in = dml_leaf_copy(&g, x, 2, 3, 1);
    dml_tensor *y = dml_l2_normalize(&g, in);
    assert_float_equal(y->data[0], 0.0f, 0.0f);
    assert_float_equal(y->data[3], 0.6f, 1e-6f);
    assert_float_equal(y->data[4], 0.8f, 1e-6f);
    assert_int_equal(dml_backward(&g, dml_sum(&g, y)), DML_OK);
    for (int i = 0; i < 6; i++)
        assert_true(isfinite(in->grad[i]));
    /* d(sum y)/dx on the non-zero row is (1 - y (y.1)) / |x|. */
    assert_float_equal(in->grad[3], (1.0f - 0.6f * 1.4f) / 5.0f, 1e-6f);
    dml_graph_free(&g);
}

/* d = 0 (a row against itself, or duplicate rows) has a zero gradient, never NaN. */
static void test_pairwise_dist_at_zero(void **state)
{
    (void)state;
    dml_graph g;
    dml_graph_init(&g, 1 << 12);
    float x[6] = {1, 2, 1, 2, 0, 1}; /* rows 0 and 1 are equal */
    dml_tensor *in = dml_leaf_copy(&g, x, 3, 2, 1);
    dml_tensor *d = dml_pairwise_dist(&g, in, in, 0);
    assert_float_equal(d->data[0 * 3 + 1], 0.0f, 0.0f);
    assert_float_equal(d->data[1 * 3 + 1], 0.0f, 0.0f);
    assert_float_equal(d->data[0 * 3 + 2], sqrtf(2.0f), 1e-6f);
    assert_int_equal(dml_backward(&g, dml_sum(&g, d)), DML_OK);
    for (int i = 0; i < 6; i++)
        assert_true(isfinite(in->grad[i]));
    /* Only the pairs with row 2 contribute: d(2 * sum_j |x_i - x_2|)/dx_0 = 2 (x_0 - x_2)/sqrt 2. */
    assert_float_equal(in->grad[0], 2.0f * 1.0f / sqrtf(2.0f), 1e-5f);
    dml_graph_free(&g);
}

/* relu's gradient at exactly 0 is 0 (the subgradient PyTorch uses too). */
static void test_relu_at_zero(void **state)
{
    (void)state;
    dml_graph g;
    dml_graph_init(&g, 1 << 12);
    float x[3] = {-1, 0, 2};
    dml_tensor *in = dml_leaf_copy(&g, x, 1, 3, 1);
    assert_int_equal(dml_backward(&g, dml_sum(&g, dml_relu(&g, in))), DML_OK);
    assert_float_equal(in->grad[0], 0.0f, 0.0f);
    assert_float_equal(in->grad[1], 0.0f, 0.0f);
    assert_float_equal(in->grad[2], 1.0f, 0.0f);
    dml_graph_free(&g);
}

/* dense_relu is relu(dense) in one node: the same values and gradients, bit for bit, with
 * about half the outputs clamped (and one exactly at 0, where the gradient is 0). */
static void test_dense_relu_is_relu_of_dense(void **state)
{
    (void)state;
    float x[6 * 4], w[5 * 4], b[5];
    tu_fill_normal(x, 24, 1.0f, 11);
    tu_fill_normal(w, 20, 1.0f, 12);
    tu_fill_normal(b, 5, 1.0f, 13);
    x[0] = x[1] = x[2] = x[3] = 0.0f;
    b[0] = 0.0f; /* row 0, column 0: exactly 0 before the relu */
    float y[2][30], grad[2][3][24];
    for (int fused = 0; fused < 2; fused++) {
        dml_graph g;
        dml_graph_init(&g, 1 << 14);
        dml_tensor *in[3] = {dml_leaf_copy(&g, x, 6, 4, 1), dml_leaf_copy(&g, w, 5, 4, 1),
                             dml_leaf_copy(&g, b, 1, 5, 1)};
        dml_tensor *out = fused ? dml_dense_relu(&g, in[0], in[1], in[2])
                                : dml_relu(&g, dml_dense(&g, in[0], in[1], in[2]));
        /* against a random target, so every output gets a different gradient */
        float target[30];
        tu_fill_normal(target, 30, 1.0f, 14);
        dml_tensor *t = dml_leaf_copy(&g, target, 6, 5, 0);
        assert_int_equal(dml_backward(&g, dml_mse(&g, out, t)), DML_OK);
        memcpy(y[fused], out->data, sizeof y[fused]);
        for (int k = 0; k < 3; k++)
            memcpy(grad[fused][k], in[k]->grad, (size_t)in[k]->rows * in[k]->cols * sizeof(float));
        dml_graph_free(&g);
    }
    assert_memory_equal(y[0], y[1], sizeof y[0]);
    assert_memory_equal(grad[0][0], grad[1][0], 24 * sizeof(float));
    assert_memory_equal(grad[0][1], grad[1][1], 20 * sizeof(float));
    assert_memory_equal(grad[0][2], grad[1][2], 5 * sizeof(float));
    assert_float_equal(y[1][0], 0.0f, 0.0f);
}

/* No gradient is computed for an input that does not need one (darknet's `if (c)`). */
static void test_no_grad_for_constant_input(void **state)
{
    (void)state;
    dml_graph g;
    dml_graph_init(&g, 1 << 12);
    float a[4] = {1, 2, 3, 4}, w[4] = {1, 0, 0, 1};
    dml_tensor *x = dml_leaf_copy(&g, a, 2, 2, 0);
    dml_tensor *p = dml_leaf_copy(&g, w, 2, 2, 1);
    dml_tensor *y = dml_matmul(&g, x, p, 1);
    assert_non_null(y->grad);
    assert_int_equal(dml_backward(&g, dml_sum(&g, y)), DML_OK);
    assert_null(x->grad);
    assert_float_equal(p->grad[0], 4.0f, 0.0f); /* column sums of x */
    dml_tensor *c = dml_relu(&g, x);
    assert_null(c->grad); /* nothing upstream needs it */
    dml_graph_free(&g);
}

/* Zero rows (an empty batch) go through every reduction without NaN. */
static void test_empty_batch(void **state)
{
    (void)state;
    dml_graph g;
    dml_graph_init(&g, 1 << 12);
    float none[1] = {0};
    dml_tensor *x = dml_leaf_copy(&g, none, 0, 3, 1);
    dml_tensor *m = dml_mean(&g, dml_l2_normalize(&g, x));
    assert_float_equal(m->data[0], 0.0f, 0.0f);
    assert_int_equal(dml_backward(&g, m), DML_OK);
    dml_graph_free(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_op_has_a_gradient_check),
        cmocka_unit_test(test_l2_normalize_zero_row),
        cmocka_unit_test(test_pairwise_dist_at_zero),
        cmocka_unit_test(test_relu_at_zero),
        cmocka_unit_test(test_dense_relu_is_relu_of_dense),
        cmocka_unit_test(test_no_grad_for_constant_input),
        cmocka_unit_test(test_empty_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
