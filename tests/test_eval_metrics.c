/* Every metric of metrics.md on tiny sets computed by hand (the arithmetic is in the comments),
 * the R = 0 skip, the knn tie rule, PQ variants, request errors and the two output forms. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metric_table.h"
#include "testutil.h"
#include "train/config.h"

#define EPS 1e-9

static double get(const dml_eval_result *res, const char *name)
{
    double v = dml_eval_get(res, name);
    if (isnan(v))
        fail_msg("metric %s missing", name);
    return v;
}

/* Protocol 1 on a line, d = 1 (distances are |x_i - x_j|):
 *   row   0  1  2  3  4   5
 *   x     0  1  3  4  10  20
 *   label 0  0  1  0  1   2      (label 2 has one member: R = 0, skipped)
 * q0: 1,2,3,4,5 rel 1,0,1,0,0 R=2: p1 1, rprec 1/2, map@r 1/2, AP (1 + 2/3)/2 = 5/6
 * q1: 0,2,3,4,5 rel 1,0,1,0,0: the same
 * q2: 3,1,0,4,5 rel 0,0,0,1,0 R=1: 0, 0, 0, AP 1/4
 * q3: 2,1,0,4,5 rel 0,1,1,0,0 R=2: 0, 1/2, (1/2)(1/2) = 1/4, AP (1/2 + 2/3)/2 = 7/12
 * q4: 3,2,1,0,5 (0 and 5 tie at 10: row order) rel 0,1,0,0,0 R=1: 0, 0, 0, AP 1/2
 * means over 5: p1 2/5, rprec 3/10, map@r 1/4, map_all (5/6 + 5/6 + 1/4 + 7/12 + 1/2)/5 = 3/5 */
static void test_protocol1_by_hand(void **state)
{
    (void)state;
    const float x[6] = {0, 1, 3, 4, 10, 20};
    const int32_t y[6] = {0, 0, 1, 0, 1, 2};
    const char *metrics[] = {"precision_at_1", "r_precision", "map_at_r", "map_all"};
    for (int block = 0; block <= 4; block += 4) /* 4 does not divide 6 */
        for (int threads = 1; threads <= 2; threads++) {
            dml_eval_request req = {.d = 1, .queries = x, .q_labels = y, .n_queries = 6,
                                    .metrics = metrics, .n_metrics = 4, .threads = threads,
                                    .block = block};
            dml_eval_result res;
            assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
            assert_float_equal(get(&res, "precision_at_1"), 2.0 / 5, EPS);
            assert_float_equal(get(&res, "r_precision"), 3.0 / 10, EPS);
            assert_float_equal(get(&res, "map_at_r"), 1.0 / 4, EPS);
            assert_float_equal(get(&res, "map_all"), 3.0 / 5, EPS);
            assert_int_equal(res.skipped_queries, 1);
            assert_int_equal(res.scored_queries, 5);
            assert_int_equal(res.n_classes, 3);
            assert_int_equal(res.protocol2, 0);
            assert_int_equal(res.n_queries, 6);
            assert_int_equal(res.n_db, 6);
            assert_int_equal(res.n_values, 4);
        }
}

/* A tie at the first rank decides precision_at_1: q1 (x = 0, label 1) has row 0 (label 0) and
 * row 2 (label 1) both at distance 1; row order puts row 0 first, so rel(1) = 0.
 * q0 (label 0, alone): skipped. q2: nearest is q1, label 1: p1 1, R = 1.
 * The mirrored set (relevant row first) gives p1 1 for q1. */
static void test_ties_broken_by_index(void **state)
{
    (void)state;
    const float x[3] = {-1, 0, 1};
    const int32_t y[3] = {0, 1, 1}, mirrored[3] = {1, 1, 0};
    const float xm[3] = {-1, 0, 1};
    const char *metrics[] = {"precision_at_1", "map_all"};
    dml_eval_request req = {.d = 1, .queries = x, .q_labels = y, .n_queries = 3,
                            .metrics = metrics, .n_metrics = 2};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "precision_at_1"), (0.0 + 1.0) / 2, EPS);
    assert_float_equal(get(&res, "map_all"), (1.0 / 2 + 1.0) / 2, EPS); /* q1: rel 0,1 */
    assert_int_equal(res.skipped_queries, 1);
    /* mirrored: rows 0 (x = -1) and 1 (x = 0) labelled 1, row 2 alone: q1's tie now puts the
     * relevant row 0 first. q0: nearest q1, relevant. */
    req.queries = xm;
    req.q_labels = mirrored;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "precision_at_1"), 1.0, EPS);
    assert_int_equal(res.skipped_queries, 1);
}

/* Protocol 2, database on a line:
 *   row   0  1  2  3  4  5
 *   x     1  2  3  4  5  6
 *   label 0  1  0  0  1  1
 * query x = 0, label 0: ranking 0..5, rel 1,0,1,1,0,0, R = 3:
 *   p1 1, rprec 2/3, map@r (1 + 2/3)/3 = 5/9, AP (1 + 2/3 + 3/4)/3 = 29/36
 * query x = 7, label 1: ranking 5,4,3,2,1,0, rel 1,1,0,0,1,0, R = 3:
 *   p1 1, rprec 2/3, map@r (1 + 1)/3 = 2/3, AP (1 + 1 + 3/5)/3 = 13/15 */
