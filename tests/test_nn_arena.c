/* The arena and the hot loop: after the first step, a training step allocates nothing.
 * Every malloc-family call in dml is counted by wrapping it at link time (see the Makefile's
 * LDFLAGS_test_nn_arena). */
#include "tests/testutil.h"

#include <stdlib.h>
#include <string.h>

#include "losses/losses.h"
#include "optim/optim.h"

static long n_allocs;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);

void *__wrap_malloc(size_t n) { n_allocs++; return __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { n_allocs++; return __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { n_allocs++; return __real_realloc(p, n); }
int __wrap_posix_memalign(void **p, size_t align, size_t n) { n_allocs++; return __real_posix_memalign(p, align, n); }
void *__wrap_aligned_alloc(size_t align, size_t n) { n_allocs++; return __real_aligned_alloc(align, n); }

static void test_alignment_and_high_water(void **state)
{
    (void)state;
    dml_arena a;
    dml_arena_init(&a, 256);
    for (int i = 0; i < 10; i++) {
        void *p = dml_arena_alloc(&a, (size_t)(1 + 37 * i));
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
    }
    size_t hw = dml_arena_high_water(&a);
    assert_true(hw >= 64 * 10);
    dml_arena_reset(&a);
    assert_int_equal(dml_arena_high_water(&a), hw);
    /* The same requests again fit in the folded block: no new chunk. */
    size_t chunks = a.n_system_allocs;
    for (int i = 0; i < 10; i++)
        dml_arena_alloc(&a, (size_t)(1 + 37 * i));
    assert_int_equal(a.n_system_allocs, chunks);
    dml_arena_free(&a);
}

static int32_t labels[64];
static dml_pq pq;

/* One step of a small MLP with every loss the trainer composes (batch-all triplet, contrastive,
 * MNR, DQN's cosine loss, the quantization term), an Adam update and gradient clipping. */
static float train_step(dml_graph *g, dml_mlp *mlp, dml_optim *opt, const float *x, int rows)
{
    dml_optim_zero_grad(opt);
    dml_tensor *in = dml_leaf(g, (float *)x, NULL, rows, dml_mlp_dim_in(mlp));
    dml_tensor *z = dml_mlp_forward(g, mlp, in);
    dml_tensor *d = dml_pairwise_dist(g, z, z, 0);
    dml_tensor *loss = dml_loss_triplet(g, d, labels, 0.2f, DML_MINER_ALL, 0, DML_REDUCE_MEAN_NONZERO);
    loss = dml_add(g, loss, dml_loss_triplet(g, d, labels, 0.2f, DML_MINER_SEMIHARD, 0, DML_REDUCE_MEAN));
    loss = dml_add(g, loss, dml_loss_contrastive(g, d, labels, 0.0f, 1.0f, 2, DML_REDUCE_MEAN));
    loss = dml_add(g, loss, dml_loss_mnr(g, z, z, NULL, labels, 20.0f, 1));
    loss = dml_add(g, loss, dml_loss_cosine_pair(g, z, labels, NULL));
    loss = dml_add(g, loss, dml_loss_quantization(g, z, &pq));
    assert_int_equal(dml_backward(g, loss), DML_OK);
    dml_clip_grad_norm(opt->params, opt->n_params, 1.0f);
    dml_optim_step(opt, 1e-3f);
    float value = loss->data[0];
    dml_graph_reset(g); /* after each step, as the trainer does: the first reset folds the chunks */
    return value;
}

static void test_training_step_allocates_nothing_after_the_first(void **state)
{
    (void)state;
    dml_rng rng;
    dml_rng_seed(&rng, 3);
    dml_mlp mlp;
    int widths[] = {20, 32, 16, 8};
    assert_int_equal(
        dml_mlp_init(&mlp, 4, widths, DML_ACT_RELU, DML_OUTPUT_L2, DML_INIT_HE, &rng, NULL), DML_OK);
    dml_param_view params[8];
    int n = dml_mlp_params(&mlp, params);
    dml_optim opt;
    dml_optim_spec spec = {.kind = DML_OPTIM_ADAM};
    assert_int_equal(dml_optim_init(&opt, &spec, params, n, NULL), DML_OK);
    float x[64 * 20];
    tu_fill_normal(x, 64 * 20, 1.0f, 5);
    for (int i = 0; i < 64; i++)
        labels[i] = i % 8;
    assert_int_equal(dml_pq_init(&pq, 8, 2, 4, NULL), DML_OK);
    tu_fill_normal(pq.centroids, 8 * 16, 0.3f, 6);
    dml_graph g;
    dml_graph_init(&g, 1024); /* deliberately small: the first step grows it */

    train_step(&g, &mlp, &opt, x, 64);
    size_t high_water = dml_arena_high_water(&g.arena);
    long before = n_allocs;
    for (int step = 0; step < 5; step++)
        train_step(&g, &mlp, &opt, x, 64);
    print_message("  arena high water %zu bytes; allocations in 5 steps after the first: %ld\n",
                  high_water, n_allocs - before);
    assert_int_equal(n_allocs - before, 0);
    assert_int_equal(dml_arena_high_water(&g.arena), high_water);

    dml_graph_free(&g);
    dml_optim_free(&opt);
    dml_mlp_free(&mlp);
    dml_pq_free(&pq);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alignment_and_high_water),
        cmocka_unit_test(test_training_step_allocates_nothing_after_the_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
