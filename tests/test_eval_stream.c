/* A database searched in chunks (dml eval --stream, eval/stream.c): the numbers of the
 * in-memory search, float and PQ, on labelled and ann-benchmarks data through the CLI (several
 * chunks of DML_STREAM_ALIGN rows); every query's merged top-k against a brute force with
 * exact ties, through dml_eval_run; dml_eval_model_run (a database in memory, read whole,
 * streamed) against dml_eval_run; map_all and a too-wide map_at_r left out and said so; a
 * truncated database file is exit 2 naming it. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "tests/model_fixture.h"

#define N_DB (3 * DML_STREAM_ALIGN + 1500) /* three whole chunks and a short one */
#define N_Q 300
#define D_IN 16

static const fx_spec SPEC = {DML_NET_MLP, D_IN, 0, 1, {24}, 8, DML_ACT_RELU,
                             DML_OUTPUT_NONE, 0, 4, 8, "l2", 31};

static char dir[256];

static void put(hid_t f, const char *name, hid_t type, int rank, hsize_t rows, hsize_t cols,
                const void *data)
{
    hsize_t dims[2] = {rows, cols};
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0 && H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(ds);
    H5Sclose(space);
}

/* Rows in a few coarse values, so that many distances tie exactly. */
static float *coarse_rows(int n, int d, uint64_t seed)
{
    float *x = fx_rows((size_t)n, d, seed);
    for (size_t i = 0; i < (size_t)n * d; i++)
        x[i] = roundf(x[i] * 2.0f);
    return x;
}

static char *run_json(const char *args, const char *name)
{
    char out[400];
    snprintf(out, sizeof out, "%s/%s", dir, name);
    int rc = tu_system("%s eval %s --json >%s 2>%s.err", tu_dml_path(), args, out, out);
    if (rc != 0) {
        size_t n;
        char err_path[420];
        snprintf(err_path, sizeof err_path, "%s.err", out);
        char *log = fx_slurp(err_path, &n);
        fail_msg("dml eval %s: exit %d: %s", args, rc, log);
    }
    size_t n;
    return fx_slurp(out, &n);
}

/* The value text of key in a JSON object line, or NULL. */
static const char *value_of(const char *json, const char *key, char *buf, size_t n)
{
    char pat[128];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *at = strstr(json, pat);
    if (!at)
        return NULL;
    at += strlen(pat);
    size_t len = strcspn(at, ",}");
    snprintf(buf, n, "%.*s", (int)(len < n ? len : n - 1), at);
    return buf;
}

/* Every metric of the in-memory run is in the streamed one with the same printed value
 * (quantization_mse within double rounding: it is summed chunk by chunk), except map_all. */
static void assert_same_metrics(const char *mem, const char *str, int expect_pq)
{
    int compared = 0, pq = 0;
    for (const char *at = strchr(mem, '"'); at; at = strchr(at, '"')) {
        char key[64];
        size_t len = strcspn(at + 1, "\"");
        snprintf(key, sizeof key, "%.*s", (int)len, at + 1);
        at += len + 2;
        if (!strcmp(key, "seconds") || !strcmp(key, "omitted"))
            continue;
        char a[64], b[64];
        assert_non_null(value_of(mem, key, a, sizeof a));
        if (!strcmp(key, "map_all") || !strcmp(key, "pq_map_all")) {
            assert_null(value_of(str, key, b, sizeof b));
            continue;
        }
        if (!value_of(str, key, b, sizeof b))
            fail_msg("%s missing from the streamed run: %s", key, str);
        if (!strcmp(key, "quantization_mse"))
            assert_true(fabs(strtod(a, NULL) - strtod(b, NULL)) <= 1e-6 * fabs(strtod(a, NULL)));
        else if (strcmp(a, b) != 0)
            fail_msg("%s: %s in memory, %s streamed", key, a, b);
        compared++;
        pq += !strncmp(key, "pq_", 3);
    }
    assert_true(compared >= 4);
    assert_true(expect_pq ? pq >= 3 : pq == 0);
}

static void write_model(const char *model, dml_model_file *mf)
{
    dml_error err = {0};
    fx_model(mf, &SPEC);
    assert_int_equal(dml_model_file_write(model, mf, &err), DML_OK);
}