static void test_protocol2_by_hand(void **state)
{
    (void)state;
    const float db[6] = {1, 2, 3, 4, 5, 6}, q[2] = {0, 7};
    const int32_t ydb[6] = {0, 1, 0, 0, 1, 1}, yq[2] = {0, 1};
    const char *metrics[] = {"map_all", "map_at_r", "r_precision", "precision_at_1"};
    dml_eval_request req = {.d = 1, .queries = q, .q_labels = yq, .n_queries = 2, .db = db,
                            .db_labels = ydb, .n_db = 6, .metrics = metrics, .n_metrics = 4};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "map_all"), (29.0 / 36 + 13.0 / 15) / 2, EPS);
    assert_float_equal(get(&res, "map_at_r"), (5.0 / 9 + 2.0 / 3) / 2, EPS);
    assert_float_equal(get(&res, "r_precision"), 2.0 / 3, EPS);
    assert_float_equal(get(&res, "precision_at_1"), 1.0, EPS);
    assert_int_equal(res.skipped_queries, 0);
    assert_int_equal(res.n_db, 6);
    /* metrics.md's order, whatever the request's */
    assert_string_equal(res.values[0].name, "precision_at_1");
    assert_string_equal(res.values[3].name, "map_all");
}

/* knn_accuracy, k = 5. Database:
 *   row   0  1  2  3  4  5
 *   x     1  2  3  4  5  50
 *   label 9  7  3  3  7  9
 * q0 x = 0, label 7: top 5 = 0,1,2,3,4 = 9,7,3,3,7: 7 and 3 tie at 2; the nearest of the tied
 *   is row 1 (7): predicted 7, right. (The nearest overall says 9, the smallest label 3.)
 * q1 x = 0, label 3: predicted 7, wrong.
 * q2 x = 4, label 3: top 5 = 3 (0), 2 and 4 (1, row order), 1 (2), 0 (3) = 3,3,7,7,9: 3 and 7
 *   tie; the nearest of the tied is row 3 (3): right.
 * q3 label 42 is in no database row: R = 0, skipped. Accuracy 2/3. */
static void test_knn_tie_rule(void **state)
{
    (void)state;
    const float db[6] = {1, 2, 3, 4, 5, 50}, q[4] = {0, 0, 4, 0};
    const int32_t ydb[6] = {9, 7, 3, 3, 7, 9}, yq[4] = {7, 3, 3, 42};
    const char *metrics[] = {"knn_accuracy"};
    dml_eval_request req = {.d = 1, .queries = q, .q_labels = yq, .n_queries = 4, .db = db,
                            .db_labels = ydb, .n_db = 6, .metrics = metrics, .n_metrics = 1};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "knn_accuracy"), 2.0 / 3, EPS);
    assert_int_equal(res.skipped_queries, 1);
    assert_int_equal(res.scored_queries, 3);
    assert_int_equal(res.n_classes, 3);
    assert_int_equal(res.protocol2, 1);
    /* k = 1: q0 -> 9 wrong, q1 -> 9 wrong, q2 -> row 3 (3) right */
    req.knn_k = 1;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "knn_accuracy"), 1.0 / 3, EPS);
}

/* A database of one label: q0 (label 5) ranks only label-5 rows, so every label metric is 1 by
 * construction; q1 (label 6) has no database row of its label: skipped. Scored 1 of 2, one
 * class among the references. Without a label metric nothing is counted as scored or skipped. */
static void test_one_class_database_counts(void **state)
{
    (void)state;
    const float db[3] = {1, 2, 3}, q[2] = {0, 9};
    const int32_t ydb[3] = {5, 5, 5}, yq[2] = {5, 6};
    const char *metrics[] = {"knn_accuracy", "map_at_r"};
    dml_eval_request req = {.d = 1, .queries = q, .q_labels = yq, .n_queries = 2, .db = db,
                            .db_labels = ydb, .n_db = 3, .metrics = metrics, .n_metrics = 2};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "knn_accuracy"), 1.0, EPS);
    assert_float_equal(get(&res, "map_at_r"), 1.0, EPS);
    assert_int_equal(res.scored_queries, 1);
    assert_int_equal(res.skipped_queries, 1);
    assert_int_equal(res.n_classes, 1);
    const char *nn[] = {"nmi"};
    req.metrics = nn;
    req.n_metrics = 1;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_int_equal(res.scored_queries, 2);
    assert_int_equal(res.skipped_queries, 0);
    assert_int_equal(res.n_classes, 0);
}

/* Paired data, database row j at x = j (j = 0..11), query i's positive is row i:
 * q0 at 11: row 0 is the farthest, rank 12 (not in the top 10): 0
 * q1 at 2.2: rows 2 (0.2), 3 (0.8), 1 (1.2): rank 3
 * q2 at 8: rows 3..11 are nearer than row 2 (distance 6): rank 10
 * q3..q11 at their own row: rank 1
 * recall@1 9/12, @5 10/12, @10 11/12; mrr (9 + 1/3 + 1/10)/12 */
static void test_recall_and_mrr_by_hand(void **state)
{
    (void)state;
    float db[12], q[12];
    int32_t y[12];
    for (int j = 0; j < 12; j++) {
        db[j] = (float)j;
        q[j] = (float)j;
        y[j] = j % 2;
    }
    q[0] = 11.0f;
    q[1] = 2.2f;
    q[2] = 8.0f;
    const char *metrics[] = {"recall_at_k", "mrr_at_10"};
    dml_eval_request req = {.d = 1, .queries = q, .n_queries = 12, .db = db, .n_db = 12,
                            .paired = 1, .metrics = metrics, .n_metrics = 2};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "recall_at_1"), 9.0 / 12, EPS);
    assert_float_equal(get(&res, "recall_at_5"), 10.0 / 12, EPS);
    assert_float_equal(get(&res, "recall_at_10"), 11.0 / 12, EPS);
    assert_float_equal(get(&res, "mrr_at_10"), (9.0 + 1.0 / 3 + 1.0 / 10) / 12, EPS);
    assert_int_equal(res.n_values, 4);
    /* the defaults of paired data without labels: exactly these */
    req.metrics = NULL;
    req.n_metrics = 0;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_int_equal(res.n_values, 4);
    /* with labels the defaults add the label metrics */
    req.q_labels = y;
    req.db_labels = y;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_false(isnan(dml_eval_get(&res, "map_at_r")));
    assert_false(isnan(dml_eval_get(&res, "knn_accuracy")));
    assert_false(isnan(dml_eval_get(&res, "nmi")));
}

