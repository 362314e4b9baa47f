/* FAISS index files (byte layout, and FAISS 1.7.3 loading them: ids, codes, search), ONNX
 * exports (the onnx checker and a numpy evaluation of the graph), and the commands that write
 * them: dml encode, dml export, dml info. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>

#include "tests/model_fixture.h"
#include "serve/serve.h"

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
    FX_TMP(dir, path, "flat.index");
    float x[16];
    tu_fill_normal(x, 16, 1.0f, 3);
    dml_error err = {0};
    assert_int_equal(dml_export_faiss_flat(path, x, 2, 8, DML_FAISS_L2, &err), DML_OK);
    size_t n;
    char *b = fx_slurp(path, &n);
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
    b = fx_slurp(path, &n);
    assert_int_equal(n, 45);
    assert_memory_equal(b, "IxFI", 4);
    assert_int_equal(i32_at(b, 33), 0); /* METRIC_INNER_PRODUCT */
    free(b);
    fx_rm(dir);
}

static void test_faiss_pq_layout(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "pq.index");
    dml_pq pq;
    dml_error err = {0};
    assert_int_equal(dml_pq_init(&pq, 8, 2, 4, &err), DML_OK);
    tu_fill_normal(pq.centroids, 8 * 16, 1.0f, 5);
    uint8_t codes[3] = {0x12, 0xab, 0xff};
    assert_int_equal(dml_export_faiss_pq(path, &pq, codes, 3, DML_FAISS_L2, &err), DML_OK);
    size_t n;
    char *b = fx_slurp(path, &n);
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
    fx_rm(dir);
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
    FX_TMP(dir, path, "db.index");
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
    fx_dump(dir, "meta.txt", meta, strlen(meta));
    fx_dump(dir, "db.f32", db, n * (size_t)dim * sizeof(float));
    if (!strcmp(kind, "flat")) {
        assert_int_equal(dml_export_faiss_flat(path, db, n, dim, m, &err), DML_OK);
    } else {
        size_t cs = dml_pq_code_size(&mf.pq);
        uint8_t *codes = malloc(n * cs);
        dml_pq_encode(&mf.pq, db, n, codes);
        assert_int_equal(dml_export_faiss_pq(path, &mf.pq, codes, n, m, &err), DML_OK);
        fx_dump(dir, "codes.u8", codes, n * cs);
        fx_dump(dir, "centroids.f32", mf.pq.centroids,
             (size_t)mf.pq.d * mf.pq.ksub * sizeof(float));
        if (k) {
            float *xq = fx_rows(nq, d_in, 22), *q = malloc(nq * (size_t)dim * sizeof(float));
            float *dist = malloc(nq * (size_t)k * sizeof(float));
            int64_t *labels = malloc(nq * (size_t)k * sizeof(int64_t));
            assert_int_equal(dml_model_file_encode(&mf, 0, xq, nq, q), DML_OK);
            assert_int_equal(dml_pq_search(&mf.pq, codes, n, q, nq, k, dist, labels), DML_OK);
            fx_dump(dir, "queries.f32", q, nq * (size_t)dim * sizeof(float));
            fx_dump(dir, "dist.f32", dist, nq * (size_t)k * sizeof(float));
            fx_dump(dir, "labels.i64", labels, nq * (size_t)k * sizeof(int64_t));
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
    fx_rm(dir);
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
    faiss_check(&FX_DUAL, "pq", "l2", 128); /* 8 bits, the grouped scan's largest k: 300 rows
                                             * in two chunks, 25 queries in groups of 4 */
    faiss_check(&FX_LEAKY, "pq", "l2", 5);  /* 2 bits: a padded byte */
    faiss_check(&FX_LINEAR, "pq", "ip", 0); /* IP search: FAISS only (dml_pq_search is L2) */
}

/* ---- ONNX ---- */
/* scale (may be NULL): the input scale recorded for the exported tower. */
static void onnx_check_scaled(const fx_spec *spec, int tower, const dml_input_scale *scale,
                              const char *expect_meta)
{
    char dir[256], path[300], xp[300], yp[300];
    FX_TMP(dir, path, "model.onnx");
    snprintf(xp, sizeof xp, "%s/x.f32", dir);
    snprintf(yp, sizeof yp, "%s/y.f32", dir);
    dml_model_file mf;
    fx_model(&mf, spec);
    if (scale)
        *(tower ? &mf.scale_b : &mf.scale) = *scale;
    dml_error err = {0};
    assert_int_equal(dml_export_onnx(path, &mf, tower, &err), DML_OK);
    const dml_mlp *m = dml_model_file_tower(&mf, tower);
    size_t n = 33;
    int d_in = dml_mlp_dim_in(m), dim = dml_mlp_dim_out(m);
    float *x = fx_rows(n, d_in, 31), *y = malloc(n * (size_t)dim * sizeof(float));
    x[0] = 40.0f; /* saturates sigmoid/tanh, exercises large gelu inputs */
    assert_int_equal(dml_model_file_encode(&mf, tower, x, n, y), DML_OK);
    fx_dump(dir, "x.f32", x, n * (size_t)d_in * sizeof(float));
    fx_dump(dir, "y.f32", y, n * (size_t)dim * sizeof(float));
    assert_int_equal(tu_python_run("tests/scripts/check_onnx.py %s %s %s %s", path, xp, yp,
                                   expect_meta),
                     0);
    free(x);
    free(y);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

static void onnx_check(const fx_spec *spec, int tower, const char *expect_meta)
{
    onnx_check_scaled(spec, tower, NULL, expect_meta);
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
    /* the input scale the model was trained on, when model.h5 records it */
    dml_input_scale bytes = {"unit", "uint8", 0, 255}, floats = {"none", "float32", -0.5, 1};
    onnx_check_scaled(&FX_MLP, 0, &bytes,
                      "'input_norm=unit (x / 255; expects raw uint8 values 0..255)'");
    onnx_check_scaled(&FX_SIGMOID, 0, &floats,
                      "'input_norm=none (the identity; expects float32 values -0.5..1)'");
}

static void test_onnx_refuses_missing_tower(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "model.onnx");
    dml_model_file mf;
    fx_model(&mf, &FX_MLP);
    dml_error err = {0};
    assert_int_equal(dml_export_onnx(path, &mf, 1, &err), DML_ERR_USAGE);
    assert_non_null(strstr(err.msg, "not a dual encoder"));
    assert_false(dml_file_exists(path));
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* ---- the commands: dml encode, dml export, dml info ---- */
typedef struct cli_fixture {
    char dir[256], model[300], data[300], out[300];
    dml_model_file mf;
    int n;
    float *x;     /* [n, dim_in], the rows of data */
    float *emb;   /* [n, dim], their embeddings */
    int64_t *y;   /* [n] */
} cli_fixture;

static void write_data(const char *path, const float *x, int n, int d, const int64_t *y)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xd[2] = {(hsize_t)n, (hsize_t)d}, yd[1] = {(hsize_t)n};
    hid_t s = H5Screate_simple(2, xd, NULL);
    hid_t ds = H5Dcreate2(f, "X", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(ds);
    H5Sclose(s);
    s = H5Screate_simple(1, yd, NULL);
    ds = H5Dcreate2(f, "y", H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
    H5Dclose(ds);
    H5Sclose(s);
    H5Fclose(f);
}

static void cli_setup(cli_fixture *c, const fx_spec *spec)
{
    tu_mkdtemp(c->dir, sizeof c->dir);
    snprintf(c->model, sizeof c->model, "%s/model.h5", c->dir);
    snprintf(c->data, sizeof c->data, "%s/data.h5", c->dir);
    snprintf(c->out, sizeof c->out, "%s/out", c->dir);
    fx_model(&c->mf, spec);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(c->model, &c->mf, &err), DML_OK);
    c->n = 120;
    c->x = fx_rows((size_t)c->n, spec->dim_in, 51);
    c->emb = malloc((size_t)c->n * spec->dim * sizeof(float));
    c->y = malloc((size_t)c->n * sizeof(int64_t));
    for (int i = 0; i < c->n; i++)
        c->y[i] = i % 7;
    write_data(c->data, c->x, c->n, spec->dim_in, c->y);
    assert_int_equal(dml_model_file_encode(&c->mf, 0, c->x, (size_t)c->n, c->emb), DML_OK);
}

static void cli_teardown(cli_fixture *c)
{
    free(c->x);
    free(c->emb);
    free(c->y);
    dml_model_file_free(&c->mf);
    fx_rm(c->dir);
}

/* Runs "dml ARGS" with stdout and stderr into DIR/out; returns the exit status. */
static int dml_run(const cli_fixture *c, const char *args)
{
    return tu_system("%s %s >'%s' 2>&1", tu_dml_path(), args, c->out);
}

/* 1 when the output of the last dml_run contains s. */
static int out_has(const cli_fixture *c, const char *s)
{
    size_t n;
    char *b = fx_slurp(c->out, &n);
    int found = strstr(b, s) != NULL;
    if (!found)
        print_message("dml printed:\n%s\n(expected \"%s\")\n", b, s);
    free(b);
    return found;
}

static void read_h5(const char *path, const char *name, hid_t mem_type, void *buf, hsize_t *dims)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t s = H5Dget_space(d);
    H5Sget_simple_extent_dims(s, dims, NULL);
    assert_true(H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Sclose(s);
    H5Dclose(d);
    H5Fclose(f);
}

/* Each code picks, per sub-vector of x, a nearest centroid (to float rounding: the dml process
 * that wrote the codes may have used other BLAS kernels than this one, under valgrind say). */
static void assert_nearest_codes(const dml_pq *pq, const float *x, size_t n, const uint8_t *codes)
{
    int32_t *idx = malloc(n * (size_t)pq->m * sizeof(int32_t));
    dml_pq_unpack(pq, codes, n, idx);
    for (size_t i = 0; i < n; i++)
        for (int m = 0; m < pq->m; m++) {
            const float *v = x + i * (size_t)pq->d + (size_t)m * pq->dsub;
            double best = INFINITY, chosen = 0.0;
            for (int k = 0; k < pq->ksub; k++) {
                const float *c = pq->centroids + ((size_t)m * pq->ksub + k) * pq->dsub;
                double d2 = 0.0;
                for (int j = 0; j < pq->dsub; j++)
                    d2 += ((double)v[j] - c[j]) * ((double)v[j] - c[j]);
                best = d2 < best ? d2 : best;
                if (k == idx[i * (size_t)pq->m + m])
                    chosen = d2;
            }
            if (chosen > best + 1e-5)
                fail_msg("row %zu, sub-quantizer %d: code %d at %g, the nearest is at %g", i, m,
                         idx[i * (size_t)pq->m + m], chosen, best);
        }
    free(idx);
}

/* dml encode --pq into DIR/emb.h5; x[n, 8] and codes[n, code_size] read back. */
static void cli_encode_pq(cli_fixture *c, float *x, uint8_t *codes)
{
    char args[1200], emb_path[320];
    snprintf(emb_path, sizeof emb_path, "%s/emb.h5", c->dir);
    snprintf(args, sizeof args, "encode '%s' '%s' '%s' --pq", c->model, c->data, emb_path);
    assert_int_equal(dml_run(c, args), 0);
    assert_true(out_has(c, "120 rows -> 8-dim embeddings and PQ codes"));
    hsize_t dims[2];
    read_h5(emb_path, "X", H5T_NATIVE_FLOAT, x, dims);
    assert_true(dims[0] == (hsize_t)c->n && dims[1] == 8);
    read_h5(emb_path, "codes", H5T_NATIVE_UINT8, codes, dims);
    assert_true(dims[0] == (hsize_t)c->n && dims[1] == dml_pq_code_size(&c->mf.pq));
}

static void test_cli_encode(void **state)
{
    (void)state;
    cli_fixture c;
    cli_setup(&c, &FX_MLP);
    size_t n = (size_t)c.n, cs = dml_pq_code_size(&c.mf.pq);
    float *x = malloc(n * 8 * sizeof(float));
    uint8_t *codes = malloc(n * cs);
    int64_t *y = malloc(n * sizeof(int64_t));
    cli_encode_pq(&c, x, codes);
    for (size_t i = 0; i < n * 8; i++)
        if (fabsf(x[i] - c.emb[i]) > 1e-5f)
            fail_msg("embedding value %zu: dml encode wrote %g, the library gives %g", i, x[i],
                     c.emb[i]);
    assert_nearest_codes(&c.mf.pq, x, n, codes);
    char args[1200], emb_path[320];
    snprintf(emb_path, sizeof emb_path, "%s/emb.h5", c.dir);
    hsize_t dims[2];
    read_h5(emb_path, "y", H5T_NATIVE_INT64, y, dims);
    assert_memory_equal(y, c.y, n * sizeof(int64_t));
    /* the output is a data SPEC dml reads back */
    dml_dataset ds;
    dml_error err = {0};
    assert_int_equal(dml_dataset_open(emb_path, &ds, &err), DML_OK);
    assert_int_equal(ds.n, c.n);
    assert_int_equal(ds.d, 8);
    assert_non_null(ds.y);
    dml_dataset_free(&ds);

    /* without --pq: no codes */
    snprintf(args, sizeof args, "encode '%s' '%s' '%s'", c.model, c.data, emb_path);
    assert_int_equal(dml_run(&c, args), 0);
    hid_t f = H5Fopen(emb_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_int_equal(H5Lexists(f, "codes", H5P_DEFAULT), 0);
    assert_true(H5Lexists(f, "X", H5P_DEFAULT) > 0);
    H5Fclose(f);
    free(x);
    free(codes);
    free(y);
    cli_teardown(&c);
}

static void assert_same_file(const char *a_path, const char *b_path)
{
    size_t na, nb;
    char *a = fx_slurp(a_path, &na), *b = fx_slurp(b_path, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
}

/* dml export writes the bytes the library writers write from dml encode's embeddings and codes
 * (both dml processes: the same arithmetic). */
static void test_cli_export(void **state)
{
    (void)state;
    cli_fixture c;
    cli_setup(&c, &FX_MLP);
    char args[1200], got[320], want[320];
    snprintf(got, sizeof got, "%s/cli.index", c.dir);
    snprintf(want, sizeof want, "%s/lib.index", c.dir);
    size_t n = (size_t)c.n, cs = dml_pq_code_size(&c.mf.pq);
    float *x = malloc(n * 8 * sizeof(float));
    uint8_t *codes = malloc(n * cs);
    cli_encode_pq(&c, x, codes);
    dml_error err = {0};

    /* default: IndexPQ with the model's metric (inner_product) */
    snprintf(args, sizeof args, "export '%s' --faiss '%s' --db '%s'", c.model, got, c.data);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "FAISS IndexPQ, 120 vectors, metric inner product"));
    assert_int_equal(dml_export_faiss_pq(want, &c.mf.pq, codes, n, DML_FAISS_IP, &err), DML_OK);
    assert_same_file(got, want);

    snprintf(args, sizeof args, "export '%s' --faiss '%s' --db '%s' --flat --metric l2", c.model,
             got, c.data);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "IndexFlatL2"));
    assert_int_equal(dml_export_faiss_flat(want, x, n, 8, DML_FAISS_L2, &err), DML_OK);
    assert_same_file(got, want);

    /* ONNX holds weights only: the library's bytes exactly */
    snprintf(got, sizeof got, "%s/cli.onnx", c.dir);
    snprintf(want, sizeof want, "%s/lib.onnx", c.dir);
    snprintf(args, sizeof args, "export '%s' --onnx '%s'", c.model, got);
    assert_int_equal(dml_run(&c, args), 0);
    assert_int_equal(dml_export_onnx(want, &c.mf, 0, &err), DML_OK);
    assert_same_file(got, want);
    free(x);
    free(codes);
    cli_teardown(&c);
}

