/* Optimizers against hand-checked updates for 3 steps (the same figures torch.optim 1.13
 * gives in float64), gradient clipping and the learning-rate schedules. */
#include "tests/testutil.h"

#include <math.h>

#include "optim/optim.h"

static const float GRADS[3][2] = {{0.5f, -1.0f}, {0.25f, 0.75f}, {-1.5f, 2.0f}};

/* Runs 3 steps from p = (1, -2) with the gradients above; checks p after each step. */
static void check_three_steps(const dml_optim_spec *spec, float lr, float clip,
                              const double expect[3][2])
{
    float p[2] = {1.0f, -2.0f}, g[2];
    dml_param_view view = {p, g, 2};
    dml_optim o;
    assert_int_equal(dml_optim_init(&o, spec, &view, 1, NULL), DML_OK);
    for (int step = 0; step < 3; step++) {
        g[0] = GRADS[step][0];
        g[1] = GRADS[step][1];
        if (clip > 0.0f)
            dml_clip_grad_norm(o.params, o.n_params, clip);
        dml_optim_step(&o, lr);
        assert_float_equal(p[0], expect[step][0], 1e-5);
        assert_float_equal(p[1], expect[step][1], 1e-5);
    }
    dml_optim_free(&o);
}

static void test_sgd_momentum(void **state)
{
    (void)state;
    /* buf1 = g1; buf2 = 0.9 buf1 + g2 = (0.7, -0.15); p -= 0.1 buf. */
    static const double e[3][2] = {{0.95, -1.9}, {0.88, -1.885}, {0.967, -2.0715}};
    dml_optim_spec s = {.kind = DML_OPTIM_SGD, .momentum = 0.9f};
    check_three_steps(&s, 0.1f, 0.0f, e);
}

static void test_sgd_nesterov_weight_decay(void **state)
{
    (void)state;
    /* g' = g + 0.01 p = (0.51, -1.02); buf = g'; step = g' + 0.9 buf = (0.969, -1.938). */
    static const double e[3][2] = {{0.9031, -1.8062},
                                   {0.81257411, -1.86264822},
                                   {1.037869708, -2.224038166}};
    dml_optim_spec s = {.kind = DML_OPTIM_SGD, .momentum = 0.9f, .nesterov = 1, .weight_decay = 0.01f};
    check_three_steps(&s, 0.1f, 0.0f, e);
}

static void test_adam_bias_correction(void **state)
{
    (void)state;
    /* Step 1: m^ = g, v^ = g^2, so every coordinate moves by lr * sign(g). */
    static const double e[3][2] = {{0.9, -1.9}, {0.80678204, -1.8910675}, {0.841504391, -1.941593858}};
    dml_optim_spec s = {.kind = DML_OPTIM_ADAM};
    check_three_steps(&s, 0.1f, 0.0f, e);
}

static void test_adam_l2_weight_decay(void **state)
{
    (void)state;
    static const double e[3][2] = {{0.9, -1.9},
                                   {0.805009766, -1.870767279},
                                   {0.830414228, -1.909048116}};
    dml_optim_spec s = {.kind = DML_OPTIM_ADAM, .weight_decay = 0.1f};
    check_three_steps(&s, 0.1f, 0.0f, e);
}

static void test_adamw_decoupled_decay(void **state)
{
    (void)state;
    /* Step 1: p *= 1 - 0.1 * 0.5, then the Adam step of lr * sign(g): 0.95 - 0.1 = 0.85. */
    static const double e[3][2] = {{0.85, -1.8}, {0.71428204, -1.7010675}, {0.713290289, -1.666540483}};
    dml_optim_spec s = {.kind = DML_OPTIM_ADAMW, .weight_decay = 0.5f};
    check_three_steps(&s, 0.1f, 0.0f, e);
}

/* A parameter with lr_scale 4 at lr 0.025 moves as it does alone at lr 0.1 (the hand-checked
 * figures above, weight decay included), while one left at scale 1 beside it moves as it does
 * alone at 0.025. */