/* nn_recall_at_k against a given ground truth, d = 1: the database is the line 0, 1, ..., 11,
 * both queries sit at 0.1, so the search returns rows 0, 1, 2, ... in order.
 *   q0's truth 0, 1, 2, ..., 11 (what the search finds): @1 1, @10 1
 *   q1's truth 11, 10, ..., 0 (reversed):  @1 (11 in the first 1?) 0,
 *        @10 the first 10 found are 0..9, its first 10 true are 11..2: 8 shared, 8/10
 * means: @1 1/2, @10 9/10; @100 is not given (12 database rows, 12 true neighbours). */
static void test_nn_recall_by_hand(void **state)
{
    (void)state;
    float db[12], q[2] = {0.1f, 0.1f};
    int32_t truth[2 * 12];
    for (int j = 0; j < 12; j++) {
        db[j] = (float)j;
        truth[j] = j;
        truth[12 + j] = 11 - j;
    }
    dml_eval_request req = {.d = 1, .queries = q, .n_queries = 2, .db = db, .n_db = 12,
                            .truth = truth, .truth_k = 12};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "nn_recall_at_1"), 0.5, EPS);
    assert_float_equal(get(&res, "nn_recall_at_10"), 0.9, EPS);
    assert_true(isnan(dml_eval_get(&res, "nn_recall_at_100")));
    /* a ground truth naming a row the database does not have is the data's fault */
    truth[5] = 12;
    dml_error err;
    assert_int_equal(dml_eval_run(&req, &res, &err), DML_ERR_DATA);
    assert_non_null(strstr(err.msg, "query 0's true neighbour 12 is not one of the 12"));
    /* without a database there is nothing the truth's rows could be */
    const char *nn[] = {"nn_recall_at_k"};
    dml_eval_request p1 = {.d = 1, .queries = db, .n_queries = 12, .metrics = nn, .n_metrics = 1};
    assert_int_equal(dml_eval_run(&p1, &res, &err), DML_ERR_USAGE);
    assert_non_null(strstr(err.msg, "nn_recall_at_k needs a database and its ground-truth"));
}

/* a = 000111, b = 001122: cells (0,0) 2, (0,1) 1, (1,1) 1, (1,2) 2 of 6.
 * I = 2 (2/6) ln((2/6) / (1/2 * 1/3)) = (2/3) ln 2, H(a) = ln 2, H(b) = ln 3:
 * NMI = (2/3) ln 2 / ((ln 2 + ln 3) / 2) = (4/3) ln 2 / ln 6. */
static void test_nmi_contingency_by_hand(void **state)
{
    (void)state;
    const int32_t a[6] = {0, 0, 0, 1, 1, 1}, b[6] = {0, 0, 1, 1, 2, 2};
    assert_float_equal(dml_nmi(a, b, 6), 4.0 / 3.0 * log(2.0) / log(6.0), 1e-12);
    assert_float_equal(dml_nmi(b, a, 6), 4.0 / 3.0 * log(2.0) / log(6.0), 1e-12);
    /* the same partition under other names: 1; independent halves: 0; both constant: 1 */
    const int32_t renamed[6] = {-5, -5, -5, 70, 70, 70}, cross[4] = {0, 1, 0, 1}, halves[4] = {0, 0, 1, 1};
    const int32_t c1[4] = {3, 3, 3, 3}, c2[4] = {8, 8, 8, 8};
    assert_float_equal(dml_nmi(a, renamed, 6), 1.0, 1e-12);
    assert_float_equal(dml_nmi(cross, halves, 4), 0.0, 1e-12);
    assert_float_equal(dml_nmi(c1, c2, 4), 1.0, 1e-12);
    assert_float_equal(dml_nmi(c1, halves, 4), 0.0, 1e-12);
}

/* Three far-apart clusters labelled by cluster: k-means finds them, NMI 1. */
static void test_nmi_perfect_clustering(void **state)
{
    (void)state;
    enum { PER = 20, N = 3 * PER, D = 4 };
    float x[N * D];
    int32_t y[N];
    tu_fill_normal(x, N * D, 0.1f, 31);
    for (int i = 0; i < N; i++) {
        y[i] = 10 * (i % 3); /* interleaved rows, labels 0, 10, 20 */
        x[i * D + (i % 3)] += 50.0f;
    }
    double nmi = 0.0;
    assert_int_equal(dml_eval_nmi(x, y, N, D, 7, &nmi, NULL), DML_OK);
    assert_float_equal(nmi, 1.0, 1e-12);
    const char *metrics[] = {"nmi"};
    dml_eval_request req = {.d = D, .queries = x, .q_labels = y, .n_queries = N,
                            .metrics = metrics, .n_metrics = 1, .seed = 3};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "nmi"), 1.0, 1e-12);
    assert_int_equal(res.n_values, 1);
}