static void test_cli_info(void **state)
{
    (void)state;
    cli_fixture c;
    cli_setup(&c, &FX_MLP);
    char args[400];
    snprintf(args, sizeof args, "info '%s' --config", c.model);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "mlp model (format dml-model 2), metric inner_product"));
    assert_true(out_has(&c, "encoder: 12 -> 16 -> 10 -> 8 (466 parameters)"));
    assert_true(out_has(&c, "input_norm   standardize"));
    assert_true(out_has(&c, "layer_001    linear 16 -> 10, relu"));
    assert_true(out_has(&c, "layer_002    linear 10 -> 8, none"));
    assert_true(out_has(&c, "output_norm  l2"));
    assert_true(out_has(&c, "pq: M = 4 sub-quantizers x K = 16 centroids (4 bits each), d = 8"));
    assert_true(out_has(&c, "training: seed 11, 1234 steps"));
    assert_true(out_has(&c, "final metrics: {\"map_at_r\": 0.5"));
    assert_true(out_has(&c, "config:\nname: fixture\n"));
    cli_teardown(&c);

    cli_setup(&c, &FX_DUAL);
    snprintf(args, sizeof args, "info '%s'", c.model);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "dual model"));
    assert_true(out_has(&c, "encoder_b: 6 -> 12 -> 6"));
    assert_true(out_has(&c, "layer_000    linear 9 -> 12, gelu"));
    assert_true(out_has(&c, "output_norm  tanh"));
    cli_teardown(&c);
}

