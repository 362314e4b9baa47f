/* Cross-check against numpy and sklearn: tests/fixtures/eval/metrics_300x8.txt holds a fixed
 * random set and the metrics tests/scripts/gen_eval_fixture.py computed for it (no Python is
 * needed here). Values must match within 1e-5. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "testutil.h"

#define FIXTURE "tests/fixtures/eval/metrics_300x8.txt"
#define TOL 1e-5

typedef struct fixture {
    int n, d, n_queries;
    float *x;        /* [n, d] */
    int32_t *y;      /* [n] */
    int32_t *noisy;  /* [n] an imperfect clustering */
    char keys[32][48];
    double values[32];
    int n_keys;
} fixture;

static void load(fixture *fx)
{
    FILE *f = fopen(FIXTURE, "r");
    assert_non_null(f);
    char line[512];
    do /* the comment lines */
        assert_non_null(fgets(line, sizeof line, f));
    while (line[0] == '#');
    assert_int_equal(sscanf(line, "%d %d %d", &fx->n, &fx->d, &fx->n_queries), 3);
    fx->x = malloc(sizeof(float) * fx->n * fx->d);
    fx->y = malloc(sizeof(int32_t) * fx->n);
    fx->noisy = malloc(sizeof(int32_t) * fx->n);
    for (int i = 0; i < fx->n; i++) {
        assert_int_equal(fscanf(f, "%d %d", &fx->y[i], &fx->noisy[i]), 2);
        for (int t = 0; t < fx->d; t++)
            assert_int_equal(fscanf(f, "%f", &fx->x[i * fx->d + t]), 1);
    }
    fx->n_keys = 0;
    while (fx->n_keys < 32 &&
           fscanf(f, "%47s %lf", fx->keys[fx->n_keys], &fx->values[fx->n_keys]) == 2)
        fx->n_keys++;
    fclose(f);
    assert_true(fx->n_keys >= 12);
}

static double expected(const fixture *fx, const char *key)
{
    for (int i = 0; i < fx->n_keys; i++)
        if (!strcmp(fx->keys[i], key))
            return fx->values[i];
    fail_msg("%s: no %s", FIXTURE, key);
    return NAN;
}

/* Every "prefix.metric" of the fixture against res. */
static void compare(const fixture *fx, const char *prefix, const dml_eval_result *res)
{
    int checked = 0;
    for (int i = 0; i < fx->n_keys; i++) {
        size_t len = strlen(prefix);
        if (strncmp(fx->keys[i], prefix, len) != 0)
            continue;
        const char *key = fx->keys[i] + len;
        double got = !strcmp(key, "skipped_queries") ? res->skipped_queries : dml_eval_get(res, key);
        if (!(fabs(got - fx->values[i]) <= TOL))
            fail_msg("%s: %s = %.9f, numpy says %.9f", FIXTURE, fx->keys[i], got, fx->values[i]);
        checked++;
    }
    assert_true(checked >= 5);
}

static void test_protocol1_matches_numpy(void **state)
{
    (void)state;
    fixture fx;
    load(&fx);
    const char *metrics[] = {"precision_at_1", "r_precision", "map_at_r", "map_all"};
    for (int threads = 1; threads <= 2; threads++) {
        dml_eval_request req = {.d = fx.d, .queries = fx.x, .q_labels = fx.y, .n_queries = fx.n,
                                .metrics = metrics, .n_metrics = 4, .threads = threads,
                                .block = threads == 2 ? 37 : 0};
        dml_eval_result res;
        assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
        compare(&fx, "p1.", &res);
    }
    free(fx.x);
    free(fx.y);
    free(fx.noisy);
}

static void test_protocol2_matches_numpy(void **state)
{
    (void)state;
    fixture fx;
    load(&fx);
    const char *metrics[] = {"precision_at_1", "r_precision", "map_at_r", "map_all",
                             "knn_accuracy"};
    int nq = fx.n_queries;
    dml_eval_request req = {.d = fx.d, .queries = fx.x, .q_labels = fx.y, .n_queries = nq,
                            .db = fx.x + (size_t)nq * fx.d, .db_labels = fx.y + nq,
                            .n_db = fx.n - nq, .metrics = metrics, .n_metrics = 5, .knn_k = 5};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    compare(&fx, "p2.", &res);
    free(fx.x);
    free(fx.y);
    free(fx.noisy);
}

static void test_nmi_matches_sklearn(void **state)
{
    (void)state;
    fixture fx;
    load(&fx);
    double got = dml_nmi(fx.noisy, fx.y, fx.n);
    assert_float_equal(got, expected(&fx, "nmi"), TOL);
    free(fx.x);
    free(fx.y);
    free(fx.noisy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_protocol1_matches_numpy),
        cmocka_unit_test(test_protocol2_matches_numpy),
        cmocka_unit_test(test_nmi_matches_sklearn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