/* PQ with two 1-D sub-quantizers of centroids {0, 10}: points on that grid are their own codes,
 * so every pq_ metric equals its float twin; quantization_mse of (1, 2) and (9, 1) is
 * ((1 + 4) + (1 + 1)) / 2 = 3.5. */
static void make_grid_pq(dml_pq *pq)
{
    assert_int_equal(dml_pq_init(pq, 2, 2, 1, NULL), DML_OK);
    for (int m = 0; m < 2; m++) {
        pq->centroids[m * 2 + 0] = 0.0f;
        pq->centroids[m * 2 + 1] = 10.0f;
    }
}

static void test_pq_metrics(void **state)
{
    (void)state;
    dml_pq pq;
    make_grid_pq(&pq);
    const float grid[8 * 2] = {0, 0, 10, 0, 0, 10, 10, 10, 0, 0, 10, 0, 10, 10, 0, 10};
    const int32_t y[8] = {0, 1, 2, 3, 0, 1, 3, 4}; /* label 2 and 4 alone */
    dml_eval_request req = {.d = 2, .queries = grid, .q_labels = y, .n_queries = 8, .pq = &pq};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    const char *twins[] = {"precision_at_1", "r_precision", "map_at_r"};
    for (int i = 0; i < 3; i++) {
        char pq_name[40];
        snprintf(pq_name, sizeof pq_name, "pq_%s", twins[i]);
        assert_float_equal(get(&res, pq_name), get(&res, twins[i]), EPS);
    }
    /* rows 0 and 4 share a point, as do 1 and 5, 3 and 6: p1 1 for labels 0, 1, 3 */
    assert_float_equal(get(&res, "precision_at_1"), 1.0, EPS);
    assert_float_equal(get(&res, "quantization_mse"), 0.0, EPS);
    assert_float_equal(get(&res, "pq_recall_at_r"), 1.0, EPS);
    assert_int_equal(res.skipped_queries, 2);

    const float off[2 * 2] = {1, 2, 9, 1};
    const char *mse[] = {"quantization_mse"};
    dml_eval_request r2 = {.d = 2, .queries = off, .n_queries = 2, .pq = &pq, .metrics = mse,
                           .n_metrics = 1};
    assert_int_equal(dml_eval_run(&r2, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "quantization_mse"), 3.5, 1e-6);
    assert_int_equal(res.n_values, 1);
    dml_pq_free(&pq);
}

/* pq_recall_at_r and the pq_ metrics against a brute force over decoded codes, random data;
 * the codes given by the caller give the same result as codes made here. */
static void test_pq_recall_against_brute_force(void **state)
{
    (void)state;
    enum { N_DB = 200, N_Q = 40, D = 8 };
    float *db = malloc(sizeof(float) * N_DB * D), *q = malloc(sizeof(float) * N_Q * D);
    float *dec = malloc(sizeof(float) * N_DB * D);
    tu_fill_normal(db, N_DB * D, 1.0f, 41);
    tu_fill_normal(q, N_Q * D, 1.0f, 42);
    dml_pq pq;
    dml_rng rng;
    dml_rng_seed(&rng, 9);
    assert_int_equal(dml_pq_init(&pq, D, 2, 4, NULL), DML_OK);
    assert_int_equal(dml_pq_train(&pq, db, N_DB, 10, DML_KMEANS_PLUSPLUS, &rng, NULL), DML_OK);
    uint8_t *codes = malloc(N_DB * dml_pq_code_size(&pq));
    dml_pq_encode(&pq, db, N_DB, codes);
    dml_pq_decode(&pq, codes, N_DB, dec);
    int hits = 0;
    for (int i = 0; i < N_Q; i++) {
        double best = INFINITY, adc[N_DB];
        int nn = -1;
        for (int j = 0; j < N_DB; j++) {
            double e = 0.0, a = 0.0;
            for (int t = 0; t < D; t++) {
                e += ((double)q[i * D + t] - db[j * D + t]) * ((double)q[i * D + t] - db[j * D + t]);
                a += ((double)q[i * D + t] - dec[j * D + t]) * ((double)q[i * D + t] - dec[j * D + t]);
            }
            adc[j] = a;
            if (e < best) {
                best = e;
                nn = j;
            }
        }
        int before = 0; /* rows ranked before the exact neighbour by ADC */
        for (int j = 0; j < N_DB; j++)
            before += adc[j] < adc[nn] || (adc[j] == adc[nn] && j < nn);
        hits += before < DML_PQ_RECALL_R;
    }
    const char *metrics[] = {"pq_recall_at_r"};
    dml_eval_request req = {.d = D, .queries = q, .n_queries = N_Q, .db = db, .n_db = N_DB,
                            .pq = &pq, .metrics = metrics, .n_metrics = 1};
    dml_eval_result res, given;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_float_equal(get(&res, "pq_recall_at_r"), (double)hits / N_Q, EPS);
    assert_true(hits > 0 && hits < N_Q); /* a test that can tell */
    req.db_codes = codes;
    assert_int_equal(dml_eval_run(&req, &given, NULL), DML_OK);
    assert_float_equal(get(&given, "pq_recall_at_r"), get(&res, "pq_recall_at_r"), 0.0);
    dml_pq_free(&pq);
    free(codes);
    free(db);
    free(q);
    free(dec);
}

