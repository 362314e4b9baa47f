/* Blocked exact search and PQ (ADC) search: against brute force in double, for every distance,
 * block sizes that do and do not divide the query count, one and two threads; ties by index. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "testutil.h"

/* Brute-force distance in double for kind, the same convention as the searcher reports. */
static double brute(dml_eval_distance kind, const float *a, const float *b, int d)
{
    double dot = 0.0, na = 0.0, nb = 0.0, sq = 0.0;
    for (int t = 0; t < d; t++) {
        dot += (double)a[t] * b[t];
        na += (double)a[t] * a[t];
        nb += (double)b[t] * b[t];
        sq += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    }
    switch (kind) {
    case DML_EVAL_L2SQ: return sq;
    case DML_EVAL_L2: return sqrt(sq);
    case DML_EVAL_IP: return dot;
    case DML_EVAL_COSINE: return 1.0 - dot / (sqrt(na) * sqrt(nb));
    }
    return NAN;
}

/* Checks idx/dist[n_q, k] against brute force: each rank's distance matches, and the row is
 * the brute-force row unless the two are within rounding of a tie. */
static void check_against_brute(dml_eval_distance kind, const float *q, int n_q, const float *ref,
                                int n_ref, int d, int k, int exclude_self, const int32_t *idx,
                                const float *dist)
{
    double *all = malloc((size_t)n_ref * sizeof(double));
    int *order = malloc((size_t)n_ref * sizeof(int));
    assert_non_null(all);
    assert_non_null(order);
    double sign = kind == DML_EVAL_IP ? -1.0 : 1.0; /* IP: larger is nearer */
    for (int i = 0; i < n_q; i++) {
        int n = 0;
        for (int j = 0; j < n_ref; j++) {
            all[j] = brute(kind, q + (size_t)i * d, ref + (size_t)j * d, d);
            if (!(exclude_self && j == i))
                order[n++] = j;
        }
        for (int a = 1; a < n; a++) { /* insertion sort by (sign * distance, row) */
            int v = order[a], b = a;
            while (b > 0 && sign * all[order[b - 1]] > sign * all[v])
                order[b] = order[b - 1], b--;
            order[b] = v;
        }
        for (int t = 0; t < k; t++) {
            int32_t got = idx[(size_t)i * k + t];
            if (t >= n) {
                assert_int_equal(got, -1);
                assert_true(isinf(dist[(size_t)i * k + t]));
                continue;
            }
            double want = all[order[t]];
            assert_true(got >= 0 && got < n_ref && !(exclude_self && got == i));
            assert_true(fabs(dist[(size_t)i * k + t] - want) <= 1e-4 * (1.0 + fabs(want)));
            if (got != order[t])
                assert_true(fabs(all[got] - want) <= 1e-5 * (1.0 + fabs(want)));
        }
    }
    free(all);
    free(order);
}

static void test_blocked_equals_brute_force(void **state)
{
    (void)state;
    enum { N_REF = 203, N_Q = 57, D = 7, K_MAX = 203 };
    float *ref = malloc(sizeof(float) * N_REF * D), *q = malloc(sizeof(float) * N_Q * D);
    int32_t *idx = malloc(sizeof(int32_t) * N_REF * K_MAX);
    float *dist = malloc(sizeof(float) * N_REF * K_MAX);
    tu_fill_normal(ref, N_REF * D, 1.0f, 11);
    tu_fill_normal(q, N_Q * D, 1.0f, 12);
    const int blocks[] = {1, 7, 16, 57, 0}; /* 7 and 16 do not divide 57; 0: automatic */
    const int ks[] = {10, 150, 203};        /* a heap, a radix select, and everything */
    for (int kind = DML_EVAL_L2SQ; kind <= DML_EVAL_COSINE; kind++)
        for (size_t b = 0; b < sizeof blocks / sizeof *blocks; b++)
            for (int threads = 1; threads <= 2; threads++) {
                int K = ks[(kind + b + threads) % 3];
                dml_searcher s;
                dml_error err;
                assert_int_equal(dml_searcher_init(&s, ref, N_REF, D, kind, blocks[b], threads, K,
                                                   &err),
                                 DML_OK);
                assert_int_equal(dml_knn_search(&s, q, N_Q, K, 0, idx, dist, &err), DML_OK);
                check_against_brute(kind, q, N_Q, ref, N_REF, D, K, 0, idx, dist);
                /* protocol 1: the references searched among themselves, self excluded */
                assert_int_equal(dml_knn_search(&s, ref, N_REF, K, 1, idx, dist, &err), DML_OK);
                check_against_brute(kind, ref, N_REF, ref, N_REF, D, K, 1, idx, dist);
                dml_searcher_free(&s);
            }
    free(ref);
    free(q);
    free(idx);
    free(dist);
}