static void test_lr_scale(void **state)
{
    (void)state;
    static const double sgd[3][2] = {{0.95, -1.9}, {0.88, -1.885}, {0.967, -2.0715}};
    static const double adamw[3][2] = {{0.85, -1.8}, {0.71428204, -1.7010675},
                                       {0.713290289, -1.666540483}};
    const dml_optim_spec specs[2] = {{.kind = DML_OPTIM_SGD, .momentum = 0.9f},
                                     {.kind = DML_OPTIM_ADAMW, .weight_decay = 0.5f}};
    const double (*expect[2])[2] = {sgd, adamw};
    for (int k = 0; k < 2; k++) {
        float p[2][2] = {{1.0f, -2.0f}, {1.0f, -2.0f}}, g[2][2], alone[2] = {1.0f, -2.0f}, ga[2];
        dml_param_view views[2] = {{p[0], g[0], 2}, {p[1], g[1], 2}}, view = {alone, ga, 2};
        dml_optim o, single;
        assert_int_equal(dml_optim_init(&o, &specs[k], views, 2, NULL), DML_OK);
        assert_int_equal(dml_optim_init(&single, &specs[k], &view, 1, NULL), DML_OK);
        dml_optim_set_lr_scale(&o, 0, 4.0f);
        for (int step = 0; step < 3; step++) {
            for (int j = 0; j < 2; j++)
                g[0][j] = g[1][j] = ga[j] = GRADS[step][j];
            dml_optim_step(&o, 0.025f);
            dml_optim_step(&single, 0.025f);
            for (int j = 0; j < 2; j++) {
                assert_float_equal(p[0][j], expect[k][step][j], 1e-5);
                assert_true(p[1][j] == alone[j]);
            }
        }
        dml_optim_free(&o);
        dml_optim_free(&single);
    }
}

static void test_clipping(void **state)
{
    (void)state;
    /* |g1| = sqrt(1.25) > 1: g1 scaled to unit norm; |g2| = 0.79 stays. */
    static const double e[3][2] = {{0.552786804, -1.105573609},
                                   {0.302786804, -1.855573609},
                                   {0.902786564, -2.655573289}};
    dml_optim_spec s = {.kind = DML_OPTIM_SGD};
    check_three_steps(&s, 1.0f, 1.0f, e);
    float g[2] = {3.0f, 4.0f}, p[2] = {0};
    dml_param_view v = {p, g, 2};
    assert_float_equal(dml_clip_grad_norm(&v, 1, 0.0f), 5.0f, 1e-6); /* 0: measure only */
    assert_float_equal(g[0], 3.0f, 0.0f);
}

static void test_schedules(void **state)
{
    (void)state;
    dml_schedule c = {.kind = DML_SCHEDULE_COSINE, .lr = 1.0f, .total_steps = 110, .warmup_steps = 10};
    assert_float_equal(dml_schedule_lr(&c, 0), 0.1f, 1e-6);  /* warm-up: (step + 1) / 10 */
    assert_float_equal(dml_schedule_lr(&c, 9), 1.0f, 1e-6);
    assert_float_equal(dml_schedule_lr(&c, 10), 1.0f, 1e-6); /* cosine starts at the base */
    assert_float_equal(dml_schedule_lr(&c, 60), 0.5f, 1e-6); /* halfway */
    assert_float_equal(dml_schedule_lr(&c, 110), 0.0f, 1e-6);
    dml_schedule st = {.kind = DML_SCHEDULE_STEP, .lr = 1.0f, .step_every = 10, .gamma = 0.1f};
    assert_float_equal(dml_schedule_lr(&st, 9), 1.0f, 1e-6);
    assert_float_equal(dml_schedule_lr(&st, 10), 0.1f, 1e-6);
    assert_float_equal(dml_schedule_lr(&st, 25), 0.01f, 1e-7);
    dml_schedule k = {.kind = DML_SCHEDULE_CONSTANT, .lr = 0.5f};
    assert_float_equal(dml_schedule_lr(&k, 1000), 0.5f, 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd_momentum),
        cmocka_unit_test(test_sgd_nesterov_weight_decay),
        cmocka_unit_test(test_adam_bias_correction),
        cmocka_unit_test(test_adam_l2_weight_decay),
        cmocka_unit_test(test_adamw_decoupled_decay),
        cmocka_unit_test(test_lr_scale),
        cmocka_unit_test(test_clipping),
        cmocka_unit_test(test_schedules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