/* The same numbers whatever the block size and thread count. */
static void test_blocks_and_threads_agree(void **state)
{
    (void)state;
    enum { N = 150, D = 6 };
    float x[N * D];
    int32_t y[N];
    tu_fill_normal(x, N * D, 1.0f, 51);
    for (int i = 0; i < N; i++)
        y[i] = (i * 7) % 6;
    const char *metrics[] = {"precision_at_1", "r_precision", "map_at_r", "map_all", "knn_accuracy"};
    dml_eval_result base, res;
    const int blocks[] = {0, 1, 13, 150}, threads[] = {1, 2, 1, 2};
    for (int v = 0; v < 4; v++) {
        dml_eval_request req = {.d = D, .queries = x, .q_labels = y, .n_queries = N,
                                .metrics = metrics, .n_metrics = 5, .block = blocks[v],
                                .threads = threads[v]};
        assert_int_equal(dml_eval_run(&req, v ? &res : &base, NULL), DML_OK);
        for (int i = 0; v && i < base.n_values; i++)
            assert_true(res.values[i].value == base.values[i].value);
    }
}

static void expect_usage(const dml_eval_request *req, const char *part)
{
    dml_eval_result res;
    dml_error err;
    dml_error_clear(&err);
    assert_int_equal(dml_eval_run(req, &res, &err), DML_ERR_USAGE);
    if (!strstr(err.msg, part))
        fail_msg("message \"%s\" lacks \"%s\"", err.msg, part);
}

static void test_request_errors(void **state)
{
    (void)state;
    const float x[4] = {0, 1, 2, 3};
    const int32_t y[4] = {0, 0, 1, 1};
    const char *bad[] = {"map_at_5"}, *knn[] = {"knn_accuracy"}, *rec[] = {"recall_at_k"};
    const char *mse[] = {"quantization_mse"}, *nmi[] = {"nmi"};
    dml_eval_request req = {.d = 1, .queries = x, .q_labels = y, .n_queries = 4, .metrics = bad,
                            .n_metrics = 1};
    expect_usage(&req, "unknown metric \"map_at_5\"");
    req.metrics = rec;
    expect_usage(&req, "recall_at_k needs paired data");
    req.metrics = mse;
    expect_usage(&req, "quantization_mse needs PQ codebooks");
    dml_eval_request p2 = {.d = 1, .queries = x, .q_labels = y, .n_queries = 4, .db = x, .n_db = 4,
                           .metrics = knn, .n_metrics = 1};
    expect_usage(&p2, "knn_accuracy needs labels on the queries and the references");
    p2.metrics = nmi; /* nmi clusters the queries: their labels are enough */
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&p2, &res, NULL), DML_OK);
    dml_eval_request empty = {.d = 1, .queries = x, .n_queries = 0};
    expect_usage(&empty, "at least one query");
    dml_eval_request pairs = {.d = 1, .queries = x, .n_queries = 4, .db = x, .n_db = 3, .paired = 1};
    expect_usage(&pairs, "paired data");
    dml_pq pq;
    make_grid_pq(&pq);
    dml_eval_request wide = {.d = 1, .queries = x, .n_queries = 4, .pq = &pq};
    expect_usage(&wide, "PQ codebooks of the embeddings' width");
    dml_pq_free(&pq);
    const float nan_row[4] = {0, 1, NAN, 3};
    dml_eval_request bad_data = {.d = 1, .queries = x, .q_labels = y, .n_queries = 4, .db = nan_row,
                                 .db_labels = y, .n_db = 4};
    dml_error err;
    assert_int_equal(dml_eval_run(&bad_data, &res, &err), DML_ERR_DATA);
    assert_non_null(strstr(err.msg, "database row 2 has a non-finite value"));
    dml_eval_request shard = {.d = 1, .queries = x, .q_labels = y, .n_queries = 4,
                              .shard_size = 2}; /* every process's rows, no slices */
    expect_usage(&shard, "sharded rows: this process's slices");
    dml_eval_slices one = {0, 4, 0, 4};
    dml_eval_request alone = {.d = 1, .queries = x, .q_labels = y, .n_queries = 4,
                              .slices = &one};
    expect_usage(&alone, "two processes or more");
}

/* Sharded rows (dml eval under mpirun): whole 256-row units, in rank order, covering every row;
 * fewer units than ranks leave the first ranks empty. */
static void test_slices(void **state)
{
    (void)state;
    const int n[] = {1, 255, 256, 257, 600, 3000, 1 << 20};
    for (int i = 0; i < (int)(sizeof n / sizeof *n); i++)
        for (int size = 1; size <= 7; size++) {
            int end = 0;
            for (int r = 0; r < size; r++) {
                int lo, hi;
                dml_eval_slice(n[i], r, size, &lo, &hi);
                assert_int_equal(lo, end);
                assert_true(hi >= lo);
                assert_true(lo % DML_EVAL_SLICE_ROWS == 0 || lo == n[i]);
                end = hi;
            }
            assert_int_equal(end, n[i]);
        }
    int lo, hi;
    dml_eval_slice(600, 0, 3, &lo, &hi); /* 3 units of 3 ranks: one each */
    assert_int_equal(hi - lo, 256);
    dml_eval_slice(600, 2, 3, &lo, &hi);
    assert_int_equal(hi - lo, 88);
    dml_eval_slice(300, 0, 3, &lo, &hi); /* 2 units of 3 ranks: rank 0 holds none */
    assert_int_equal(hi - lo, 0);
}

