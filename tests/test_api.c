/* The public API (include/dml.h): open errors, encode equal to nn's forward pass, concurrent
 * encodes, and the installed library building and running examples/encode_example.c and
 * examples/train_example.c. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>

#include "tests/model_fixture.h"

typedef struct fixture {
    char dir[256], path[300];
    dml_model_file mf; /* what was written */
    dml_model *model;  /* what the API read back */
} fixture;

static void open_fixture(fixture *fx, const fx_spec *spec)
{
    tu_mkdtemp(fx->dir, sizeof fx->dir);
    snprintf(fx->path, sizeof fx->path, "%s/model.h5", fx->dir);
    fx_model(&fx->mf, spec);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(fx->path, &fx->mf, &err), DML_OK);
    char msg[256] = "unchanged";
    assert_int_equal(dml_model_open(fx->path, &fx->model, msg, sizeof msg), DML_OK);
    assert_string_equal(msg, "");
}

static void close_fixture(fixture *fx)
{
    dml_model_free(fx->model);
    dml_model_file_free(&fx->mf);
    assert_int_equal(tu_system("rm -rf '%s'", fx->dir), 0);
}

/* nn's own forward pass over all n rows at once: standardise, dml_mlp_forward. */
static void reference_forward(const dml_mlp *m, const dml_input_norm *norm, const float *x,
                              int n, float *out)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 20);
    dml_tensor *in = dml_leaf_copy(&g, x, n, dml_mlp_dim_in(m), 0);
    dml_input_norm_apply(norm, in->data, (size_t)n);
    dml_tensor *y = dml_mlp_forward(&g, m, in);
    assert_non_null(y);
    memcpy(out, y->data, (size_t)n * dml_mlp_dim_out(m) * sizeof(float));
    dml_graph_free(&g);
}

static void test_encode_matches_mlp_forward(void **state)
{
    (void)state;
    const fx_spec *specs[] = {&FX_MLP, &FX_DUAL, &FX_LEAKY, &FX_SIGMOID, &FX_AUTOENC};
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        fixture fx;
        open_fixture(&fx, specs[s]);
        const dml_mlp *m = &fx.mf.net.encoder;
        assert_int_equal(dml_model_dim_in(fx.model), dml_mlp_dim_in(m));
        assert_int_equal(dml_model_dim_out(fx.model), dml_mlp_dim_out(m));
        /* One block (bit-identical to the same GEMMs) and several blocks of rows. */
        int sizes[2] = {100, 700};
        for (int t = 0; t < 2; t++) {
            int n = sizes[t], dim = dml_mlp_dim_out(m);
            float *x = fx_rows((size_t)n, dml_mlp_dim_in(m), 40 + (uint64_t)t);
            float *got = malloc((size_t)n * dim * sizeof(float));
            float *want = malloc((size_t)n * dim * sizeof(float));
            assert_int_equal(dml_model_encode(fx.model, x, (size_t)n, got), DML_OK);
            reference_forward(m, &fx.mf.norm, x, n, want);
            if (n <= 256)
                assert_memory_equal(got, want, (size_t)n * dim * sizeof(float));
            for (size_t i = 0; i < (size_t)n * dim; i++)
                if (fabsf(got[i] - want[i]) > 1e-6f * (1.0f + fabsf(want[i])))
                    fail_msg("model %zu, %d rows: element %zu is %g, forward gives %g", s, n, i,
                             got[i], want[i]);
            free(x);
            free(got);
            free(want);
        }
        close_fixture(&fx);
    }
}

static void test_dual_second_tower(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, &FX_DUAL);
    assert_int_equal(dml_model_dim_in_b(fx.model), FX_DUAL.dim_in_b);
    int n = 50, dim = FX_DUAL.dim;
    float *x = fx_rows((size_t)n, FX_DUAL.dim_in_b, 7);
    float *got = malloc((size_t)n * dim * sizeof(float)), *want = malloc((size_t)n * dim * 4);
    assert_int_equal(dml_model_encode_b(fx.model, x, (size_t)n, got), DML_OK);
    reference_forward(&fx.mf.net.encoder_b, &fx.mf.norm_b, x, n, want);
    assert_memory_equal(got, want, (size_t)n * dim * sizeof(float));
    free(x);
    free(got);
    free(want);
    close_fixture(&fx);

    open_fixture(&fx, &FX_MLP);
    float row[12] = {0}, out[8];
    assert_int_equal(dml_model_dim_in_b(fx.model), 0);
    assert_int_equal(dml_model_encode_b(fx.model, row, 1, out), DML_ERR_USAGE);
    close_fixture(&fx);
}