/* More neighbours asked than there are references: the tail is -1 / +inf. */
static void test_k_beyond_references(void **state)
{
    (void)state;
    float ref[3 * 2] = {0, 0, 3, 0, 1, 0};
    int32_t idx[2 * 5];
    float dist[2 * 5];
    dml_searcher s;
    assert_int_equal(dml_searcher_init(&s, ref, 3, 2, DML_EVAL_L2SQ, 0, 1, 5, NULL), DML_OK);
    assert_int_equal(dml_knn_search(&s, ref, 2, 5, 1, idx, dist, NULL), DML_OK);
    const int32_t want[2 * 5] = {2, 1, -1, -1, -1, 2, 0, -1, -1, -1};
    const float want_d[2 * 5] = {1, 9, INFINITY, INFINITY, INFINITY, 4, 9, INFINITY, INFINITY, INFINITY};
    for (int t = 0; t < 10; t++) {
        assert_int_equal(idx[t], want[t]);
        assert_true(dist[t] == want_d[t]);
    }
    dml_searcher_free(&s);
}

/* Equal distances come out in row order, whatever the heap saw first. */
static void test_ties_by_index(void **state)
{
    (void)state;
    float ref[6 * 2] = {1, 0, 0, 1, 1, 0, -1, 0, 1, 0, 0, -1};
    float q[2 * 2] = {0, 0, 1, 0};
    int32_t idx[2 * 6];
    float dist[2 * 6];
    for (int k = 1; k <= 6; k++) {
        dml_searcher s;
        assert_int_equal(dml_searcher_init(&s, ref, 6, 2, DML_EVAL_L2SQ, 1, 1, k, NULL), DML_OK);
        assert_int_equal(dml_knn_search(&s, q, 2, k, 0, idx, dist, NULL), DML_OK);
        /* (0,0): every row at 1. (1,0): rows 0, 2, 4 at 0, then 1 and 5 at 2, then 3 at 4. */
        const int32_t all0[6] = {0, 1, 2, 3, 4, 5}, all1[6] = {0, 2, 4, 1, 5, 3};
        for (int t = 0; t < k; t++) {
            assert_int_equal(idx[t], all0[t]);
            assert_int_equal(idx[k + t], all1[t]);
        }
        dml_searcher_free(&s);
    }
}

/* dml_select_k on rows full of ties, both ways (heap for k <= 128, radix above), against a
 * stable sort by (score, row). */
static void test_select_k_orders_ties_by_row(void **state)
{
    (void)state;
    enum { N = 1000 };
    const float values[] = {0.5f, 1.0f, 2.0f, -3.0f, 0.0f, -0.0f, 1e30f, -1e-30f, INFINITY};
    float row[N], score[N + 200];
    int32_t idx[N + 200], want[N];
    dml_rng rng;
    dml_rng_seed(&rng, 81);
    for (int j = 0; j < N; j++)
        row[j] = values[dml_rng_below(&rng, sizeof values / sizeof *values)];
    dml_select_buf buf;
    assert_int_equal(dml_select_buf_init(&buf, N, NULL), DML_OK);
    const int ks[] = {1, 5, 128, 129, 500, 998, 999, 1000, 1200}, skips[] = {-1, 0, 517};
    for (size_t si = 0; si < 3; si++) {
        int skip = skips[si], n = 0;
        for (int j = 0; j < N; j++)
            if (j != skip)
                want[n++] = j;
        for (int a = 1; a < n; a++) { /* stable insertion sort by score (-0 == +0) */
            int v = want[a], b = a;
            while (b > 0 && row[want[b - 1]] > row[v])
                want[b] = want[b - 1], b--;
            want[b] = v;
        }
        for (size_t ki = 0; ki < sizeof ks / sizeof *ks; ki++) {
            int k = ks[ki];
            int found = dml_select_k(row, N, skip, k, &buf, idx, score);
            assert_int_equal(found, k < n ? k : n);
            for (int t = 0; t < k; t++) {
                if (t >= n) {
                    assert_int_equal(idx[t], -1);
                    assert_true(isinf(score[t]) && score[t] > 0);
                    continue;
                }
                if (idx[t] != want[t])
                    fail_msg("k = %d, skip = %d: rank %d is row %d, expected row %d", k, skip, t,
                             idx[t], want[t]);
                assert_true(score[t] == row[want[t]]);
            }
        }
    }
    dml_select_buf_free(&buf);
}