/* Every class of one member: nothing counted, the label metrics are NAN (null in JSON). */
static void test_all_skipped_and_outputs(void **state)
{
    (void)state;
    const float x[3] = {0, 1, 2};
    const int32_t y[3] = {4, 5, 6};
    const char *metrics[] = {"map_at_r"};
    dml_eval_request req = {.d = 1, .queries = x, .q_labels = y, .n_queries = 3, .metrics = metrics,
                            .n_metrics = 1};
    dml_eval_result res;
    assert_int_equal(dml_eval_run(&req, &res, NULL), DML_OK);
    assert_int_equal(res.skipped_queries, 3);
    assert_true(isnan(res.values[0].value));
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    dml_eval_write_json(&res, f);
    fclose(f);
    assert_int_equal(res.scored_queries, 0);
    assert_non_null(strstr(buf, "{\"map_at_r\": null, \"n_queries\": 3, \"n_db\": 3, "
                                "\"scored_queries\": 0, \"skipped_queries\": 3, \"seconds\": "));
    assert_int_equal(buf[len - 1], '}');
    free(buf);

    /* a full result: the table puts each PQ value beside its float twin */
    dml_eval_result full = {.n_values = 4, .n_queries = 10, .n_db = 20, .skipped_queries = 1,
                            .scored_queries = 9, .n_classes = 2, .protocol2 = 1, .seconds = 0.5};
    const char *names[4] = {"map_at_r", "nmi", "quantization_mse", "pq_map_at_r"};
    const double values[4] = {0.25, 0.5, 0.00123, 0.125};
    for (int i = 0; i < 4; i++) {
        snprintf(full.values[i].name, sizeof full.values[i].name, "%s", names[i]);
        full.values[i].value = values[i];
    }
    f = open_memstream(&buf, &len);
    dml_eval_print_table(&full, f);
    fclose(f);
    assert_string_equal(buf, "metric                  float         pq\n"
                             "map_at_r               0.2500     0.1250\n"
                             "nmi                    0.5000          -\n"
                             "quantization_mse            -  1.230e-03\n"
                             "10 queries, 20 references, 0.50 s\n"
                             "scored 9 of 10 queries (1 skipped: no database row of their class)\n");
    free(buf);
    f = open_memstream(&buf, &len);
    dml_eval_write_json(&full, f);
    fclose(f);
    assert_string_equal(buf, "{\"map_at_r\": 0.25, \"nmi\": 0.5, \"quantization_mse\": 0.00123, "
                             "\"pq_map_at_r\": 0.125, \"n_queries\": 10, \"n_db\": 20, "
                             "\"scored_queries\": 9, \"skipped_queries\": 1, \"seconds\": 0.500}");
    free(buf);
}

/* The collapse diagnostics on data whose spread is known. */
static void test_spread_hand_computed(void **state)
{
    (void)state;
    dml_spread sp;
    /* Rows along one direction: t * (1, 2, 0) for t = 1..4: one nonzero eigenvalue, effective
     * rank 1; per-dimension stds sqrt(5/3) * (1, 2, 0), their mean sqrt(5/3); total variance
     * 5/3 * 5 against a mean squared norm of 7.5 * 5: relative spread sqrt(1/4.5). */
    float line[12] = {1, 2, 0, 2, 4, 0, 3, 6, 0, 4, 8, 0};
    assert_int_equal(dml_embedding_spread(line, 4, 3, &sp, NULL), DML_OK);
    assert_true(fabs(sp.effective_rank - 1.0) < 1e-6);
    assert_true(fabs(sp.mean_std - sqrt(5.0 / 3.0)) < 1e-6);
    assert_true(fabs(sp.relative_spread - sqrt(1.0 / 4.5)) < 1e-6);
    assert_true(dml_spread_collapsed(&sp)); /* a line */
    /* +-e_k for k = 0..3: covariance (2/7) I, every eigenvalue equal: effective rank 4. */
    float cross[32] = {0};
    for (int k = 0; k < 4; k++) {
        cross[(2 * k) * 4 + k] = 1.0f;
        cross[(2 * k + 1) * 4 + k] = -1.0f;
    }
    assert_int_equal(dml_embedding_spread(cross, 8, 4, &sp, NULL), DML_OK);
    assert_true(fabs(sp.effective_rank - 4.0) < 1e-6);
    assert_true(fabs(sp.relative_spread - sqrt(4.0 * 2.0 / 7.0)) < 1e-6);
    assert_false(dml_spread_collapsed(&sp));
    /* The same cross shrunk around a far point: every row near (10, 0, 0, 0). */
    for (int i = 0; i < 8; i++) {
        for (int k = 0; k < 4; k++)
            cross[i * 4 + k] *= 0.01f;
        cross[i * 4] += 10.0f;
    }
    assert_int_equal(dml_embedding_spread(cross, 8, 4, &sp, NULL), DML_OK);
    assert_true(fabs(sp.effective_rank - 4.0) < 1e-3); /* the shape is the same... */
    assert_true(dml_spread_collapsed(&sp));             /* ...but it sits near one point */
    /* Label distances: 0 and 1 (label 0) at x = 0, 1; 2 (label 1) at x = 4. Same: |0-1| = 1;
     * other: 4 and 3, mean 3.5. */
    float pts[6] = {0, 0, 1, 0, 4, 0};
    static const int32_t y[3] = {0, 0, 1};
    dml_label_distances(pts, y, 3, 2, &sp);
    assert_true(fabs(sp.pos_dist - 1.0) < 1e-6);
    assert_true(fabs(sp.neg_dist - 3.5) < 1e-6);
    char text[96];
    dml_label_distances_text(&sp, text, sizeof text);
    assert_string_equal(text, "1.000/3.500");
    /* one label: no pair across labels, said rather than printed as nan */
    static const int32_t one[3] = {2, 2, 2}, own[3] = {0, 1, 2};
    dml_label_distances(pts, one, 3, 2, &sp);
    dml_label_distances_text(&sp, text, sizeof text);
    assert_string_equal(text, "2.667/- (one label: no pair across labels)");
    dml_label_distances(pts, own, 3, 2, &sp);
    dml_label_distances_text(&sp, text, sizeof text);
    assert_string_equal(text, "-/2.667 (no two rows share a label)");
}