static void test_getters(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, &FX_MLP);
    const dml_pq *pq = dml_model_pq(fx.model);
    assert_non_null(pq);
    assert_int_equal(dml_pq_code_size(pq), 2); /* M 4 x 4 bits */
    /* The codebooks as written, [M][ksub][dsub] (what the Python package hands FAISS). */
    assert_int_equal(dml_pq_m(pq), fx.mf.pq.m);
    assert_int_equal(dml_pq_nbits(pq), 4);
    assert_memory_equal(dml_pq_centroids(pq), fx.mf.pq.centroids,
                        (size_t)fx.mf.pq.d * fx.mf.pq.ksub * sizeof(float));
    assert_string_equal(dml_model_metric(fx.model), "inner_product");
    close_fixture(&fx);
    open_fixture(&fx, &FX_SIGMOID);
    assert_null(dml_model_pq(fx.model));
    assert_string_equal(dml_model_metric(fx.model), "l2");
    close_fixture(&fx);
}

static void test_bad_calls(void **state)
{
    (void)state;
    char msg[256];
    dml_model *m = (dml_model *)msg; /* must be overwritten with NULL */
    assert_int_equal(dml_model_open("/nonexistent/model.h5", &m, msg, sizeof msg), DML_ERR_DATA);
    assert_null(m);
    assert_string_equal(msg, "/nonexistent/model.h5: no such file");
    char tiny[8];
    assert_int_equal(dml_model_open("/nonexistent/model.h5", &m, tiny, sizeof tiny), DML_ERR_DATA);
    assert_string_equal(tiny, "/nonexi"); /* truncated, terminated */
    assert_int_equal(dml_model_open("/nonexistent/model.h5", &m, NULL, 0), DML_ERR_DATA);
    assert_int_equal(dml_model_open(NULL, &m, msg, sizeof msg), DML_ERR_USAGE);
    assert_int_equal(dml_model_open("x.h5", NULL, msg, sizeof msg), DML_ERR_USAGE);
    dml_model_free(NULL);

    fixture fx;
    open_fixture(&fx, &FX_MLP);
    float out[8];
    assert_int_equal(dml_model_encode(fx.model, NULL, 0, NULL), DML_OK);
    assert_int_equal(dml_model_encode(fx.model, NULL, 1, out), DML_ERR_USAGE);
    assert_int_equal(dml_model_encode(NULL, out, 1, out), DML_ERR_USAGE);
    close_fixture(&fx);
}

typedef struct job {
    const dml_model *model;
    const float *x;
    size_t n;
    float *out;
    dml_status st;
} job;

static void *run_job(void *p)
{
    job *j = p;
    for (int rep = 0; rep < 3 && j->st == DML_OK; rep++)
        j->st = dml_model_encode(j->model, j->x, j->n, j->out);
    return NULL;
}

/* Two threads encode on one model at once; both get exactly the single-threaded result. */
static void test_concurrent_encode(void **state)
{
    (void)state;
    fixture fx;
    open_fixture(&fx, &FX_MLP);
    size_t n = 1500;
    int dim = FX_MLP.dim;
    float *x = fx_rows(n, FX_MLP.dim_in, 8), *serial = malloc(n * dim * sizeof(float));
    assert_int_equal(dml_model_encode(fx.model, x, n, serial), DML_OK);
    job jobs[2];
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        jobs[t] = (job){fx.model, x, n, malloc(n * dim * sizeof(float)), DML_OK};
        assert_int_equal(pthread_create(&th[t], NULL, run_job, &jobs[t]), 0);
    }
    for (int t = 0; t < 2; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(jobs[t].st, DML_OK);
        assert_memory_equal(jobs[t].out, serial, n * dim * sizeof(float));
        free(jobs[t].out);
    }
    free(x);
    free(serial);
    close_fixture(&fx);
}

