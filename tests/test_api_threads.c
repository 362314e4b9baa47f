/* include/dml.h's thread promise: 8 threads encode (both towers), PQ-encode and search with one
 * model at once, and each gets byte for byte what one thread got. `make tsan` runs this file
 * under ThreadSanitizer; `make test` runs it as it is. */
#include <pthread.h>
#include <stdio.h>

#include "tests/model_fixture.h"

#define THREADS 8
#define REPEATS 3
#define ROWS 700
#define K 5

/* What one call sequence produces: the embeddings, their codes, the 5 nearest of each row. */
typedef struct result {
    float *emb;
    uint8_t *codes;
    float *dist;
    int64_t *ids;
} result;

typedef struct job {
    const dml_model *model;
    int tower_b; /* 1: dml_model_encode_b */
    const float *x;
    result got;
    dml_status st;
} job;

static void result_alloc(result *r, const dml_model *m)
{
    size_t dim = (size_t)dml_model_dim_out(m);
    r->emb = malloc(ROWS * dim * sizeof(float));
    r->codes = malloc(ROWS * dml_pq_code_size(dml_model_pq(m)));
    r->dist = malloc(ROWS * K * sizeof(float));
    r->ids = malloc(ROWS * K * sizeof(int64_t));
    assert_true(r->emb && r->codes && r->dist && r->ids);
}

static void result_free(result *r)
{
    free(r->emb);
    free(r->codes);
    free(r->dist);
    free(r->ids);
}

static dml_status compute(const dml_model *m, int tower_b, const float *x, result *r)
{
    const dml_pq *pq = dml_model_pq(m);
    dml_status st = tower_b ? dml_model_encode_b(m, x, ROWS, r->emb)
                            : dml_model_encode(m, x, ROWS, r->emb);
    if (st == DML_OK)
        st = dml_pq_encode(pq, r->emb, ROWS, r->codes);
    if (st == DML_OK)
        st = dml_pq_search(pq, r->codes, ROWS, r->emb, ROWS, K, r->dist, r->ids);
    return st;
}

static void *run_job(void *p)
{
    job *j = p;
    for (int rep = 0; rep < REPEATS && j->st == DML_OK; rep++)
        j->st = compute(j->model, j->tower_b, j->x, &j->got);
    return NULL;
}

static void assert_same(const result *a, const result *b, const dml_model *m)
{
    size_t dim = (size_t)dml_model_dim_out(m);
    assert_memory_equal(a->emb, b->emb, ROWS * dim * sizeof(float));
    assert_memory_equal(a->codes, b->codes, ROWS * dml_pq_code_size(dml_model_pq(m)));
    assert_memory_equal(a->dist, b->dist, ROWS * K * sizeof(float));
    assert_memory_equal(a->ids, b->ids, ROWS * K * sizeof(int64_t));
}

/* Even threads use the first tower, odd ones the second (when the model has two). */
static void check_threads(const fx_spec *spec)
{
    char dir[256], path[300];
    FX_TMP(dir, path, "model.h5");
    dml_model_file mf;
    fx_model(&mf, spec);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(path, &mf, &err), DML_OK);
    dml_model *m;
    char msg[256];
    assert_int_equal(dml_model_open(path, &m, msg, sizeof msg), DML_OK);
    int towers = dml_model_dim_in_b(m) ? 2 : 1;
    float *x[2];
    result serial[2];
    for (int t = 0; t < towers; t++) {
        x[t] = fx_rows(ROWS, t ? dml_model_dim_in_b(m) : dml_model_dim_in(m), 70 + (uint64_t)t);
        result_alloc(&serial[t], m);
        assert_int_equal(compute(m, t, x[t], &serial[t]), DML_OK);
    }
    job jobs[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        int t = i % towers;
        jobs[i] = (job){m, t, x[t], {0}, DML_OK};
        result_alloc(&jobs[i].got, m);
        assert_int_equal(pthread_create(&th[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(jobs[i].st, DML_OK);
        assert_same(&jobs[i].got, &serial[jobs[i].tower_b], m);
        result_free(&jobs[i].got);
    }
    for (int t = 0; t < towers; t++) {
        result_free(&serial[t]);
        free(x[t]);
    }
    dml_model_free(m);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* Wide enough that each 256-row block's products are above OpenBLAS's own cut-off (256K
 * multiply-adds), so OpenBLAS splits them over its worker threads too: the API leaves
 * OpenBLAS's thread count as the machine sets it. */
static const fx_spec WIDE = {DML_NET_MLP, 256, 0, 1, {512}, 64, DML_ACT_RELU,
                             DML_OUTPUT_L2, 1, 8, 8, NULL, 21};

static void test_threads_dual(void **state)
{
    (void)state;
    check_threads(&FX_DUAL);
}

static void test_threads_mlp(void **state)
{
    (void)state;
    check_threads(&FX_MLP);
}

static void test_threads_wide(void **state)
{
    (void)state;
    check_threads(&WIDE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_dual),
        cmocka_unit_test(test_threads_mlp),
        cmocka_unit_test(test_threads_wide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
