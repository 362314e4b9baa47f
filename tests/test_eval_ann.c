/* dml eval on an ann-benchmarks file (train, test, neighbors): nn_recall_at_1/10/100 of the
 * model's embeddings against the file's ground truth, found by itself or given by --truth
 * (.ivecs), checked against a brute force in this file; and the errors of a truth that does
 * not fit. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/model_fixture.h"

#define N_DB 400
#define N_Q 30
#define D_IN 16
#define K 100

static const fx_spec SPEC = {DML_NET_MLP, D_IN, 0, 1, {24}, 8, DML_ACT_RELU,
                             DML_OUTPUT_NONE, 0, 2, 4, "l2", 21};

static char dir[256];

static void put(hid_t f, const char *name, hid_t type, hsize_t rows, hsize_t cols,
                const void *data)
{
    hsize_t dims[2] = {rows, cols};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Sclose(space);
}

static double sq_dist(const float *a, const float *b, int d)
{
    double s = 0.0;
    for (int j = 0; j < d; j++)
        s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return s;
}

/* The k nearest rows of db[n, d] to q, nearest first (ties: the lower row). */
static void brute_topk(const float *q, const float *db, int n, int d, int k, int32_t *out)
{
    double *best = malloc((size_t)k * sizeof *best);
    for (int t = 0; t < k; t++)
        best[t] = INFINITY, out[t] = -1;
    for (int i = 0; i < n; i++) {
        double s = sq_dist(q, db + (size_t)i * d, d);
        int t = k;
        while (t > 0 && s < best[t - 1])
            t--;
        if (t == k)
            continue;
        memmove(best + t + 1, best + t, (size_t)(k - t - 1) * sizeof *best);
        memmove(out + t + 1, out + t, (size_t)(k - t - 1) * sizeof *out);
        best[t] = s;
        out[t] = i;
    }
    free(best);
}

static double json_value(const char *json, const char *key)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *at = strstr(json, pat);
    if (!at)
        fail_msg("no %s in %s", key, json);
    return strtod(at + strlen(pat), NULL);
}

static void test_nn_recall_on_ann_benchmarks_file(void **state)
{
    (void)state;
    char ann[400], model[400], ivecs[400], out[400];
    FX_TMP(dir, ann, "ann.hdf5");
    snprintf(model, sizeof model, "%s/model.h5", dir);
    snprintf(ivecs, sizeof ivecs, "%s/gt.ivecs", dir);
    snprintf(out, sizeof out, "%s/out.json", dir);
    float *db = fx_rows(N_DB, D_IN, 1), *q = fx_rows(N_Q, D_IN, 2);
    int32_t *truth = malloc((size_t)N_Q * K * sizeof *truth);
    for (int i = 0; i < N_Q; i++)
        brute_topk(q + (size_t)i * D_IN, db, N_DB, D_IN, K, truth + (size_t)i * K);
    hid_t f = H5Fcreate(ann, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put(f, "train", H5T_NATIVE_FLOAT, N_DB, D_IN, db);
    put(f, "test", H5T_NATIVE_FLOAT, N_Q, D_IN, q);
    put(f, "neighbors", H5T_NATIVE_INT32, N_Q, K, truth);
    H5Fclose(f);
    FILE *fi = fopen(ivecs, "wb");
    for (int i = 0; i < N_Q; i++) {
        int32_t k = K;
        fwrite(&k, 4, 1, fi);
        fwrite(truth + (size_t)i * K, 4, K, fi);
    }
    fclose(fi);
    dml_model_file mf;
    fx_model(&mf, &SPEC);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(model, &mf, &err), DML_OK);

    /* what the metric must be: the embeddings' own top-k against the raw vectors' */
    int dim = SPEC.dim;
    float *zd = malloc((size_t)N_DB * dim * sizeof(float)), *zq = malloc((size_t)N_Q * dim * sizeof(float));
    assert_int_equal(dml_model_file_encode(&mf, 0, db, N_DB, zd), DML_OK);
    assert_int_equal(dml_model_file_encode(&mf, 0, q, N_Q, zq), DML_OK);
    const int ks[3] = {1, 10, 100};
    double expected[3] = {0, 0, 0};
    int32_t found[K];
    for (int i = 0; i < N_Q; i++) {
        brute_topk(zq + (size_t)i * dim, zd, N_DB, dim, K, found);
        for (int t = 0; t < 3; t++) {
            int hits = 0;
            for (int a = 0; a < ks[t]; a++)
                for (int b = 0; b < ks[t]; b++)
                    hits += found[a] == truth[(size_t)i * K + b];
            expected[t] += (double)hits / ks[t] / N_Q;
        }
    }
    assert_true(expected[1] > 0.05 && expected[1] < 0.95); /* neither trivial nor perfect */

    const char *keys[3] = {"nn_recall_at_1", "nn_recall_at_10", "nn_recall_at_100"};
    for (int given = 0; given < 2; given++) {
        assert_int_equal(tu_system("%s eval %s --data %s:/test --db %s:/train --pq --json %s%s "
                                   ">%s 2>%s.err",
                                   tu_dml_path(), model, ann, ann, given ? "--truth " : "",
                                   given ? ivecs : "", out, out),
                         0);
        size_t n;
        char *json = fx_slurp(out, &n);
        for (int t = 0; t < 3; t++) {
            assert_float_equal(json_value(json, keys[t]), expected[t], 1e-6);
            char pq_key[64];
            snprintf(pq_key, sizeof pq_key, "pq_%s", keys[t]);
            double pq = json_value(json, pq_key);
            assert_true(pq >= 0.0 && pq <= 1.0);
        }
        free(json);
        char err_path[420];
        snprintf(err_path, sizeof err_path, "%s.err", out);
        char *log = fx_slurp(err_path, &n);
        assert_int_equal(strstr(log, "ground truth from") != NULL, !given);
        free(log);
    }
    /* a truth for other queries: named, exit 2 */
    assert_int_equal(tu_system("%s eval %s --data %s:/train --db %s:/train --truth %s >%s 2>&1",
                               tu_dml_path(), model, ann, ann, ivecs, out),
                     2);
    size_t n;
    char *msg = fx_slurp(out, &n);
    assert_non_null(strstr(msg, "neighbours for 30 queries, but"));
    free(msg);
    free(db);
    free(q);
    free(truth);
    free(zd);
    free(zq);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nn_recall_on_ann_benchmarks_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
