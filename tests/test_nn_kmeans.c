/* k-means: finds well-separated clusters, is reproducible for a seed, re-seeds empty clusters,
 * matches a brute-force assignment, never raises its objective, and refuses bad input. */
#include "tests/testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* n_per rows around each of k random centres (spread 20, noise sigma), in a shuffled order;
 * truth[i] is each row's centre, centres[k, d] gets the mean of each centre's rows. */
static float *blobs(int k, int n_per, int d, float sigma, uint64_t seed, int *truth, float *centres)
{
    int n = k * n_per;
    float *x = malloc(sizeof(float) * n * d), *noise = malloc(sizeof(float) * n * d);
    float *c = malloc(sizeof(float) * k * d);
    int *order = malloc(sizeof(int) * n);
    tu_fill_normal(c, (size_t)k * d, 20.0f, seed);
    tu_fill_normal(noise, (size_t)n * d, sigma, seed + 1);
    dml_rng rng;
    dml_rng_seed(&rng, seed + 2);
    for (int i = 0; i < n; i++)
        order[i] = i;
    dml_rng_shuffle(&rng, order, n);
    for (int i = 0; i < n; i++) {
        int j = order[i] % k;
        truth[i] = j;
        for (int t = 0; t < d; t++)
            x[i * d + t] = c[j * d + t] + noise[i * d + t];
    }
    for (int j = 0; j < k; j++)
        for (int t = 0; t < d; t++) {
            double s = 0.0;
            for (int i = 0; i < n; i++)
                s += truth[i] == j ? x[i * d + t] : 0.0;
            centres[j * d + t] = (float)(s / n_per);
        }
    free(noise);
    free(c);
    free(order);
    return x;
}

/* Every found cluster holds exactly one true cluster (a bijection: purity 1 both ways), and its
 * centroid is that cluster's mean; returns the summed squared distance to the true means. */
static double check_found(const float *x, int n, int d, int k, const int *truth, const int *assign,
                          const float *centroids, const float *centres)
{
    int *map = malloc(sizeof(int) * k);
    for (int j = 0; j < k; j++)
        map[j] = -1;
    for (int i = 0; i < n; i++) {
        int f = assign[i];
        assert_true(f >= 0 && f < k);
        if (map[f] < 0)
            map[f] = truth[i];
        assert_int_equal(map[f], truth[i]);
    }
    double inertia = 0.0;
    for (int f = 0; f < k; f++) {
        assert_true(map[f] >= 0);
        for (int g = 0; g < f; g++)
            assert_int_not_equal(map[g], map[f]);
        for (int t = 0; t < d; t++)
            assert_float_equal(centroids[f * d + t], centres[map[f] * d + t], 1e-4);
    }
    for (int i = 0; i < n; i++)
        for (int t = 0; t < d; t++) {
            double e = (double)x[i * d + t] - centres[truth[i] * d + t];
            inertia += e * e;
        }
    free(map);
    return inertia;
}

static void test_finds_separated_clusters(void **state)
{
    (void)state;
    enum { K = 6, N_PER = 40, D = 5, N = K * N_PER };
    int truth[N], assign[N];
    float centres[K * D], centroids[K * D];
    float *x = blobs(K, N_PER, D, 0.3f, 7, truth, centres);
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    double inertia = -1.0;
    assert_int_equal(dml_kmeans(x, N, D, K, 20, DML_KMEANS_PLUSPLUS, &rng, centroids, assign,
                                &inertia, NULL), DML_OK);
    double want = check_found(x, N, D, K, truth, assign, centroids, centres);
    assert_true(fabs(inertia - want) <= 1e-4 * want);
    free(x);
}

static void test_random_rows_init_is_distinct_rows(void **state)
{
    (void)state;
    enum { N = 50, D = 3, K = 50 };
    float x[N * D], c[K * D];
    for (int i = 0; i < N * D; i++)
        x[i] = (float)i; /* every row distinct */
    dml_rng rng;
    dml_rng_seed(&rng, 3);
    int seen[N] = {0};
    assert_int_equal(dml_kmeans(x, N, D, K, 0, DML_KMEANS_RANDOM_ROWS, &rng, c, NULL, NULL, NULL),
                     DML_OK);
    for (int j = 0; j < K; j++) {
        int row = (int)c[j * D] / D;
        assert_memory_equal(c + j * D, x + row * D, sizeof(float) * D);
        assert_int_equal(seen[row]++, 0);
    }
}