/* A model that records bytes 0..255 as its training input: dml info says so, and dml eval and
 * dml encode warn when given the fixture's float rows (|x| a few units); rows of its own scale
 * draw no warning. */
static void test_cli_input_scale(void **state)
{
    (void)state;
    cli_fixture c;
    cli_setup(&c, &FX_MLP);
    dml_error err = {0};
    c.mf.scale = (dml_input_scale){"unit", "uint8", 0, 255};
    assert_int_equal(dml_model_file_write(c.model, &c.mf, &err), DML_OK);
    char args[1400], warning[700];
    snprintf(args, sizeof args, "info '%s'", c.model);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "  input_norm   unit (x / 255; expects raw uint8 values 0..255)\n"));
    snprintf(warning, sizeof warning, "warning: %s holds float32 values in [", c.data);
    snprintf(args, sizeof args, "eval '%s' --data '%s'", c.model, c.data);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "dml eval: warning: "));
    assert_true(out_has(&c, warning));
    snprintf(warning, sizeof warning, "but the training rows (recorded in %s) held uint8 values "
             "in [0, 255]", c.model);
    assert_true(out_has(&c, warning));
    snprintf(args, sizeof args, "encode '%s' '%s' '%s/emb.h5'", c.model, c.data, c.dir);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "dml encode: warning: "));
    /* recorded as the fixture's own floats: nothing to say */
    c.mf.scale = (dml_input_scale){"none", "float32", -3, 3};
    assert_int_equal(dml_model_file_write(c.model, &c.mf, &err), DML_OK);
    snprintf(args, sizeof args, "eval '%s' --data '%s'", c.model, c.data);
    assert_int_equal(dml_run(&c, args), 0);
    assert_false(out_has(&c, "warning"));
    cli_teardown(&c);
}