/* --metrics and dml_evaluate's metrics: split at commas, empty keys skipped, unknown or repeated
 * keys and an overlong list refused rather than cut. */
static void test_metric_list(void **state)
{
    (void)state;
    dml_eval_metric_list l;
    dml_error err = {0};
    assert_int_equal(dml_eval_metric_list_parse("map_at_r,,recall_at_k,", "--metrics", &l, &err),
                     DML_OK);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.keys[0], "map_at_r");
    assert_string_equal(l.keys[1], "recall_at_k");
    assert_int_equal(dml_eval_metric_list_parse("", "--metrics", &l, &err), DML_OK);
    assert_int_equal(l.n, 0);
    /* keys are the table's metrics, each once */
    assert_int_equal(dml_eval_metric_list_parse("nmi,map_at_5", "--metrics", &l, &err),
                     DML_ERR_USAGE);
    assert_string_equal(err.file, "--metrics");
    assert_non_null(strstr(err.msg, "unknown metric \"map_at_5\": expected one of "
                                    "precision_at_1, r_precision, map_at_r,"));
    assert_int_equal(dml_eval_metric_list_parse("nmi,map_at_r,nmi", "--metrics", &l, &err),
                     DML_ERR_USAGE);
    assert_string_equal(err.msg, "metric nmi listed twice: expected each once");
    char longer[1100];
    memset(longer, 'a', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(dml_eval_metric_list_parse(longer, "metrics", &l, &err), DML_ERR_USAGE);
    assert_string_equal(err.file, "metrics");
}

/* ---- every row of the metric table (eval/metric_table.c) ---- */