static void test_reported_distances(void **state)
{
    (void)state;
    float ref[2 * 2] = {3, 4, 1, 0};
    float q[2] = {2, 0};
    int32_t idx[2];
    float dist[2];
    dml_searcher s;
    assert_int_equal(dml_searcher_init(&s, ref, 2, 2, DML_EVAL_L2, 0, 1, 2, NULL), DML_OK);
    assert_int_equal(dml_knn_search(&s, q, 1, 2, 0, idx, dist, NULL), DML_OK);
    assert_int_equal(idx[0], 1);
    assert_float_equal(dist[0], 1.0f, 1e-6f);
    assert_float_equal(dist[1], sqrtf(17.0f), 1e-5f);
    dml_searcher_free(&s);
    assert_int_equal(dml_searcher_init(&s, ref, 2, 2, DML_EVAL_IP, 0, 1, 2, NULL), DML_OK);
    assert_int_equal(dml_knn_search(&s, q, 1, 2, 0, idx, dist, NULL), DML_OK);
    assert_int_equal(idx[0], 0); /* 6 > 2: larger products first */
    assert_float_equal(dist[0], 6.0f, 1e-6f);
    assert_float_equal(dist[1], 2.0f, 1e-6f);
    dml_searcher_free(&s);
    assert_int_equal(dml_searcher_init(&s, ref, 2, 2, DML_EVAL_COSINE, 0, 1, 2, NULL), DML_OK);
    assert_int_equal(dml_knn_search(&s, q, 1, 2, 0, idx, dist, NULL), DML_OK);
    assert_int_equal(idx[0], 1);
    assert_float_equal(dist[0], 0.0f, 1e-6f);
    assert_float_equal(dist[1], 1.0f - 3.0f / 5.0f, 1e-6f);
    dml_searcher_free(&s);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    float ref[2] = {0, 1};
    int32_t idx[1];
    float dist[1];
    dml_searcher s;
    dml_error err;
    assert_int_equal(dml_searcher_init(&s, ref, 0, 2, DML_EVAL_L2SQ, 0, 1, 1, &err), DML_ERR_USAGE);
    assert_non_null(strstr(err.msg, "at least one reference"));
    assert_int_equal(dml_searcher_init(&s, ref, 1, 2, DML_EVAL_L2SQ, 0, 1, 1, &err), DML_OK);
    assert_int_equal(dml_knn_search(&s, ref, 1, 0, 0, idx, dist, &err), DML_ERR_USAGE);
    assert_int_equal(dml_knn_search(&s, ref, 2, 1, 1, idx, dist, &err), DML_ERR_USAGE);
    dml_searcher_free(&s);
}

