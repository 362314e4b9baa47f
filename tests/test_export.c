/* FAISS index files (byte layout, and FAISS 1.7.3 loading them: ids, codes, search) and ONNX
 * exports (the onnx checker and a numpy evaluation of the graph). */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/model_fixture.h"
#include "train/export.h"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(*n ? *n : 1);
    assert_int_equal(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

static void dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, bytes, f), bytes);
    fclose(f);
}

static void rm_dir(const char *dir)
{
    assert_int_equal(tu_system("rm -rf '%s'", dir), 0);
}

static int64_t i64_at(const char *b, size_t off)
{
    int64_t v;
    memcpy(&v, b + off, sizeof v);
    return v;
}

static int32_t i32_at(const char *b, size_t off)
{
    int32_t v;
    memcpy(&v, b + off, sizeof v);
    return v;
}

/* The sizes formats.md §1.3 measured with FAISS itself, and the header fields. */
static void test_faiss_flat_layout(void **state)
{
    (void)state;
    char dir[256], path[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/flat.index", dir);
    float x[16];
    tu_fill_normal(x, 16, 1.0f, 3);
    dml_error err = {0};
    assert_int_equal(dml_export_faiss_flat(path, x, 2, 8, DML_FAISS_L2, &err), DML_OK);
    size_t n;
    char *b = slurp(path, &n);
    assert_int_equal(n, 109);
    assert_memory_equal(b, "IxF2", 4);
    assert_int_equal(i32_at(b, 4), 8);            /* d */
    assert_int_equal(i64_at(b, 8), 2);            /* ntotal */
    assert_int_equal(i64_at(b, 16), 1 << 20);     /* dummy */
    assert_int_equal(b[32], 1);                   /* is_trained */
    assert_int_equal(i32_at(b, 33), 1);           /* METRIC_L2 */
    assert_int_equal(i64_at(b, 37), 16);          /* floats that follow */
    assert_memory_equal(b + 45, x, sizeof x);
    free(b);
    assert_int_equal(dml_export_faiss_flat(path, x, 0, 8, DML_FAISS_IP, &err), DML_OK);
    b = slurp(path, &n);
    assert_int_equal(n, 45);
    assert_memory_equal(b, "IxFI", 4);
    assert_int_equal(i32_at(b, 33), 0); /* METRIC_INNER_PRODUCT */
    free(b);
    rm_dir(dir);
}

static void test_faiss_pq_layout(void **state)
{
    (void)state;
    char dir[256], path[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/pq.index", dir);
    dml_pq pq;
    dml_error err = {0};
    assert_int_equal(dml_pq_init(&pq, 8, 2, 4, &err), DML_OK);
    tu_fill_normal(pq.centroids, 8 * 16, 1.0f, 5);
    uint8_t codes[3] = {0x12, 0xab, 0xff};
    assert_int_equal(dml_export_faiss_pq(path, &pq, codes, 3, DML_FAISS_L2, &err), DML_OK);
    size_t n;
    char *b = slurp(path, &n);
    assert_int_equal(n, 601);
    assert_memory_equal(b, "IxPq", 4);
    assert_int_equal(i64_at(b, 37), 8);       /* pq d */
    assert_int_equal(i64_at(b, 45), 2);       /* M */
    assert_int_equal(i64_at(b, 53), 4);       /* nbits */
    assert_int_equal(i64_at(b, 61), 8 * 16);  /* centroid floats */
    assert_memory_equal(b + 69, pq.centroids, 8 * 16 * sizeof(float));
    assert_int_equal(i64_at(b, 581), 3);      /* code bytes */
    assert_memory_equal(b + 589, codes, 3);
    assert_int_equal(i32_at(b, 592), 0);      /* ST_PQ */
    assert_int_equal(b[596], 0);              /* encode_signs */
    assert_int_equal(i32_at(b, 597), 9);      /* polysemous_ht = M * nbits + 1 */
    free(b);
    dml_pq_free(&pq);
    rm_dir(dir);
}

/* A failed write leaves no file and names the path. */
static void test_faiss_write_failure(void **state)
{
    (void)state;
    float x[8] = {0};
    dml_error err = {0};
    const char *path = "/nonexistent-dml-dir/flat.index";
    assert_int_equal(dml_export_faiss_flat(path, x, 1, 8, DML_FAISS_L2, &err), DML_ERR_IO);
    assert_string_equal(err.file, path);
    assert_non_null(strstr(err.msg, "cannot write the index"));
    dml_faiss_metric m;
    assert_true(dml_faiss_metric_parse("ip", &m) && m == DML_FAISS_IP);
    assert_true(dml_faiss_metric_parse("inner_product", &m) && m == DML_FAISS_IP);
    assert_true(dml_faiss_metric_parse("l2", &m) && m == DML_FAISS_L2);
    assert_false(dml_faiss_metric_parse("cosine", &m));
}

/* Encodes a database with the model (and its PQ), writes the index and what check_faiss.py
 * compares it with, and runs the check. k > 0 also compares FAISS's search with dml_pq_search. */
static void faiss_check(const fx_spec *spec, const char *kind, const char *metric, int k)
{
    char dir[256], path[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/db.index", dir);
    dml_model_file mf;
    fx_model(&mf, spec);
    size_t n = 300, nq = 25;
    int d_in = spec->dim_in, dim = spec->dim;
    float *x = fx_rows(n, d_in, 21), *db = malloc(n * (size_t)dim * sizeof(float));
    assert_int_equal(dml_model_file_encode(&mf, 0, x, n, db), DML_OK);
    dml_faiss_metric m;
    assert_true(dml_faiss_metric_parse(metric, &m));
    dml_error err = {0};
    char meta[64];
    snprintf(meta, sizeof meta, "%s %d %zu %s %d", kind, dim, n, metric, k);
    dump(dir, "meta.txt", meta, strlen(meta));
    dump(dir, "db.f32", db, n * (size_t)dim * sizeof(float));
    if (!strcmp(kind, "flat")) {
        assert_int_equal(dml_export_faiss_flat(path, db, n, dim, m, &err), DML_OK);
    } else {
        size_t cs = dml_pq_code_size(&mf.pq);
        uint8_t *codes = malloc(n * cs);
        dml_pq_encode(&mf.pq, db, n, codes);
        assert_int_equal(dml_export_faiss_pq(path, &mf.pq, codes, n, m, &err), DML_OK);
        dump(dir, "codes.u8", codes, n * cs);
        dump(dir, "centroids.f32", mf.pq.centroids,
             (size_t)mf.pq.d * mf.pq.ksub * sizeof(float));
        if (k) {
            float *xq = fx_rows(nq, d_in, 22), *q = malloc(nq * (size_t)dim * sizeof(float));
            float *dist = malloc(nq * (size_t)k * sizeof(float));
            int64_t *labels = malloc(nq * (size_t)k * sizeof(int64_t));
            assert_int_equal(dml_model_file_encode(&mf, 0, xq, nq, q), DML_OK);
            assert_int_equal(dml_pq_search(&mf.pq, codes, n, q, nq, k, dist, labels), DML_OK);
            dump(dir, "queries.f32", q, nq * (size_t)dim * sizeof(float));
            dump(dir, "dist.f32", dist, nq * (size_t)k * sizeof(float));
            dump(dir, "labels.i64", labels, nq * (size_t)k * sizeof(int64_t));
            free(xq);
            free(q);
            free(dist);
            free(labels);
        }
        free(codes);
    }
    assert_int_equal(tu_python_run("tests/scripts/check_faiss.py %s %s", path, dir), 0);
    free(x);
    free(db);
    dml_model_file_free(&mf);
    rm_dir(dir);
}

static void test_faiss_loads_flat(void **state)
{
    (void)state;
    if (!tu_python_has("faiss,numpy"))
        TU_SKIP("needs /usr/bin/python3 with faiss and numpy");
    faiss_check(&FX_MLP, "flat", "l2", 0);
    faiss_check(&FX_MLP, "flat", "ip", 0);
}

static void test_faiss_loads_pq(void **state)
{
    (void)state;
    if (!tu_python_has("faiss,numpy"))
        TU_SKIP("needs /usr/bin/python3 with faiss and numpy");
    faiss_check(&FX_MLP, "pq", "l2", 10);   /* 4 bits: two codes a byte */
    faiss_check(&FX_DUAL, "pq", "l2", 10);  /* 8 bits */
    faiss_check(&FX_LEAKY, "pq", "l2", 5);  /* 2 bits: a padded byte */
    faiss_check(&FX_LINEAR, "pq", "ip", 0); /* IP search: FAISS only (dml_pq_search is L2) */
}

/* ---- ONNX ---- */
static void onnx_check(const fx_spec *spec, int tower, const char *expect_meta)
{
    char dir[256], path[300], xp[300], yp[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    snprintf(xp, sizeof xp, "%s/x.f32", dir);
    snprintf(yp, sizeof yp, "%s/y.f32", dir);
    dml_model_file mf;
    fx_model(&mf, spec);
    dml_error err = {0};
    assert_int_equal(dml_export_onnx(path, &mf, tower, &err), DML_OK);
    const dml_mlp *m = dml_model_file_tower(&mf, tower);
    size_t n = 33;
    int d_in = dml_mlp_dim_in(m), dim = dml_mlp_dim_out(m);
    float *x = fx_rows(n, d_in, 31), *y = malloc(n * (size_t)dim * sizeof(float));
    x[0] = 40.0f; /* saturates sigmoid/tanh, exercises large gelu inputs */
    assert_int_equal(dml_model_file_encode(&mf, tower, x, n, y), DML_OK);
    dump(dir, "x.f32", x, n * (size_t)d_in * sizeof(float));
    dump(dir, "y.f32", y, n * (size_t)dim * sizeof(float));
    assert_int_equal(tu_python_run("tests/scripts/check_onnx.py %s %s %s %s", path, xp, yp,
                                   expect_meta),
                     0);
    free(x);
    free(y);
    dml_model_file_free(&mf);
    rm_dir(dir);
}

static void test_onnx_export(void **state)
{
    (void)state;
    if (!tu_python_has("onnx,numpy"))
        TU_SKIP("needs /usr/bin/python3 with onnx and numpy");
    onnx_check(&FX_MLP, 0,
               "metric=inner_product model_type=mlp input_norm=standardize output_norm=l2 "
               "pq_d=8 pq_M=4 pq_nbits=4 pq_ksub=16 pq_dsub=2 pq_code_size=2");
    onnx_check(&FX_DUAL, 0, "tower=encoder model_type=dual output_norm=tanh pq_nbits=8");
    onnx_check(&FX_DUAL, 1, "tower=encoder_b input_norm=standardize");
    onnx_check(&FX_LEAKY, 0, "output_norm=none pq_M=3 pq_nbits=2 pq_code_size=1");
    onnx_check(&FX_SIGMOID, 0, "metric=l2 input_norm=none");
    onnx_check(&FX_LINEAR, 0, "output_norm=l2");
    onnx_check(&FX_AUTOENC, 0, "model_type=autoencoder");
}

static void test_onnx_refuses_missing_tower(void **state)
{
    (void)state;
    dml_model_file mf;
    fx_model(&mf, &FX_MLP);
    dml_error err = {0};
    struct stat st;
    assert_int_equal(dml_export_onnx("/tmp/dml-never.onnx", &mf, 1, &err), DML_ERR_USAGE);
    assert_non_null(strstr(err.msg, "not a dual encoder"));
    assert_int_not_equal(stat("/tmp/dml-never.onnx", &st), 0);
    dml_model_file_free(&mf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faiss_flat_layout),
        cmocka_unit_test(test_faiss_pq_layout),
        cmocka_unit_test(test_faiss_write_failure),
        cmocka_unit_test(test_faiss_loads_flat),
        cmocka_unit_test(test_faiss_loads_pq),
        cmocka_unit_test(test_onnx_export),
        cmocka_unit_test(test_onnx_refuses_missing_tower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