/* DIR/name.h5: n random rows of the model's width, labelled label[i % n_labels]. */
static void write_labelled(const cli_fixture *c, const char *name, char *path, size_t size, int n,
                           const int64_t *label, int n_labels)
{
    snprintf(path, size, "%s/%s.h5", c->dir, name);
    float *x = fx_rows((size_t)n, dml_mlp_dim_in(&c->mf.net.encoder), 77);
    int64_t *y = malloc((size_t)n * sizeof *y);
    for (int i = 0; i < n; i++)
        y[i] = label[i % n_labels];
    write_data(path, x, n, dml_mlp_dim_in(&c->mf.net.encoder), y);
    free(x);
    free(y);
}

/* dml eval says how many queries the label metrics scored, and refuses label metrics over no
 * query, or over references of one label (1.0 whatever the model). The data's 120 rows have
 * labels i % 7. */
static void test_cli_eval_scored(void **state)
{
    (void)state;
    cli_fixture c;
    cli_setup(&c, &FX_MLP);
    char args[1400], db[320];
    snprintf(args, sizeof args, "eval '%s' --data '%s'", c.model, c.data);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "scored 120 of 120 queries (0 skipped: no other row of their class)"));
    /* labels 0 and 1 in the database: the 35 queries of those labels are scored */
    const int64_t two[2] = {0, 1};
    write_labelled(&c, "two", db, sizeof db, 10, two, 2);
    snprintf(args, sizeof args, "eval '%s' --data '%s' --db '%s'", c.model, c.data, db);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "scored 35 of 120 queries (85 skipped: no database row of their "
                            "class)"));
    snprintf(args, sizeof args, "eval '%s' --data '%s' --db '%s' --json", c.model, c.data, db);
    assert_int_equal(dml_run(&c, args), 0);
    assert_true(out_has(&c, "\"scored_queries\": 35, \"skipped_queries\": 85"));
    /* one label in the database, of one row or many: refused */
    const int64_t three[1] = {3};
    for (int n = 1; n <= 40; n += 39) {
        write_labelled(&c, "one", db, sizeof db, n, three, 1);
        snprintf(args, sizeof args, "eval '%s' --data '%s' --db '%s'", c.model, c.data, db);
        assert_int_equal(dml_run(&c, args), 2);
        assert_true(out_has(&c, "one.h5: every database row has the same label, so every label "
                                "metric (map_at_r, knn_accuracy, ...) would be 1.0 whatever the "
                                "model"));
    }
    /* labels no query has: nothing scored */
    const int64_t other[2] = {100, 101};
    write_labelled(&c, "other", db, sizeof db, 10, other, 2);
    snprintf(args, sizeof args, "eval '%s' --data '%s' --db '%s' --json", c.model, c.data, db);
    assert_int_equal(dml_run(&c, args), 2);
    assert_true(out_has(&c, "data.h5: none of the 120 queries has a label found in the database"));
    /* every row its own label: nothing scored among themselves */
    int64_t own[30];
    for (int i = 0; i < 30; i++)
        own[i] = i;
    write_labelled(&c, "own", db, sizeof db, 30, own, 30);
    snprintf(args, sizeof args, "eval '%s' --data '%s'", c.model, db);
    assert_int_equal(dml_run(&c, args), 2);
    assert_true(out_has(&c, "own.h5: no row shares its label with another (30 rows, 30 labels)"));
    /* metrics without labels are not refused */
    snprintf(args, sizeof args, "eval '%s' --data '%s' --metrics nmi", c.model, db);
    assert_int_equal(dml_run(&c, args), 0);
    cli_teardown(&c);
}

