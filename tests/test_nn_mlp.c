/* The learning machinery end to end: MLPs trained by backprop + Adam on small synthetic tasks
 * reach a stated loss; the encoder stacks have the shapes they promise. */
#include "tests/testutil.h"

#include <math.h>

#include "optim/optim.h"

#define N_ROWS 512
#define D_IN 8
#define D_OUT 3

/* Regression onto a fixed random teacher network: y = teacher(x). */
static void make_task(float *x, float *y)
{
    dml_rng rng;
    dml_rng_seed(&rng, 11);
    dml_mlp teacher;
    int widths[] = {D_IN, 16, D_OUT};
    assert_int_equal(dml_mlp_init(&teacher, 3, widths, DML_ACT_TANH, DML_OUTPUT_NONE, DML_INIT_HE,
                                  &rng, NULL),
                     DML_OK);
    tu_fill_normal(x, N_ROWS * D_IN, 1.0f, 12);
    dml_graph g;
    dml_graph_init(&g, 1 << 16);
    dml_tensor *out = dml_mlp_forward(&g, &teacher, dml_leaf(&g, x, NULL, N_ROWS, D_IN));
    for (int i = 0; i < N_ROWS * D_OUT; i++)
        y[i] = out->data[i];
    dml_graph_free(&g);
    dml_mlp_free(&teacher);
}

static float eval_mse(dml_graph *g, dml_mlp *m, float *x, float *y)
{
    dml_tensor *loss = dml_mse(g, dml_mlp_forward(g, m, dml_leaf(g, x, NULL, N_ROWS, D_IN)),
                               dml_leaf(g, y, NULL, N_ROWS, D_OUT));
    float v = loss->data[0];
    dml_graph_reset(g);
    return v;
}

static void train_regression(dml_activation act, float target)
{
    static float x[N_ROWS * D_IN], y[N_ROWS * D_OUT];
    make_task(x, y);
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    dml_mlp m;
    int widths[] = {D_IN, 64, 64, D_OUT};
    assert_int_equal(dml_mlp_init(&m, 4, widths, act, DML_OUTPUT_NONE, DML_INIT_HE, &rng, NULL),
                     DML_OK);
    dml_param_view params[8];
    int n = dml_mlp_params(&m, params);
    dml_optim opt;
    dml_optim_spec spec = {.kind = DML_OPTIM_ADAM};
    assert_int_equal(dml_optim_init(&opt, &spec, params, n, NULL), DML_OK);
    dml_graph g;
    dml_graph_init(&g, 1 << 20);
    float start = eval_mse(&g, &m, x, y);
    for (int step = 0; step < 1000; step++) {
        int off = (step * 64) % N_ROWS;
        dml_optim_zero_grad(&opt);
        dml_tensor *pred = dml_mlp_forward(&g, &m, dml_leaf(&g, x + off * D_IN, NULL, 64, D_IN));
        dml_tensor *loss = dml_mse(&g, pred, dml_leaf(&g, y + off * D_OUT, NULL, 64, D_OUT));
        assert_int_equal(dml_backward(&g, loss), DML_OK);
        dml_optim_step(&opt, 3e-3f);
        dml_graph_reset(&g);
    }
    float end = eval_mse(&g, &m, x, y);
    print_message("  %s MLP 8-64-64-3: MSE %.4f -> %.5f after 1000 Adam steps (target < %.4f)\n",
                  dml_activation_name(act), start, end, target);
    assert_true(end < target);
    assert_true(end < start / 20.0f);
    dml_graph_free(&g);
    dml_optim_free(&opt);
    dml_mlp_free(&m);
}

static void test_relu_mlp_learns_regression(void **state)
{
    (void)state;
    train_regression(DML_ACT_RELU, 0.015f);
}

static void test_gelu_mlp_learns_regression(void **state)
{
    (void)state;
    train_regression(DML_ACT_GELU, 0.01f);
}

/* The same seed gives the same weights; another seed other weights. */
static void test_init_is_seeded(void **state)
{
    (void)state;
    int widths[] = {5, 7, 3};
    dml_mlp a, b, c;
    dml_rng r1, r2, r3;
    dml_rng_seed(&r1, 9);
    dml_rng_seed(&r2, 9);
    dml_rng_seed(&r3, 10);
    dml_mlp_init(&a, 3, widths, DML_ACT_RELU, DML_OUTPUT_L2, DML_INIT_HE, &r1, NULL);
    dml_mlp_init(&b, 3, widths, DML_ACT_RELU, DML_OUTPUT_L2, DML_INIT_HE, &r2, NULL);
    dml_mlp_init(&c, 3, widths, DML_ACT_RELU, DML_OUTPUT_L2, DML_INIT_HE, &r3, NULL);
    assert_memory_equal(a.layers[0].w.data, b.layers[0].w.data, 35 * sizeof(float));
    assert_memory_not_equal(a.layers[0].w.data, c.layers[0].w.data, 35 * sizeof(float));
    /* He-uniform for the ReLU layer: every weight within sqrt(6 / fan_in). */
    for (int i = 0; i < 35; i++)
        assert_true(fabsf(a.layers[0].w.data[i]) <= sqrtf(6.0f / 5.0f));
    dml_mlp_free(&a);
    dml_mlp_free(&b);
    dml_mlp_free(&c);
}

/* Mean and variance of x[n], in double. */
static void moments(const float *x, size_t n, double *mean, double *var)
{
    double s = 0.0, s2 = 0.0;
    for (size_t i = 0; i < n; i++)
        s += x[i];
    *mean = s / (double)n;
    for (size_t i = 0; i < n; i++)
        s2 += (x[i] - *mean) * (x[i] - *mean);
    *var = s2 / (double)n;
}