/* ADC by brute force: the squared distance from the query to each decoded code. */
static void test_pq_search_equals_brute_adc(void **state)
{
    (void)state;
    enum { N_DB = 300, N_Q = 23, D = 8, K = 7 };
    float *db = malloc(sizeof(float) * N_DB * D), *q = malloc(sizeof(float) * N_Q * D);
    float *decoded = malloc(sizeof(float) * N_DB * D), *dist = malloc(sizeof(float) * N_Q * K);
    float *dist32 = malloc(sizeof(float) * N_Q * K);
    int64_t *labels = malloc(sizeof(int64_t) * N_Q * K);
    int32_t *idx32 = malloc(sizeof(int32_t) * N_Q * K);
    tu_fill_normal(db, N_DB * D, 1.0f, 21);
    tu_fill_normal(q, N_Q * D, 1.0f, 22);
    const int nbits[2] = {8, 4};
    for (int v = 0; v < 2; v++) {
        dml_pq pq;
        dml_rng rng;
        dml_rng_seed(&rng, 5);
        assert_int_equal(dml_pq_init(&pq, D, 4, nbits[v], NULL), DML_OK);
        assert_int_equal(dml_pq_train(&pq, db, N_DB, 10, DML_KMEANS_PLUSPLUS, &rng, NULL), DML_OK);
        uint8_t *codes = malloc(N_DB * dml_pq_code_size(&pq));
        dml_pq_encode(&pq, db, N_DB, codes);
        dml_pq_decode(&pq, codes, N_DB, decoded);
        assert_int_equal(dml_pq_search(&pq, codes, N_DB, q, N_Q, K, dist, labels), DML_OK);
        for (int t = 0; t < N_Q * K; t++)
            idx32[t] = (int32_t)labels[t];
        check_against_brute(DML_EVAL_L2SQ, q, N_Q, decoded, N_DB, D, K, 0, idx32, dist);
        /* the same through a searcher on 2 threads, blocks of 5 */
        dml_searcher s;
        assert_int_equal(dml_searcher_init_pq(&s, &pq, codes, N_DB, 5, 2, K, NULL), DML_OK);
        assert_int_equal(dml_knn_search(&s, q, N_Q, K, 0, idx32, dist32, NULL), DML_OK);
        for (int t = 0; t < N_Q * K; t++) {
            assert_int_equal(idx32[t], (int32_t)labels[t]);
            assert_true(dist32[t] == dist[t]);
        }
        dml_searcher_free(&s);
        /* past n_db: -1 and +inf */
        int64_t few[4];
        float few_d[4];
        assert_int_equal(dml_pq_search(&pq, codes, 2, q, 1, 4, few_d, few), DML_OK);
        assert_true(few[0] >= 0 && few[1] >= 0 && few[2] == -1 && few[3] == -1);
        assert_true(isinf(few_d[2]) && isinf(few_d[3]));
        assert_int_equal(dml_pq_search(&pq, codes, N_DB, q, N_Q, 0, dist, labels), DML_ERR_USAGE);
        free(codes);
        dml_pq_free(&pq);
    }
    free(db);
    free(q);
    free(decoded);
    free(dist);
    free(dist32);
    free(labels);
    free(idx32);
}

/* query by query, the scan the grouped one must equal bit for bit: dml_pq_adc_distances over
 * every code, then dml_select_k */
static void adc_per_query(const dml_pq *pq, const uint8_t *codes, int n, const float *q, int n_q,
                          int k, int exclude_self, int32_t *idx, float *dist)
{
    float *table = malloc(sizeof(float) * pq->m * pq->ksub), *row = malloc(sizeof(float) * n);
    dml_select_buf b;
    assert_int_equal(dml_select_buf_init(&b, n, NULL), DML_OK);
    for (int i = 0; i < n_q; i++) {
        dml_pq_adc_table(pq, q + (size_t)i * pq->d, table);
        dml_pq_adc_distances(pq, table, codes, (size_t)n, row);
        dml_select_k(row, n, exclude_self ? i : -1, k, &b, idx + (size_t)i * k, dist + (size_t)i * k);
    }
    dml_select_buf_free(&b);
    free(table);
    free(row);
}

/* The grouped ADC scan (DML_ADC_GROUP queries, codes in chunks, the heap touched only below the
 * k-th) against the per-query one: the same rows and the same float distances, at the edges of
 * the row unroll, the chunks and the query groups, k past n, many ties (codes of a few values),
 * a query of NaN, self excluded, the k past the heap (radix), and every M path (4, 8, 16, any). */