static void test_labelled_stream_equals_memory(void **state)
{
    (void)state;
    char db[400], q[400], wide[400], model[400], args[2000];
    FX_TMP(dir, db, "db.h5");
    snprintf(q, sizeof q, "%s/q.h5", dir);
    snprintf(wide, sizeof wide, "%s/wide.h5", dir);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    dml_model_file mf;
    write_model(model, &mf);
    tu_write_blobs(db, N_DB, D_IN, 300); /* R = 660: map_at_r fits the streamed lists */
    tu_write_blobs(q, N_Q, D_IN, 300);   /* the database's first rows: exact duplicates */
    tu_write_blobs(wide, N_DB, D_IN, 10); /* R = 19811: over DML_STREAM_MAX_R */
    for (int pq = 0; pq < 2; pq++) {
        snprintf(args, sizeof args, "%s --data %s --db %s%s", model, q, db, pq ? " --pq" : "");
        char *mem = run_json(args, "mem.json");
        strcat(args, " --stream --chunk 65536");
        char *str = run_json(args, "str.json");
        assert_non_null(strstr(mem, "\"map_at_r\""));
        assert_non_null(strstr(str, "\"omitted\": \"map_all (it needs the whole ranking)\""));
        assert_same_metrics(mem, str, pq);
        free(mem);
        free(str);
    }
    /* a label with more rows than a query keeps: r_precision and map_at_r left out, said why */
    snprintf(args, sizeof args, "%s --data %s --db %s --stream --chunk 65536", model, q, wide);
    char *str = run_json(args, "wide.json");
    assert_null(strstr(str, "\"map_at_r\""));
    assert_null(strstr(str, "\"r_precision\""));
    assert_non_null(strstr(str, "r_precision and map_at_r (a label has 198"));
    assert_non_null(strstr(str, "\"precision_at_1\""));
    free(str);
    /* asked for by name: refused */
    assert_int_equal(tu_system("%s eval %s --data %s --db %s --stream --metrics map_at_r >/dev/null "
                               "2>&1", tu_dml_path(), model, q, wide),
                     2);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

static void test_ann_benchmarks_stream_equals_memory(void **state)
{
    (void)state;
    enum { K = 100 };
    char ann[400], model[400], args[2000];
    FX_TMP(dir, ann, "ann.hdf5");
    snprintf(model, sizeof model, "%s/model.h5", dir);
    dml_model_file mf;
    write_model(model, &mf);
    float *db = coarse_rows(N_DB, D_IN, 1), *q = coarse_rows(N_Q, D_IN, 2);
    int32_t *truth = malloc((size_t)N_Q * K * sizeof *truth);
    for (size_t i = 0; i < (size_t)N_Q * K; i++) /* any ids: only the equality matters here */
        truth[i] = (int32_t)((i * 7919) % N_DB);
    hid_t f = H5Fcreate(ann, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    put(f, "train", H5T_NATIVE_FLOAT, 2, N_DB, D_IN, db);
    put(f, "test", H5T_NATIVE_FLOAT, 2, N_Q, D_IN, q);
    put(f, "neighbors", H5T_NATIVE_INT32, 2, N_Q, K, truth);
    H5Fclose(f);
    for (int pq = 0; pq < 2; pq++) {
        snprintf(args, sizeof args, "%s --data %s:/test --db %s:/train%s", model, ann, ann,
                 pq ? " --pq" : "");
        char *mem = run_json(args, "mem.json");
        strcat(args, " --stream --chunk 5000"); /* rounded up to 65536 */
        char *str = run_json(args, "str.json");
        assert_non_null(strstr(mem, "\"nn_recall_at_100\""));
        assert_null(strstr(str, "\"omitted\"")); /* no labels: nothing is left out */
        assert_same_metrics(mem, str, pq);
        free(mem);
        free(str);
    }
    /* the chunks are said, with a progress line per 5% */
    size_t n;
    char err_path[420];
    snprintf(err_path, sizeof err_path, "%s/str.json.err", dir);
    char *log = fx_slurp(err_path, &n);
    assert_non_null(strstr(log, "searched in chunks of 65536 rows"));
    assert_non_null(strstr(log, "database rows 198108/198108"));
    free(log);
    free(db);
    free(q);
    free(truth);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* The streamed database of the library test: rows of an array, copied chunk by chunk. */
typedef struct array_src {
    const float *z;
    int d, calls;
} array_src;

static dml_status copy_rows(void *ctx, int lo, int count, float *z, dml_error *err)
{
    (void)err;
    array_src *a = ctx;
    memcpy(z, a->z + (size_t)lo * a->d, (size_t)count * a->d * sizeof *z);
    a->calls++;
    return DML_OK;
}

/* The k nearest of db rows to q by squared L2 in double (exact on these small integers), ties
 * to the lower row. */
static void brute_topk(const float *q, const float *db, int n, int d, int k, int32_t *out)
{
    double *best = malloc((size_t)k * sizeof *best);
    for (int t = 0; t < k; t++)
        best[t] = INFINITY, out[t] = -1;
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int j = 0; j < d; j++)
            s += ((double)q[j] - db[(size_t)i * d + j]) * ((double)q[j] - db[(size_t)i * d + j]);
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

static void test_merge_matches_brute_force(void **state)
{
    (void)state;
    enum { N = 2 * DML_STREAM_ALIGN + 777, Q = 120, D = 6, K = 100, CLASSES = 200 };
    float *db = coarse_rows(N, D, 5), *q = coarse_rows(Q, D, 6);
    int32_t *truth = malloc((size_t)Q * K * sizeof *truth), *y = malloc(N * sizeof *y),
            *qy = malloc(Q * sizeof *qy);
    for (int i = 0; i < Q; i++)
        brute_topk(q + (size_t)i * D, db, N, D, K, truth + (size_t)i * K);
    for (int i = 0; i < N; i++)
        y[i] = i % CLASSES;
    for (int i = 0; i < Q; i++)
        qy[i] = (i * 3) % CLASSES;
    array_src src = {db, D, 0};
    dml_eval_stream stream = {.chunk = 1, .embed = copy_rows, .ctx = &src};
    dml_eval_request mem = {.d = D, .queries = q, .q_labels = qy, .n_queries = Q, .db = db,
                            .db_labels = y, .n_db = N, .truth = truth, .truth_k = K};
    dml_eval_request str = mem;
    str.db = NULL;
    str.stream = &stream;
    dml_eval_result a, b;
    dml_error err = {0};
    assert_int_equal(dml_eval_run(&mem, &a, &err), DML_OK);
    assert_int_equal(dml_eval_run(&str, &b, &err), DML_OK);
    assert_int_equal(src.calls, 3); /* one chunk of DML_STREAM_ALIGN rows per call */
    /* every query's merged top 1, 10 and 100 are the brute force's, ties and all */
    assert_true(dml_eval_get(&b, "nn_recall_at_1") == 1.0);
    assert_true(dml_eval_get(&b, "nn_recall_at_10") == 1.0);
    assert_true(dml_eval_get(&b, "nn_recall_at_100") == 1.0);
    /* and every value the in-memory run also gives is the same double */
    int compared = 0;
    for (int i = 0; i < a.n_values; i++) {
        double v = dml_eval_get(&b, a.values[i].name);
        if (!strcmp(a.values[i].name, "map_all")) {
            assert_true(isnan(v));
            continue;
        }
        if (!(v == a.values[i].value || (isnan(v) && isnan(a.values[i].value))))
            fail_msg("%s: %.17g in memory, %.17g streamed", a.values[i].name, a.values[i].value,
                     v);
        compared++;
    }
    assert_int_equal(compared, a.n_values - 1);
    assert_int_equal(a.skipped_queries, b.skipped_queries);
    /* sharded: refused, the stream is one process's */
    str.shard_size = 2;
    assert_int_equal(dml_eval_run(&str, &b, &err), DML_ERR_USAGE);
    assert_non_null(strstr(err.msg, "one process"));
    free(db);
    free(q);
    free(truth);
    free(y);
    free(qy);
}

static void test_truncated_database(void **state)
{
    (void)state;
    char db[400], q[400], model[400], out[400];
    FX_TMP(dir, db, "db.fvecs");
    snprintf(q, sizeof q, "%s/q.h5", dir);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    dml_model_file mf;
    write_model(model, &mf);
    tu_write_blobs(q, 20, D_IN, 4);
    enum { N = 1000 };
    float *x = fx_rows(N, D_IN, 9);
    FILE *f = fopen(db, "wb");
    assert_non_null(f);
    for (int i = 0; i < N; i++) {
        int32_t d = D_IN;
        fwrite(&d, 4, 1, f);
        fwrite(x + (size_t)i * D_IN, 4, D_IN, f);
    }
    fclose(f);
    /* cut in the middle of a row */
    assert_int_equal(tu_system("truncate -s %ld '%s'", (long)(N / 2) * (4 + 4 * D_IN) + 10, db), 0);
    assert_int_equal(tu_system("%s eval %s --data %s --db %s --stream >%s 2>&1", tu_dml_path(),
                               model, q, db, out),
                     2);
    size_t n;
    char *msg = fx_slurp(out, &n);
    if (!strstr(msg, db))
        fail_msg("the message does not name %s: %s", db, msg);
    free(msg);
    /* an HDF5 database cut short, too */
    snprintf(db, sizeof db, "%s/db.h5", dir);
    tu_write_blobs(db, 20000, D_IN, 4);
    assert_int_equal(tu_system("truncate -s 300000 '%s'", db), 0);
    assert_int_equal(tu_system("%s eval %s --data %s --db %s --stream >%s 2>&1", tu_dml_path(),
                               model, q, db, out),
                     2);
    msg = fx_slurp(out, &n);
    if (!strstr(msg, db))
        fail_msg("the message does not name %s: %s", db, msg);
    free(msg);
    free(x);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* Two results with the same values, map_all and pq_map_all aside when skip_map_all (a streamed
 * one has neither). */
static void assert_same_values(const dml_eval_result *a, const dml_eval_result *b, int skip_map_all)
{
    for (int i = 0; i < a->n_values; i++) {
        double v = dml_eval_get(b, a->values[i].name);
        if (skip_map_all && strstr(a->values[i].name, "map_all"))
            continue;
        if (!(v == a->values[i].value || (isnan(v) && isnan(a->values[i].value))))
            fail_msg("%s: %.17g, then %.17g", a->values[i].name, a->values[i].value, v);
    }
    assert_int_equal(a->scored_queries, b->scored_queries);
}

/* dml_eval_model_run called directly: a database in memory, the same file read whole and
 * streamed all give what dml_eval_run gives on the model's embeddings, and the queries'
 * embeddings come back; a ground truth without a database is refused. */
static void test_model_run_equals_eval_run(void **state)
{
    (void)state;
    char db_path[400], q_path[400];
    FX_TMP(dir, db_path, "db.h5");
    snprintf(q_path, sizeof q_path, "%s/q.h5", dir);
    tu_write_blobs(db_path, 3000, D_IN, 12);
    tu_write_blobs(q_path, 150, D_IN, 12);
    dml_model_file mf;
    fx_model(&mf, &SPEC);
    dml_dataset q, db;
    dml_error err = {0};
    assert_int_equal(dml_dataset_open(q_path, &q, &err), DML_OK);
    assert_int_equal(dml_dataset_open(db_path, &db, &err), DML_OK);
    float *zq, *zd, *got = NULL;
    dml_eval_model em;
    dml_model_file_eval_model(&mf, "model.h5", &em);
    assert_int_equal(dml_eval_model_embed(&em, 0, &q, &zq, &err), DML_OK);
    assert_int_equal(dml_eval_model_embed(&em, 0, &db, &zd, &err), DML_OK);
    dml_eval_request ref = {.d = SPEC.dim, .queries = zq, .q_labels = q.y, .n_queries = q.n,
                            .db = zd, .db_labels = db.y, .n_db = db.n, .pq = &mf.pq,
                            .seed = SPEC.seed};
    dml_eval_result want, mem, whole, str;
    assert_int_equal(dml_eval_run(&ref, &want, &err), DML_OK);

    dml_eval_model model;
    dml_model_file_eval_model(&mf, "model.h5", &model);
    dml_eval_model_request req = {.model = &model, .queries = &q, .db = &db, .pq = 1,
                                  .embeddings = &got};
    assert_int_equal(dml_eval_model_run(&req, &mem, &err), DML_OK);
    assert_non_null(got);
    assert_memory_equal(got, zq, (size_t)q.n * SPEC.dim * sizeof *got);
    assert_same_values(&want, &mem, 0);
    req.db = NULL;
    req.db_spec = db_path;
    req.embeddings = NULL;
    assert_int_equal(dml_eval_model_run(&req, &whole, &err), DML_OK);
    assert_same_values(&want, &whole, 0);
    req.stream = 1;
    assert_int_equal(dml_eval_model_run(&req, &str, &err), DML_OK);
    assert_true(isnan(dml_eval_get(&str, "map_all")));
    assert_same_values(&want, &str, 1);

    dml_eval_model_request lone = {.model = &model, .queries = &q, .truth_spec = "t.ivecs"};
    assert_int_equal(dml_eval_model_run(&lone, &str, &err), DML_ERR_USAGE);
    free(got);
    free(zq);
    free(zd);
    dml_dataset_free(&q);
    dml_dataset_free(&db);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* A dual encoder: the database is the queries' second views (their right halves), streamed:
 * recall_at_k and mrr_at_10 as in memory. */
static void test_paired_stream_equals_memory(void **state)
{
    (void)state;
    static const fx_spec DUAL = {DML_NET_DUAL, 8, 8, 1, {12}, 6, DML_ACT_GELU,
                                 DML_OUTPUT_TANH, 0, 2, 8, "l2", 13};
    char data[400], model[400], args[2000];
    FX_TMP(dir, data, "pairs.h5");
    snprintf(model, sizeof model, "%s/model.h5", dir);
    dml_model_file mf;
    dml_error err = {0};
    fx_model(&mf, &DUAL);
    assert_int_equal(dml_model_file_write(model, &mf, &err), DML_OK);
    tu_write_blobs(data, DML_STREAM_ALIGN + 500, 16, 7); /* two chunks */
    snprintf(args, sizeof args, "%s --data %s --metrics recall_at_k,mrr_at_10", model, data);
    char *mem = run_json(args, "mem.json");
    strcat(args, " --stream --chunk 1");
    char *str = run_json(args, "str.json");
    assert_non_null(strstr(mem, "\"mrr_at_10\""));
    assert_same_metrics(mem, str, 0);
    free(mem);
    free(str);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* Under mpirun the streamed database is refused (it runs on one process), exit 2. */
static void test_mpirun_refused(void **state)
{
    (void)state;
    if (tu_system("command -v mpirun >/dev/null 2>&1") != 0)
        TU_SKIP("no mpirun");
    char db[400], q[400], model[400], out[400];
    FX_TMP(dir, db, "db.h5");
    snprintf(q, sizeof q, "%s/q.h5", dir);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    dml_model_file mf;
    write_model(model, &mf);
    tu_write_blobs(db, 500, D_IN, 4);
    tu_write_blobs(q, 20, D_IN, 4);
    tu_mpi_env();
    char *abs = realpath(tu_dml_path(), NULL);
    assert_non_null(abs);
    assert_int_equal(tu_system("timeout 120 mpirun --oversubscribe --allow-run-as-root -np 2 %s "
                               "eval %s --data %s --db %s --stream >%s 2>&1",
                               abs, model, q, db, out),
                     2);
    size_t n;
    char *msg = fx_slurp(out, &n);
    if (!strstr(msg, "on one process only: run dml eval without mpirun"))
        fail_msg("no refusal: %s", msg);
    free(msg);
    free(abs);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* --memory-limit reads a size as data.memory_limit does: a bare 300 is 300 MB, which this
 * database fits in (searched whole: map_all reported), not 300 bytes (streamed). */
static void test_memory_limit_bare_number_is_mb(void **state)
{
    (void)state;
    char db[400], q[400], model[400], args[2000];
    FX_TMP(dir, db, "db.h5");
    snprintf(q, sizeof q, "%s/q.h5", dir);
    snprintf(model, sizeof model, "%s/model.h5", dir);
    dml_model_file mf;
    write_model(model, &mf);
    tu_write_blobs(db, 2000, D_IN, 10);
    tu_write_blobs(q, 100, D_IN, 10);
    const char *limits[] = {"300", "300MB"};
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "%s --data %s --db %s --memory-limit %s", model, q, db,
                 limits[i]);
        char *out = run_json(args, "limit.json");
        if (!strstr(out, "\"map_all\""))
            fail_msg("--memory-limit %s streamed the database: %s", limits[i], out);
        free(out);
    }
    assert_int_equal(tu_system("%s eval %s --data %s --db %s --memory-limit 12parsecs >%s/out "
                               "2>&1", tu_dml_path(), model, q, db, dir), 2);
    assert_int_equal(tu_system("grep -q 'a bare number is MB' %s/out", dir), 0);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labelled_stream_equals_memory),
        cmocka_unit_test(test_ann_benchmarks_stream_equals_memory),
        cmocka_unit_test(test_merge_matches_brute_force),
        cmocka_unit_test(test_model_run_equals_eval_run),
        cmocka_unit_test(test_paired_stream_equals_memory),
        cmocka_unit_test(test_mpirun_refused),
        cmocka_unit_test(test_memory_limit_bare_number_is_mb),
        cmocka_unit_test(test_truncated_database),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