/* Same seed, same everything, for both inits; another seed draws other initial centroids. */
static void test_deterministic_for_a_seed(void **state)
{
    (void)state;
    enum { N = 500, D = 4, K = 16 };
    float *x = malloc(sizeof(float) * N * D);
    tu_fill_normal(x, N * D, 1.0f, 5);
    for (int init = 0; init < 2; init++) {
        float c[3][K * D];
        int a[3][N];
        double obj[3];
        for (int r = 0; r < 3; r++) {
            dml_rng rng;
            dml_rng_seed(&rng, r < 2 ? 42 : 43);
            assert_int_equal(dml_kmeans(x, N, D, K, 8, (dml_kmeans_init)init, &rng, c[r], a[r],
                                        &obj[r], NULL), DML_OK);
        }
        assert_memory_equal(c[0], c[1], sizeof c[0]);
        assert_memory_equal(a[0], a[1], sizeof a[0]);
        assert_true(obj[0] == obj[1]);
        assert_memory_not_equal(c[0], c[2], sizeof c[0]);
    }
    free(x);
}

/* Two blobs (20 rows at the origin, 10 at (10, 0)); one centroid starts at the overall mean
 * and takes every row, the other starts far away and stays empty. Re-seeding moves it to the
 * row farthest from the first centroid, in the small blob, and k-means then separates them. */
static void test_empty_cluster_is_reseeded(void **state)
{
    (void)state;
    enum { N = 30, D = 2, K = 2 };
    float x[N * D], noise[N * D];
    int truth[N], assign[N];
    tu_fill_normal(noise, N * D, 0.2f, 9);
    for (int i = 0; i < N; i++) {
        truth[i] = i < 20 ? 0 : 1;
        x[i * D] = (truth[i] ? 10.0f : 0.0f) + noise[i * D];
        x[i * D + 1] = noise[i * D + 1];
    }
    float centres[K * D] = {0};
    for (int i = 0; i < N; i++)
        for (int t = 0; t < D; t++)
            centres[truth[i] * D + t] += x[i * D + t] / (truth[i] ? 10.0f : 20.0f);
    float c[K * D] = {10.0f / 3.0f, 0.0f, 1000.0f, 1000.0f};
    double inertia;
    assert_int_equal(dml_kmeans_from(x, N, D, K, 5, c, assign, &inertia, NULL), DML_OK);
    double want = check_found(x, N, D, K, truth, assign, c, centres);
    assert_true(fabs(inertia - want) <= 1e-4 * want);
}

/* k = n with duplicate rows: some cluster must stay empty every iteration; nothing breaks, every
 * row sits on a centroid, and the centroids are exactly the distinct rows. */
static void test_k_equals_n_with_duplicates(void **state)
{
    (void)state;
    enum { N = 8, D = 3 };
    float x[N * D];
    for (int i = 0; i < N; i++)
        for (int t = 0; t < D; t++)
            x[i * D + t] = (float)((i % 5) * 3 + t); /* rows 5..7 repeat rows 0..2 */
    for (int init = 0; init < 2; init++) {
        float c[N * D];
        int assign[N];
        double inertia = -1.0;
        dml_rng rng;
        dml_rng_seed(&rng, 11);
        assert_int_equal(dml_kmeans(x, N, D, N, 6, (dml_kmeans_init)init, &rng, c, assign,
                                    &inertia, NULL), DML_OK);
        assert_true(inertia == 0.0);
        int used[N] = {0};
        for (int i = 0; i < N; i++) {
            assert_memory_equal(c + assign[i] * D, x + i * D, sizeof(float) * D);
            used[assign[i]] = 1;
        }
        for (int j = 0; j < N; j++) { /* every centroid is one of the rows */
            int found = 0;
            for (int i = 0; i < N; i++)
                found |= !memcmp(c + j * D, x + i * D, sizeof(float) * D);
            assert_true(found);
        }
        int n_used = 0;
        for (int j = 0; j < N; j++)
            n_used += used[j];
        assert_int_equal(n_used, 5);
    }
}

/* The GEMM assignment against a brute-force scan in double, over several blocks of rows and
 * k values around the argmin's 8 lanes (the minimum in the tail, ties to the lowest index). */
static void test_assign_matches_brute_force(void **state)
{
    (void)state;
    enum { N = 4100, D = 6 };
    const int ks[] = {1, 7, 8, 13, 37};
    float *x = malloc(sizeof(float) * N * D), c[37 * D], norms[37], dist[N];
    int *assign = malloc(sizeof(int) * N);
    float *scratch = malloc(sizeof(float) * DML_KMEANS_BLOCK * 37);
    tu_fill_normal(x, N * D, 1.0f, 21);
    tu_fill_normal(c, 37 * D, 1.0f, 22);
    memcpy(c + 5 * D, c + 2 * D, sizeof(float) * D); /* centroid 5 duplicates centroid 2 */
    for (int v = 0; v < 5; v++) {
        int k = ks[v];
        for (int j = 0; j < k; j++) {
            norms[j] = 0.0f;
            for (int t = 0; t < D; t++)
                norms[j] += c[j * D + t] * c[j * D + t];
        }
        double total = dml_kmeans_assign(x, N, D, c, k, norms, assign, dist, scratch), want = 0.0;
        int tail = 0;
        for (int i = 0; i < N; i++) {
            double best = INFINITY, second = INFINITY;
            int arg = -1;
            for (int j = 0; j < k; j++) {
                double e = 0.0;
                for (int t = 0; t < D && j != 5; t++) {
                    double diff = (double)x[i * D + t] - c[j * D + t];
                    e += diff * diff;
                }
                if (j == 5) /* the duplicate of 2: never strictly nearer, so never chosen */
                    continue;
                if (e < best) {
                    second = best;
                    best = e;
                    arg = j;
                } else if (e < second) {
                    second = e;
                }
            }
            want += best;
            assert_true(fabs(dist[i] - best) <= 1e-4 * (1.0 + best));
            if (second - best > 1e-4 * (1.0 + best))
                assert_int_equal(assign[i], arg);
            assert_int_not_equal(assign[i], 5);
            tail += k == 13 && arg >= 8;
        }
        assert_true(fabs(total - want) <= 1e-4 * want);
        if (k == 13)
            assert_true(tail > 0);
    }
    assert_true(dml_kmeans_assign(x, 0, D, c, 7, norms, NULL, NULL, scratch) == 0.0);
    free(x);
    free(assign);
    free(scratch);
}

