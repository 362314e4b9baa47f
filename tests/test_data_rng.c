/* The generator's normals: the Ziggurat's draws follow the standard normal (Kolmogorov-Smirnov
 * distance, moments, and both tails beyond the base strip), and a seed gives the same stream, one at a time or many at once. */
#include <math.h>
#include <stdlib.h>

#include "data/rng.h"
#include "tests/testutil.h"

enum { N = 400000 };

static int by_value(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double normal_cdf(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

/* The largest gap between the draws' empirical CDF and the normal's. At n = 400,000 the 1%
 * critical value is 1.63 / sqrt(n) = 0.0026; a generator off by a layer's worth would show
 * gaps of 0.01 and more. */
static void test_normals_follow_the_normal_distribution(void **state)
{
    (void)state;
    float *x = malloc(N * sizeof *x);
    assert_non_null(x);
    dml_rng rng;
    dml_rng_seed(&rng, 7);
    double sum = 0, sum2 = 0, sum4 = 0;
    int beyond_r = 0, beyond_2 = 0;
    for (int i = 0; i < N; i++) {
        x[i] = dml_rng_normal(&rng);
        sum += x[i], sum2 += (double)x[i] * x[i], sum4 += pow(x[i], 4);
        beyond_r += fabsf(x[i]) > 3.442619855899f;
        beyond_2 += fabsf(x[i]) > 2.0f;
    }
    assert_float_equal(sum / N, 0.0, 0.005);
    assert_float_equal(sum2 / N, 1.0, 0.01);
    assert_float_equal(sum4 / N, 3.0, 0.05);
    /* P(|x| > 2) = 0.0455; P(|x| > R) = 5.76e-4, the tail drawn by its own method: 230 expected. */
    assert_float_equal((double)beyond_2 / N, 0.0455, 0.002);
    assert_true(beyond_r > 180 && beyond_r < 280);
    qsort(x, N, sizeof *x, by_value);
    double d = 0;
    for (int i = 0; i < N; i++) {
        double f = normal_cdf(x[i]);
        d = fmax(d, fmax(fabs(f - (double)i / N), fabs((double)(i + 1) / N - f)));
    }
    assert_true(d < 0.0026);
    free(x);
}

static void test_same_seed_same_normals(void **state)
{
    (void)state;
    dml_rng a, b;
    dml_rng_seed(&a, 3);
    dml_rng_seed(&b, 3);
    float many[1000];
    dml_rng_normals(&b, many, 1000);
    for (int i = 0; i < 1000; i++)
        assert_true(dml_rng_normal(&a) == many[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normals_follow_the_normal_distribution),
        cmocka_unit_test(test_same_seed_same_normals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