/* The data of the hand-computed cases above, as static arrays. */
static const float LINE6[6] = {0, 1, 3, 4, 10, 20};             /* test_protocol1_by_hand */
static const int32_t LINE6_Y[6] = {0, 0, 1, 0, 1, 2};
static const float KNN_DB[6] = {1, 2, 3, 4, 5, 50}, KNN_Q[4] = {0, 0, 4, 0}; /* knn_tie_rule */
static const int32_t KNN_YDB[6] = {9, 7, 3, 3, 7, 9}, KNN_YQ[4] = {7, 3, 3, 42};
static const float LINE12[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static const float PAIRED_Q[12] = {11, 2.2f, 8, 3, 4, 5, 6, 7, 8, 9, 10, 11}; /* recall_and_mrr */
static const float NN_Q[2] = {0.1f, 0.1f};                      /* test_nn_recall_by_hand */
static const int32_t NN_TRUTH[24] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
                                     11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
/* nmi: three far-apart pairs labelled by pair: k-means (k = 3) finds them, NMI 1. */
static const float PAIRS3[6] = {0, 0.1f, 50, 50.1f, 100, 100.1f};
static const int32_t PAIRS3_Y[6] = {0, 0, 1, 1, 2, 2};
static const float OFF_GRID[4] = {1, 2, 9, 1}; /* test_pq_metrics: quantization_mse 3.5 */
/* pq_recall_at_r on make_grid_pq's codebooks: rows 0..10 at (0, 0), row 11 at (6, 0), coded
 * (10, 0). The query (4, 0)'s exact nearest is row 11 (squared distance 4 against 16), but by
 * ADC row 11 is at 36, behind the 11 rows at 16: rank 12, a miss. The query (0, 0)'s exact
 * nearest is row 0, first by ADC too: a hit. 1/2. */
static const float PQREC_DB[24] = {[22] = 6};
static const float PQREC_Q[4] = {4, 0, 0, 0};

typedef struct hand_case {
    const char *metric;
    dml_eval_request req;                  /* metrics, pq: set by the walk */
    int pq;                                /* the request takes make_grid_pq's codebooks */
    double expect[DML_METRIC_MAX_VALUES];  /* each value of the row; NAN: not reported */
} hand_case;

static const hand_case HAND_CASES[] = {
    {"precision_at_1", {.d = 1, .queries = LINE6, .q_labels = LINE6_Y, .n_queries = 6}, 0,
     {2.0 / 5}},
    {"r_precision", {.d = 1, .queries = LINE6, .q_labels = LINE6_Y, .n_queries = 6}, 0,
     {3.0 / 10}},
    {"map_at_r", {.d = 1, .queries = LINE6, .q_labels = LINE6_Y, .n_queries = 6}, 0, {1.0 / 4}},
    {"map_all", {.d = 1, .queries = LINE6, .q_labels = LINE6_Y, .n_queries = 6}, 0, {3.0 / 5}},
    {"recall_at_k", {.d = 1, .queries = PAIRED_Q, .n_queries = 12, .db = LINE12, .n_db = 12,
                     .paired = 1}, 0, {9.0 / 12, 10.0 / 12, 11.0 / 12}},
    {"mrr_at_10", {.d = 1, .queries = PAIRED_Q, .n_queries = 12, .db = LINE12, .n_db = 12,
                   .paired = 1}, 0, {(9.0 + 1.0 / 3 + 1.0 / 10) / 12}},
    {"knn_accuracy", {.d = 1, .queries = KNN_Q, .q_labels = KNN_YQ, .n_queries = 4, .db = KNN_DB,
                      .db_labels = KNN_YDB, .n_db = 6}, 0, {2.0 / 3}},
    {"nmi", {.d = 1, .queries = PAIRS3, .q_labels = PAIRS3_Y, .n_queries = 6, .seed = 5}, 0,
     {1.0}},
    {"quantization_mse", {.d = 2, .queries = OFF_GRID, .n_queries = 2}, 1, {3.5}},
    {"pq_recall_at_r", {.d = 2, .queries = PQREC_Q, .n_queries = 2, .db = PQREC_DB, .n_db = 12}, 1,
     {0.5}},
    {"nn_recall_at_k", {.d = 1, .queries = NN_Q, .n_queries = 2, .db = LINE12, .n_db = 12,
                        .truth = NN_TRUTH, .truth_k = 12}, 0, {0.5, 0.9, NAN}},
};

/* The config round trip of metric name: eval.metrics [name] loads, prints and loads again the
 * same; a metric a run cannot compute is refused naming it. */
static void config_round_trip(const char *name, int in_runs)
{
    char text[128];
    snprintf(text, sizeof text, "eval:\n  metrics: [%s]\n", name);
    dml_config *c = malloc(sizeof *c), *again = malloc(sizeof *again);
    assert_non_null(c);
    assert_non_null(again);
    dml_error err;
    dml_error_clear(&err);
    dml_status st = dml_config_load_text(text, strlen(text), "<config>", 0, NULL, c, &err);
    if (!in_runs) {
        assert_int_equal(st, DML_ERR_CONFIG);
        assert_non_null(strstr(err.msg, name));
    } else {
        if (st != DML_OK)
            fail_msg("eval.metrics [%s]: %s", name, err.msg);
        assert_int_equal(c->eval.n_metrics, 1);
        assert_string_equal(c->eval.metrics[0], name);
        char *yaml = dml_config_to_yaml(c);
        assert_non_null(yaml);
        st = dml_config_load_text(yaml, strlen(yaml), "<printed>", 0, NULL, again, &err);
        assert_int_equal(st, DML_OK);
        assert_int_equal(again->eval.n_metrics, 1);
        assert_string_equal(again->eval.metrics[0], name);
        free(yaml);
    }
    free(c);
    free(again);
}

/* Every row: a hand-computed case gives each of its values; eval.metrics takes it (unless a
 * run cannot give it); docs/config.md names it; dml_metric_find and dml_metric_of_value find
 * it. */
static void test_every_metric_row(void **state)
{
    (void)state;
    char *docs = tu_read_file("docs/config.md", NULL); /* run from the repository root */
    assert_non_null(docs);
    dml_pq pq;
    make_grid_pq(&pq);
    for (int m = 0; m < DML_METRIC_COUNT; m++) {
        const dml_metric_row *row = &dml_metric_rows[m];
        if (!row->name || !row->doc || row->n_values < 1 || row->n_values > DML_METRIC_MAX_VALUES ||
            !row->query == !row->whole)
            fail_msg("metric row %d is incomplete", m);
        const hand_case *hc = NULL;
        for (size_t i = 0; i < sizeof HAND_CASES / sizeof HAND_CASES[0]; i++)
            if (!strcmp(HAND_CASES[i].metric, row->name))
                hc = &HAND_CASES[i];
        if (!hc)
            fail_msg("metric %s has no hand-computed case", row->name);
        dml_eval_request req = hc->req;
        req.metrics = &row->name;
        req.n_metrics = 1;
        req.pq = hc->pq ? &pq : NULL;
        dml_eval_result res;
        dml_error err;
        dml_error_clear(&err);
        if (dml_eval_run(&req, &res, &err) != DML_OK)
            fail_msg("%s: %s", row->name, err.msg);
        int reported = 0;
        for (int t = 0; t < row->n_values; t++) {
            double v = dml_eval_get(&res, row->values[t]);
            if (isnan(hc->expect[t])) {
                assert_true(isnan(v));
                continue;
            }
            if (fabs(v - hc->expect[t]) > 1e-9)
                fail_msg("%s: %s = %.17g, expected %.17g", row->name, row->values[t], v,
                         hc->expect[t]);
            int pq_side = -1;
            assert_int_equal(dml_metric_of_value(row->values[t], &pq_side), m);
            assert_int_equal(pq_side, row->where == DML_METRIC_PQ);
            reported++;
        }
        /* the float metrics' PQ twins come with pq only in the table's BOTH rows */
        int twins = row->where == DML_METRIC_BOTH && hc->pq ? reported : 0;
        assert_int_equal(res.n_values, reported + twins);
        assert_int_equal(dml_metric_find(row->name), m);
        config_round_trip(row->name, !(row->needs & DML_METRIC_NEEDS_TRUTH));
        char quoted[48];
        snprintf(quoted, sizeof quoted, "| `%s` |", row->name);
        if (!strstr(docs, quoted))
            fail_msg("docs/config.md has no row for metric %s", row->name);
    }
    dml_pq_free(&pq);
    free(docs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spread_hand_computed),
        cmocka_unit_test(test_protocol1_by_hand),
        cmocka_unit_test(test_ties_broken_by_index),
        cmocka_unit_test(test_protocol2_by_hand),
        cmocka_unit_test(test_knn_tie_rule),
        cmocka_unit_test(test_recall_and_mrr_by_hand),
        cmocka_unit_test(test_nn_recall_by_hand),
        cmocka_unit_test(test_nmi_contingency_by_hand),
        cmocka_unit_test(test_nmi_perfect_clustering),
        cmocka_unit_test(test_pq_metrics),
        cmocka_unit_test(test_pq_recall_against_brute_force),
        cmocka_unit_test(test_blocks_and_threads_agree),
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_slices),
        cmocka_unit_test(test_one_class_database_counts),
        cmocka_unit_test(test_all_skipped_and_outputs),
        cmocka_unit_test(test_metric_list),
        cmocka_unit_test(test_every_metric_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