/* Every value within bound, the extremes near it, and U(-b, b)'s moments (mean 0, variance
 * b^2 / 3) to within 5 standard errors. */
static void assert_uniform(const float *x, size_t n, float bound)
{
    float lo = 0.0f, hi = 0.0f;
    for (size_t i = 0; i < n; i++) {
        assert_true(fabsf(x[i]) <= bound);
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    assert_true(hi > 0.98f * bound && lo < -0.98f * bound);
    double mean, var, b2 = (double)bound * bound;
    moments(x, n, &mean, &var);
    assert_true(fabs(mean) < 5.0 * sqrt(b2 / 3.0 / (double)n));
    assert_true(fabs(var - b2 / 3.0) < 5.0 * sqrt(4.0 * b2 * b2 / 45.0 / (double)n)); /* Var(x^2) */
}

/* model.init_scheme torch: nn.Linear's U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and
 * biases of every layer, whatever the activation; the same values for the same seed. */
static void test_torch_init(void **state)
{
    (void)state;
    int hidden[] = {256};
    dml_net_spec s = {DML_NET_MLP, 1024, 0, 1, hidden, 64, DML_ACT_RELU, DML_OUTPUT_L2,
                      DML_INIT_TORCH};
    dml_net a, b, he;
    dml_rng r1, r2, r3;
    dml_rng_seed(&r1, 5);
    dml_rng_seed(&r2, 5);
    dml_rng_seed(&r3, 5);
    assert_int_equal(dml_net_init(&a, &s, &r1, NULL), DML_OK);
    assert_int_equal(dml_net_init(&b, &s, &r2, NULL), DML_OK);
    s.init = DML_INIT_HE;
    assert_int_equal(dml_net_init(&he, &s, &r3, NULL), DML_OK);
    for (int i = 0; i < 2; i++) {
        const dml_linear *l = &a.encoder.layers[i];
        size_t n = (size_t)l->w.rows * l->w.cols;
        float bound = 1.0f / sqrtf((float)l->w.cols);
        assert_uniform(l->w.data, n, bound);
        assert_uniform(l->b.data, (size_t)l->b.cols, bound);
        assert_memory_equal(l->w.data, b.encoder.layers[i].w.data, n * sizeof(float));
        assert_memory_equal(l->b.data, b.encoder.layers[i].b.data, (size_t)l->b.cols * sizeof(float));
    }
    /* He's layers differ: wider before the ReLU (sqrt(6 / 1024) against 1/32), zero biases. */
    assert_uniform(he.encoder.layers[0].w.data, 256 * 1024, sqrtf(6.0f / 1024.0f));
    for (int j = 0; j < 256; j++)
        assert_true(he.encoder.layers[0].b.data[j] == 0.0f);
    dml_net_free(&a);
    dml_net_free(&b);
    dml_net_free(&he);
}

static void test_net_shapes_and_freeze(void **state)
{
    (void)state;
    dml_rng rng;
    dml_rng_seed(&rng, 2);
    int hidden[] = {32, 16};
    dml_net ae, dual;
    dml_net_spec s = {DML_NET_AUTOENCODER, 20, 0, 2, hidden, 8, DML_ACT_RELU, DML_OUTPUT_L2,
                      DML_INIT_HE};
    assert_int_equal(dml_net_init(&ae, &s, &rng, NULL), DML_OK);
    assert_int_equal(dml_mlp_dim_in(&ae.encoder), 20);
    assert_int_equal(dml_mlp_dim_out(&ae.encoder), 8);
    assert_int_equal(dml_mlp_dim_in(&ae.decoder), 8);
    assert_int_equal(ae.decoder.layers[0].w.rows, 16); /* 8 -> 16 -> 32 -> 20 */
    assert_int_equal(dml_mlp_dim_out(&ae.decoder), 20);
    assert_int_equal(ae.decoder.output, DML_OUTPUT_NONE);
    dml_param_view v[32];
    assert_int_equal(dml_net_params(&ae, v), 12);
    dml_mlp_freeze(&ae.encoder, 2);
    assert_null(ae.encoder.layers[1].w.grad);
    assert_non_null(ae.encoder.layers[2].w.grad);
    assert_int_equal(dml_net_params(&ae, v), 8);

    s.type = DML_NET_DUAL;
    s.dim_in_b = 12;
    assert_int_equal(dml_net_init(&dual, &s, &rng, NULL), DML_OK);
    assert_int_equal(dml_mlp_dim_in(&dual.encoder_b), 12);
    assert_int_equal(dml_mlp_dim_out(&dual.encoder_b), 8);
    assert_int_equal(dml_net_n_layers(&dual), 6);

    /* A frozen first layer receives no gradient, the rest do. */
    dml_graph g;
    dml_graph_init(&g, 1 << 16);
    float x[4 * 20];
    tu_fill_normal(x, 4 * 20, 1.0f, 3);
    dml_tensor *z = dml_mlp_forward(&g, &ae.encoder, dml_leaf(&g, x, NULL, 4, 20));
    dml_tensor *r = dml_mlp_forward(&g, &ae.decoder, z);
    assert_int_equal(dml_backward(&g, dml_mse(&g, r, dml_leaf(&g, x, NULL, 4, 20))), DML_OK);
    float sum = 0.0f;
    for (int i = 0; i < 16 * 8; i++)
        sum += fabsf(ae.encoder.layers[2].w.grad[i]);
    assert_true(sum > 0.0f);
    dml_graph_free(&g);
    dml_net_free(&ae);
    dml_net_free(&dual);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_relu_mlp_learns_regression),
        cmocka_unit_test(test_gelu_mlp_learns_regression),
        cmocka_unit_test(test_init_is_seeded),
        cmocka_unit_test(test_torch_init),
        cmocka_unit_test(test_net_shapes_and_freeze),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