static void test_block_rows(void **state)
{
    (void)state;
    assert_int_equal(dml_kmeans_block_rows(10, 256), 10);
    assert_int_equal(dml_kmeans_block_rows(100000, 256), DML_KMEANS_BLOCK);
    assert_int_equal(dml_kmeans_block_rows(100000, 1 << 16), 64);
    assert_int_equal(dml_kmeans_block_rows(100000, 1 << 23), 1);
    assert_int_equal(dml_kmeans_block_rows(0, 4), 1);
}

/* Lloyd's steps never raise the objective: more iterations from the same start do no worse. */
static void test_inertia_never_increases(void **state)
{
    (void)state;
    enum { N = 2000, D = 8, K = 32 };
    float *x = malloc(sizeof(float) * N * D), c[K * D];
    tu_fill_normal(x, N * D, 1.0f, 31);
    const int iters[] = {0, 1, 2, 5, 15};
    double prev = INFINITY, first = 0.0, obj = 0.0;
    for (int v = 0; v < 5; v++) {
        dml_rng rng;
        dml_rng_seed(&rng, 8);
        assert_int_equal(dml_kmeans(x, N, D, K, iters[v], DML_KMEANS_PLUSPLUS, &rng, c, NULL, &obj,
                                    NULL), DML_OK);
        assert_true(obj <= prev * (1.0 + 1e-6));
        if (v == 0)
            first = obj;
        prev = obj;
    }
    assert_true(obj < 0.9 * first);
    free(x);
}

static void test_bad_input(void **state)
{
    (void)state;
    float x[3 * 2] = {0, 1, 2, 3, 4, 5}, c[4 * 2];
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    dml_error err = {0};
    assert_int_equal(dml_kmeans(x, 3, 2, 4, 5, DML_KMEANS_PLUSPLUS, &rng, c, NULL, NULL, &err),
                     DML_ERR_USAGE);
    assert_string_equal(err.msg,
                        "k-means needs at least as many rows as clusters: 3 rows for k = 4");
    assert_int_equal(dml_kmeans_from(x, 3, 2, 4, 5, c, NULL, NULL, &err), DML_ERR_USAGE);
    assert_int_equal(dml_kmeans(x, 3, 2, 0, 5, DML_KMEANS_PLUSPLUS, &rng, c, NULL, NULL, &err),
                     DML_ERR_USAGE);
    assert_int_equal(dml_kmeans(x, 3, 2, 2, -1, DML_KMEANS_PLUSPLUS, &rng, c, NULL, NULL, &err),
                     DML_ERR_USAGE);
    assert_int_equal(dml_kmeans(x, 3, 2, 2, 5, DML_KMEANS_PLUSPLUS, NULL, c, NULL, NULL, &err),
                     DML_ERR_USAGE);
    assert_int_equal(dml_kmeans(x, 3, 2, 2, 5, (dml_kmeans_init)7, &rng, c, NULL, NULL, &err),
                     DML_ERR_USAGE);
    x[3] = NAN;
    assert_int_equal(dml_kmeans(x, 3, 2, 2, 5, DML_KMEANS_RANDOM_ROWS, &rng, c, NULL, NULL, &err),
                     DML_ERR_DATA);
    assert_string_equal(err.msg,
                        "k-means input: row 1, column 1 is nan (expected a finite number)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_finds_separated_clusters),
        cmocka_unit_test(test_random_rows_init_is_distinct_rows),
        cmocka_unit_test(test_deterministic_for_a_seed),
        cmocka_unit_test(test_empty_cluster_is_reseeded),
        cmocka_unit_test(test_k_equals_n_with_duplicates),
        cmocka_unit_test(test_assign_matches_brute_force),
        cmocka_unit_test(test_block_rows),
        cmocka_unit_test(test_inertia_never_increases),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