/* make install into a staging folder; the example builds from the installed header, library and
 * dml.pc alone (pkg-config --define-prefix), then runs on a model. */
static void test_installed_example(void **state)
{
    (void)state;
    if (tu_system("command -v pkg-config >/dev/null && command -v make >/dev/null") != 0)
        TU_SKIP("needs make and pkg-config");
    fixture fx;
    open_fixture(&fx, &FX_MLP);
    char stage[300], out[300];
    snprintf(stage, sizeof stage, "%s/stage", fx.dir);
    snprintf(out, sizeof out, "%s/example.out", fx.dir);
    /* MAKEFLAGS of an enclosing make (make test) would hand over its jobserver, and make
     * sanitize exports BUILD, OPT and LDFLAGS: the installed library is the plain build. */
    assert_int_equal(tu_system("env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u BUILD -u OPT -u LDFLAGS "
                               "make -s install "
                               "DESTDIR='%s' PREFIX=/usr >'%s/install.log' 2>&1 || "
                               "{ cat '%s/install.log'; exit 1; }",
                               stage, fx.dir, fx.dir),
                     0);
    assert_int_equal(tu_system("cd '%s' && test -f usr/include/dml.h && test -f usr/lib/libdml.a "
                               "&& test -L usr/lib/libdml.so && test -f usr/lib/pkgconfig/dml.pc",
                               stage),
                     0);
    assert_int_equal(tu_system("PKG_CONFIG_PATH='%s/usr/lib/pkgconfig' cc -std=c11 -Wall -Wextra "
                               "-Werror examples/encode_example.c $(PKG_CONFIG_PATH='%s/usr/lib/"
                               "pkgconfig' pkg-config --define-prefix --cflags --libs dml) "
                               "-o '%s/encode_example'",
                               stage, stage, fx.dir),
                     0);
    assert_int_equal(tu_system("LD_LIBRARY_PATH='%s/usr/lib' '%s/encode_example' '%s' >'%s'",
                               stage, fx.dir, fx.path, out),
                     0);
    /* the program read the model and searched its codes */
    assert_int_equal(tu_system("grep -q '12 features -> 8-dim embeddings (inner_product)' '%s' && "
                               "grep -q '2-byte PQ codes' '%s' && grep -c '^  row ' '%s' | "
                               "grep -qx 8",
                               out, out, out),
                     0);
    assert_int_equal(tu_system("LD_LIBRARY_PATH='%s/usr/lib' '%s/encode_example' "
                               "'%s/missing.h5' 2>'%s'; test $? -eq 1 && grep -q 'no such file' "
                               "'%s'",
                               stage, fx.dir, fx.dir, out, out),
                     0);
    /* examples/train_example.c: trains from memory, evaluates and saves a model that opens */
    assert_int_equal(tu_system("PKG_CONFIG_PATH='%s/usr/lib/pkgconfig' cc -std=c11 -Wall -Wextra "
                               "-Werror examples/train_example.c $(PKG_CONFIG_PATH='%s/usr/lib/"
                               "pkgconfig' pkg-config --define-prefix --cflags --libs dml) -lm "
                               "-o '%s/train_example'",
                               stage, stage, fx.dir),
                     0);
    assert_int_equal(tu_system("LD_LIBRARY_PATH='%s/usr/lib' '%s/train_example' '%s/trained.h5' "
                               ">'%s'",
                               stage, fx.dir, fx.dir, out),
                     0);
    assert_int_equal(tu_system("grep -q '^step 100 of 100: validation map_at_r' '%s' && "
                               "grep -q '^pq_map_at_r' '%s' && grep -q '^saved .*16 features -> "
                               "8-dim' '%s'",
                               out, out, out),
                     0);
    char trained[400], msg[256];
    snprintf(trained, sizeof trained, "%s/trained.h5", fx.dir);
    dml_model *m;
    assert_int_equal(dml_model_open(trained, &m, msg, sizeof msg), DML_OK);
    dml_model_free(m);
    close_fixture(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_matches_mlp_forward),
        cmocka_unit_test(test_dual_second_tower),
        cmocka_unit_test(test_getters),
        cmocka_unit_test(test_bad_calls),
        cmocka_unit_test(test_concurrent_encode),
        cmocka_unit_test(test_installed_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