/* Bad usage and bad files: exit status 2, a message naming the problem, no output file. */
static void test_cli_errors(void **state)
{
    (void)state;
    cli_fixture c;
    cli_setup(&c, &FX_LEAKY);
    char args[1200], target[320], bad_data[320];
    snprintf(target, sizeof target, "%s/never", c.dir);
    snprintf(bad_data, sizeof bad_data, "%s/wide.h5", c.dir);
    float *wide = fx_rows(4, 7, 1);
    write_data(bad_data, wide, 4, 7, c.y);
    free(wide);
    const struct {
        const char *fmt; /* %1$s model, %2$s data, %3$s target, %4$s dir, %5$s wide data */
        const char *expect;
    } cases[] = {
        {"encode", "expected MODEL.h5 INPUT OUTPUT.h5"},
        {"encode '%1$s' '%2$s' '%3$s' --bogus", "unexpected argument '--bogus'"},
        {"encode '%1$s' '%2$s' '%3$s' --tower c", "--tower takes a or b"},
        {"encode '%4$s/none.h5' '%2$s' '%3$s'", "none.h5: no such file"},
        {"encode '%1$s' '%4$s/none.h5' '%3$s'", "none.h5: no such file"},
        {"encode '%1$s' '%5$s' '%3$s'", "wide.h5: rows have 7 features, but the model's encoder takes 5"},
        {"encode '%1$s' '%2$s' '%3$s' --tower b", "--tower b needs a dual encoder; this model is mlp"},
        {"encode '%2$s' '%2$s' '%3$s'", "not a dml model file"},
        {"export '%1$s'", "nothing to export"},
        {"export '%1$s' --faiss '%3$s'", "--faiss needs the database to index: --db SPEC"},
        {"export '%1$s' --faiss '%3$s' --db '%2$s' --pq --flat", "--pq or --flat, not both"},
        {"export '%1$s' --faiss '%3$s' --db '%2$s' --metric cosine", "--metric 'cosine': expected l2 or ip"},
        {"export '%1$s' --onnx '%3$s' --db '%2$s'", "--db, --pq, --flat and --metric go with --faiss"},
        {"export '%1$s' --onnx", "--onnx needs a value"},
        {"export '%1$s' --faiss '%3$s' --db '%5$s'", "rows have 7 features"},
        {"export '%4$s/none.h5' --onnx '%3$s'", "none.h5: no such file"},
        {"export '%1$s' --onnx '%3$s' --tower b", "--tower b needs a dual encoder"},
        {"info", "which model?"},
        {"info '%1$s' extra", "unexpected argument 'extra'"},
        {"info '%2$s'", "data.h5: not a dml model file"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[1000];
        snprintf(cmd, sizeof cmd, cases[i].fmt, c.model, c.data, target, c.dir, bad_data);
        snprintf(args, sizeof args, "%s", cmd);
        int rc = dml_run(&c, args);
        if (rc != 2 || !out_has(&c, cases[i].expect))
            fail_msg("dml %s: exit %d, expected 2 and \"%s\"", cmd, rc, cases[i].expect);
        assert_false(dml_file_exists(target));
    }
    /* --pq on a model without codebooks */
    cli_teardown(&c);
    cli_setup(&c, &FX_SIGMOID);
    snprintf(target, sizeof target, "%s/never", c.dir);
    snprintf(args, sizeof args, "encode '%s' '%s' '%s' --pq", c.model, c.data, target);
    assert_int_equal(dml_run(&c, args), 2);
    assert_true(out_has(&c, "the model has no PQ codebooks (/pq): drop --pq"));
    snprintf(args, sizeof args, "export '%s' --faiss '%s' --db '%s' --pq", c.model, target, c.data);
    assert_int_equal(dml_run(&c, args), 2);
    assert_true(out_has(&c, "export --flat instead"));
    assert_false(dml_file_exists(target));
    const char *cmds[] = {"encode", "export", "info"};
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        assert_int_equal(dml_run(&c, args), 0);
        assert_true(out_has(&c, "usage: dml "));
    }
    cli_teardown(&c);
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
        cmocka_unit_test(test_cli_eval_scored),
        cmocka_unit_test(test_cli_input_scale),
        cmocka_unit_test(test_onnx_refuses_missing_tower),
        cmocka_unit_test(test_cli_encode),
        cmocka_unit_test(test_cli_export),
        cmocka_unit_test(test_cli_info),
        cmocka_unit_test(test_cli_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