static void test_adc_groups_equal_per_query_scan(void **state)
{
    (void)state;
    enum { N_MAX = 1030, N_Q = 7, D = 48, K_MAX = 129 };
    float *db = malloc(sizeof(float) * N_MAX * D), *q = malloc(sizeof(float) * N_Q * D);
    float *dist = malloc(sizeof(float) * N_Q * K_MAX), *want_d = malloc(sizeof(float) * N_Q * K_MAX);
    int64_t *labels = malloc(sizeof(int64_t) * N_Q * K_MAX);
    int32_t *idx = malloc(sizeof(int32_t) * N_Q * K_MAX), *want = malloc(sizeof(int32_t) * N_Q * K_MAX);
    uint8_t *codes = malloc((size_t)N_MAX * 16);
    tu_fill_normal(db, N_MAX * D, 1.0f, 31);
    tu_fill_normal(q, N_Q * D, 1.0f, 32);
    q[3 * D + 5] = NAN; /* query 3: every distance NaN, nothing found */
    const int ms[4] = {8, 4, 16, 6}, ns[5] = {1030, 1024, 257, 5, 3}, ks[4] = {1, 10, 128, 129};
    for (int v = 0; v < 4; v++) {
        dml_pq pq;
        dml_rng rng;
        dml_rng_seed(&rng, 7);
        assert_int_equal(dml_pq_init(&pq, D, ms[v], 8, NULL), DML_OK);
        assert_int_equal(dml_pq_train(&pq, db, N_MAX, 2, DML_KMEANS_RANDOM_ROWS, &rng, NULL), DML_OK);
        dml_pq_encode(&pq, db, N_MAX, codes);
        if (v == 0) /* two values a byte: rows share distances, ties across every chunk */
            for (size_t t = 0; t < (size_t)N_MAX * ms[v]; t++)
                codes[t] &= 1u;
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 4; b++) {
                int n = ns[a], k = ks[b];
                adc_per_query(&pq, codes, n, q, N_Q, k, 0, want, want_d);
                assert_int_equal(dml_pq_search(&pq, codes, (size_t)n, q, N_Q, k, dist, labels), DML_OK);
                for (int t = 0; t < N_Q * k; t++) {
                    assert_int_equal(labels[t], want[t]);
                    assert_memory_equal(&dist[t], &want_d[t], sizeof(float));
                }
                if (k <= DML_SELECT_HEAP_MAX_K) /* the heap skips NaN; the radix sorts it last */
                    assert_int_equal(want[3 * k], -1);
                /* two threads, blocks of 5: groups cut by the block and the threads' shares;
                 * the queries as references' first rows, each excluding itself */
                dml_searcher s;
                assert_int_equal(dml_searcher_init_pq(&s, &pq, codes, n, 5, 2, k, NULL), DML_OK);
                int nq = n < N_Q ? n : N_Q;
                adc_per_query(&pq, codes, n, q, nq, k, 1, want, want_d);
                assert_int_equal(dml_knn_search(&s, q, nq, k, 1, idx, dist, NULL), DML_OK);
                for (int t = 0; t < nq * k; t++) {
                    assert_int_equal(idx[t], want[t]);
                    assert_memory_equal(&dist[t], &want_d[t], sizeof(float));
                }
                dml_searcher_free(&s);
            }
        dml_pq_free(&pq);
    }
    free(db);
    free(q);
    free(dist);
    free(want_d);
    free(labels);
    free(idx);
    free(want);
    free(codes);
}

static void collect(void *ctx, int begin, int end, int thread)
{
    (void)thread;
    int *hits = ctx;
    for (int i = begin; i < end; i++)
        hits[i]++;
}

static void test_parallel_for_covers_every_index_once(void **state)
{
    (void)state;
    int hits[37] = {0};
    for (int threads = 1; threads <= 5; threads++) {
        memset(hits, 0, sizeof hits);
        dml_parallel_for(threads, 37, collect, hits);
        for (int i = 0; i < 37; i++)
            assert_int_equal(hits[i], 1);
    }
    memset(hits, 0, sizeof hits);
    dml_parallel_for(2, 0, collect, hits); /* nothing to do */
    for (int i = 0; i < 37; i++)
        assert_int_equal(hits[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocked_equals_brute_force),
        cmocka_unit_test(test_k_beyond_references),
        cmocka_unit_test(test_ties_by_index),
        cmocka_unit_test(test_select_k_orders_ties_by_row),
        cmocka_unit_test(test_reported_distances),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_pq_search_equals_brute_adc),
        cmocka_unit_test(test_adc_groups_equal_per_query_scan),
        cmocka_unit_test(test_parallel_for_covers_every_index_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
