/* model.h5: round trips of every model type, h5py reading it, malformed files, atomic writes,
 * and loading an encoder into a trainer's net. */
#include <dirent.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/model_fixture.h"
#include "train/checkpoint.h"

static void same_floats(const float *a, const float *b, size_t n)
{
    assert_non_null(a);
    assert_non_null(b);
    assert_memory_equal(a, b, n * sizeof(float));
}

static void same_mlp(const dml_mlp *a, const dml_mlp *b)
{
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->output, b->output);
    if (a->n_layers > 1)
        assert_int_equal(a->act, b->act);
    for (int i = 0; i < a->n_layers; i++) {
        const dml_linear *x = &a->layers[i], *y = &b->layers[i];
        assert_int_equal(x->w.rows, y->w.rows);
        assert_int_equal(x->w.cols, y->w.cols);
        assert_int_equal(x->b.rows, 1);
        assert_int_equal(y->b.cols, y->w.rows);
        same_floats(x->w.data, y->w.data, (size_t)x->w.rows * x->w.cols);
        same_floats(x->b.data, y->b.data, (size_t)x->b.cols);
        assert_null(y->w.grad); /* read nets are inference nets */
    }
}

static void same_norm(const dml_input_norm *a, const dml_input_norm *b)
{
    assert_int_equal(a->d, b->d);
    if (a->d) {
        same_floats(a->mean, b->mean, (size_t)a->d);
        same_floats(a->std, b->std, (size_t)a->d);
    }
}

static void round_trip(const fx_spec *spec)
{
    char dir[256], path[300];
    FX_TMP(dir, path, "model.h5");
    dml_model_file a, b;
    fx_model(&a, spec);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(path, &a, &err), DML_OK);
    assert_int_equal(dml_model_file_read(path, &b, &err), DML_OK);

    assert_int_equal(b.net.type, spec->type);
    same_mlp(&a.net.encoder, &b.net.encoder);
    same_mlp(&a.net.decoder, &b.net.decoder);
    same_mlp(&a.net.encoder_b, &b.net.encoder_b);
    same_norm(&a.norm, &b.norm);
    same_norm(&a.norm_b, &b.norm_b);
    assert_int_equal(a.pq.d, b.pq.d);
    if (a.pq.d) {
        assert_int_equal(a.pq.m, b.pq.m);
        assert_int_equal(a.pq.nbits, b.pq.nbits);
        assert_int_equal(a.pq.ksub, b.pq.ksub);
        assert_int_equal(a.pq.dsub, b.pq.dsub);
        same_floats(a.pq.centroids, b.pq.centroids, (size_t)a.pq.d * a.pq.ksub);
    }
    assert_string_equal(a.metric, b.metric);
    assert_int_equal(a.seed, b.seed);
    assert_int_equal(a.steps, b.steps);
    assert_string_equal(a.config_yaml, b.config_yaml);
    assert_string_equal(a.metrics_json, b.metrics_json);
    dml_model_file_free(&a);
    dml_model_file_free(&b);
    fx_rm(dir);
}

static void test_round_trip_mlp(void **state)
{
    (void)state;
    round_trip(&FX_MLP);
    round_trip(&FX_LEAKY);
    round_trip(&FX_SIGMOID);
    round_trip(&FX_LINEAR);
}

static void test_round_trip_autoencoder(void **state)
{
    (void)state;
    round_trip(&FX_AUTOENC);
}

static void test_round_trip_dual(void **state)
{
    (void)state;
    round_trip(&FX_DUAL);
}

static void same_scale(const dml_input_scale *a, const dml_input_scale *b)
{
    assert_string_equal(a->mode, b->mode);
    assert_string_equal(a->type, b->type);
    assert_true(a->min == b->min && a->max == b->max);
}

/* The input scale each tower was trained on (data/scale.h) comes back as written; a file
 * without it (every file before it) reads with mode "" and no range. */
static void test_input_scale_record(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "model.h5");
    dml_model_file a, b;
    dml_error err = {0};
    fx_model(&a, &FX_DUAL);
    a.scale = (dml_input_scale){"unit", "uint8", 0.0, 255.0};
    a.scale_b = (dml_input_scale){"standardize", "float64", -1.5, 2.25};
    assert_int_equal(dml_model_file_write(path, &a, &err), DML_OK);
    assert_int_equal(dml_model_file_read(path, &b, &err), DML_OK);
    same_scale(&a.scale, &b.scale);
    same_scale(&a.scale_b, &b.scale_b);
    dml_model_file_free(&b);
    /* a type and range unknown: the mode alone */
    a.scale = (dml_input_scale){"none", "", NAN, NAN};
    assert_int_equal(dml_model_file_write(path, &a, &err), DML_OK);
    assert_int_equal(dml_model_file_read(path, &b, &err), DML_OK);
    assert_string_equal(b.scale.mode, "none");
    assert_string_equal(b.scale.type, "");
    assert_true(isnan(b.scale.min) && isnan(b.scale.max));
    dml_model_file_free(&b);
    dml_model_file_free(&a);
    /* without the record */
    fx_model(&a, &FX_MLP);
    assert_int_equal(dml_model_file_write(path, &a, &err), DML_OK);
    assert_int_equal(dml_model_file_read(path, &b, &err), DML_OK);
    assert_string_equal(b.scale.mode, "");
    assert_true(isnan(b.scale.min));
    dml_model_file_free(&b);
    dml_model_file_free(&a);
    fx_rm(dir);
}

/* h5py alone (no dml) rebuilds the forward pass from the file and matches dml's. */
static void h5py_check(const fx_spec *spec, int tower)
{
    char dir[256], path[300], xp[300], yp[300];
    FX_TMP(dir, path, "model.h5");
    snprintf(xp, sizeof xp, "%s/x.f32", dir);
    snprintf(yp, sizeof yp, "%s/y.f32", dir);
    dml_model_file mf;
    fx_model(&mf, spec);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(path, &mf, &err), DML_OK);
    const dml_mlp *m = dml_model_file_tower(&mf, tower);
    size_t n = 40;
    int d_in = dml_mlp_dim_in(m), dim = dml_mlp_dim_out(m);
    float *x = fx_rows(n, d_in, 99), *y = malloc(n * (size_t)dim * sizeof(float));
    assert_int_equal(dml_model_file_encode(&mf, tower, x, n, y), DML_OK);
    fx_dump(dir, "x.f32", x, n * (size_t)d_in * sizeof(float));
    fx_dump(dir, "y.f32", y, n * (size_t)dim * sizeof(float));
    assert_int_equal(tu_python_run("tests/scripts/check_model_h5.py %s %s %s %s", path, xp, yp,
                                   tower ? "encoder_b" : "encoder"),
                     0);
    free(x);
    free(y);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

static void test_h5py_reads_it(void **state)
{
    (void)state;
    if (!tu_python_has("h5py,numpy"))
        TU_SKIP("needs /usr/bin/python3 with h5py and numpy");
    h5py_check(&FX_MLP, 0);
    h5py_check(&FX_DUAL, 0);
    h5py_check(&FX_DUAL, 1);
    h5py_check(&FX_LEAKY, 0);
    h5py_check(&FX_AUTOENC, 0);
    h5py_check(&FX_SIGMOID, 0);
    h5py_check(&FX_LINEAR, 0);
}

/* ---- malformed files: each a good file with one thing broken through the HDF5 API ---- */
typedef enum { SET_STR, SET_I64, SET_DATASET, DELETE, POISON } mutation_kind;

typedef struct mutation {
    mutation_kind kind;
    const char *obj, *name; /* object path; attribute or dataset name */
    const char *s;          /* SET_STR */
    int64_t v;              /* SET_I64 */
    hsize_t dims[2];        /* SET_DATASET: a zero-filled [dims[0], dims[1]] float dataset */
    const char *expect;     /* in the error message */
} mutation;

static void put_str_attr(hid_t o, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    hid_t s = H5Screate(H5S_SCALAR), a = H5Acreate2(o, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, t, value) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void mutate(const char *path, const mutation *mu)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t o = H5Oopen(f, mu->obj, H5P_DEFAULT);
    assert_true(o >= 0);
    if (mu->kind == SET_STR || mu->kind == SET_I64) {
        if (H5Aexists(o, mu->name) > 0)
            H5Adelete(o, mu->name);
    } else if (mu->kind != POISON) {
        assert_true(H5Ldelete(o, mu->name, H5P_DEFAULT) >= 0);
    }
    if (mu->kind == SET_STR) {
        put_str_attr(o, mu->name, mu->s);
    } else if (mu->kind == SET_I64) {
        hid_t s = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(o, mu->name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Awrite(a, H5T_NATIVE_INT64, &mu->v) >= 0);
        H5Aclose(a);
        H5Sclose(s);
    } else if (mu->kind == SET_DATASET) {
        float *zeros = calloc(mu->dims[0] * mu->dims[1], sizeof(float));
        hid_t s = H5Screate_simple(2, mu->dims, NULL);
        hid_t d = H5Dcreate2(o, mu->name, H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros) >= 0);
        H5Dclose(d);
        H5Sclose(s);
        free(zeros);
    } else if (mu->kind == POISON) { /* the first value of a float dataset becomes v (NaN if 0) */
        hid_t d = H5Dopen2(o, mu->name, H5P_DEFAULT);
        hid_t s = H5Dget_space(d);
        hssize_t n = H5Sget_simple_extent_npoints(s);
        float *buf = malloc((size_t)n * sizeof(float));
        H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        buf[0] = mu->v ? (float)mu->v : NAN;
        assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        free(buf);
        H5Sclose(s);
        H5Dclose(d);
    }
    H5Oclose(o);
    H5Fclose(f);
}

static const mutation MUTATIONS[] = {
    {SET_STR, "/", "format", "dml-checkpoint", 0, {0, 0},
     "not a dml model file: format is 'dml-checkpoint', expected 'dml-model'"},
    {SET_I64, "/", "format_version", NULL, 3, {0, 0}, "format_version 3 is not supported"},
    {SET_STR, "/", "model_type", "dual", 0, {0, 0},
     "model_type is 'dual', but the groups present make it 'mlp'"},
    {SET_STR, "/", "metric", "cosine", 0, {0, 0}, "metric 'cosine' is unknown"},
    {DELETE, "/", "encoder", NULL, 0, {0, 0}, "/: the group 'encoder' is missing"},
    {SET_I64, "/encoder/layer_001", "in_features", NULL, 7, {0, 0},
     "/encoder/layer_001: in_features = 7, but the layer before outputs 16"},
    {SET_DATASET, "/encoder/layer_001", "weight", NULL, 0, {3, 3},
     "the dataset '/encoder/layer_001/weight' is [3, 3] where its attributes give [10, 16]"},
    {DELETE, "/encoder/layer_002", "bias", NULL, 0, {0, 0},
     "the dataset '/encoder/layer_002/bias' is missing"},
    {SET_I64, "/encoder", "output_dim", NULL, 9, {0, 0},
     "/encoder: output_dim = 9, but the last layer outputs 8"},
    {DELETE, "/encoder", "layer_001", NULL, 0, {0, 0},
     "/encoder: the group 'layer_001' is missing"},
    {SET_STR, "/encoder/layer_000", "activation", "swish", 0, {0, 0},
     "/encoder/layer_000: activation 'swish' is unknown"},
    {SET_STR, "/encoder/layer_001", "activation", "tanh", 0, {0, 0},
     "activation 'tanh' differs from the first layer's 'relu'"},
    {SET_STR, "/encoder/layer_002", "activation", "relu", 0, {0, 0},
     "the last layer's activation must be none"},
    {SET_STR, "/encoder/output_norm", "kind", "l1", 0, {0, 0}, "kind 'l1' is unknown"},
    {SET_STR, "/encoder/input_norm", "kind", "whiten", 0, {0, 0}, "kind 'whiten' is unknown"},
    {SET_STR, "/encoder/input_norm", "mode", "bytes", 0, {0, 0},
     "/encoder/input_norm: mode 'bytes' is unknown (expected none, unit or standardize)"},
    {SET_I64, "/encoder/input_norm", "mode", NULL, 1, {0, 0},
     "/encoder/input_norm: the attribute 'mode' is not a single fixed-length string"},
    {POISON, "/encoder/layer_000", "weight", NULL, 0, {0, 0},
     "'/encoder/layer_000/weight' holds a non-finite value at flat index 0"},
    {POISON, "/encoder/input_norm", "std", NULL, -1, {0, 0},
     "/encoder/input_norm/std[0] = -1: a standard deviation must be positive"},
    {SET_I64, "/pq", "M", NULL, 3, {0, 0}, "/pq: d = 8 is not divisible by M = 3"},
    {SET_I64, "/pq", "d", NULL, 6, {0, 0}, "/pq: d = 6, but the encoder outputs 8"},
    {SET_I64, "/pq", "ksub", NULL, 8, {0, 0}, "/pq: ksub = 8 and dsub = 2, but nbits = 4"},
    {SET_STR, "/pq", "nbits", "four", 0, {0, 0}, "/pq: the attribute 'nbits' is not a single integer"},
    {SET_DATASET, "/pq", "centroids", NULL, 0, {4, 32},
     "the dataset '/pq/centroids' is [4, 32] where its attributes give [4, 16, 2]"},
};

static void test_malformed_files(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "bad.h5");
    dml_model_file good;
    fx_model(&good, &FX_MLP);
    for (size_t i = 0; i < sizeof MUTATIONS / sizeof MUTATIONS[0]; i++) {
        dml_error err = {0};
        assert_int_equal(dml_model_file_write(path, &good, &err), DML_OK);
        mutate(path, &MUTATIONS[i]);
        dml_model_file mf;
        dml_status st = dml_model_file_read(path, &mf, &err);
        if (st != DML_ERR_DATA || !strstr(err.msg, MUTATIONS[i].expect))
            fail_msg("mutation %zu: status %s, message \"%s\", expected \"%s\"", i,
                     dml_status_name(st), err.msg, MUTATIONS[i].expect);
        assert_string_equal(err.file, path);
        assert_null(mf.net.encoder.layers); /* left empty */
        assert_null(mf.pq.centroids);
        dml_model_file_free(&mf);
    }
    dml_model_file_free(&good);
    fx_rm(dir);
}

/* A 60 KB attribute value is echoed cut (its start and its size), so the message keeps its end:
 * what was expected. */
static void test_long_values_are_cut(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "long.h5");
    static char value[60001];
    memset(value, 'x', 60000);
    dml_model_file good, mf;
    fx_model(&good, &FX_MLP);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(path, &good, &err), DML_OK);
    mutation mu = {SET_STR, "/encoder/layer_000", "activation", value, 0, {0, 0}, NULL};
    mutate(path, &mu);
    assert_int_equal(dml_model_file_read(path, &mf, &err), DML_ERR_DATA);
    char want[200];
    snprintf(want, sizeof want, "activation '%.80s... (60000 bytes)' is unknown (expected relu",
             value);
    if (!strstr(err.msg, want))
        fail_msg("message \"%s\", expected \"%s\"", err.msg, want);
    dml_model_file_free(&mf);
    dml_model_file_free(&good);
    fx_rm(dir);
}

static void test_missing_or_not_hdf5(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "model.h5");
    dml_model_file mf;
    dml_error err = {0};
    assert_int_equal(dml_model_file_read(path, &mf, &err), DML_ERR_DATA);
    assert_string_equal(err.file, path);
    assert_string_equal(err.msg, "no such file");
    FILE *f = fopen(path, "w");
    fputs("name: not a model\n", f);
    fclose(f);
    assert_int_equal(dml_model_file_read(path, &mf, &err), DML_ERR_DATA);
    assert_string_equal(err.msg, "cannot open the model: not an HDF5 file");
    /* Other HDF5 files: in the default format (no checksums), nothing past the superblock is
     * read; in HDF5 1.10's format, the missing format name is the problem. */
    hid_t h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(h);
    assert_int_equal(dml_model_file_read(path, &mf, &err), DML_ERR_DATA);
    assert_non_null(strstr(err.msg, "not a dml model file of format_version 2 (its HDF5 "
                                    "superblock is version 0, without a checksum)"));
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110);
    h = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Fclose(h);
    H5Pclose(fapl);
    assert_int_equal(dml_model_file_read(path, &mf, &err), DML_ERR_DATA);
    assert_string_equal(err.msg, "not a dml model file: format is '(none)', expected 'dml-model'");
    fx_rm(dir);
}

/* A model of dml's first format (format_version 1, written by the build before version 2): the
 * readers refuse it and say how to rewrite it; dml upgrade rewrites it as version 2 holding the
 * same groups, attributes and values. */
static void test_version_1_upgrade(void **state)
{
    (void)state;
    char dir[256], path[300], out[300];
    FX_TMP(dir, path, "v1.h5");
    snprintf(out, sizeof out, "%s/v2.h5", dir);
    assert_int_equal(tu_system("cp tests/fixtures/model/v1_mlp.h5 '%s'", path), 0);
    dml_model_file mf;
    dml_error err = {0};
    assert_int_equal(dml_model_file_read(path, &mf, &err), DML_ERR_DATA);
    assert_non_null(strstr(err.msg, "a model.h5 of an earlier dml is rewritten by `dml upgrade"));
    assert_int_equal(tu_system("'%s' upgrade '%s' '%s' >/dev/null", tu_dml_path(), path, out), 0);
    assert_int_equal(dml_model_file_read(out, &mf, &err), DML_OK);
    assert_int_equal(dml_mlp_dim_in(&mf.net.encoder), 16);
    assert_int_equal(dml_mlp_dim_out(&mf.net.encoder), 4);
    assert_int_equal(mf.pq.m, 2);
    assert_int_equal(mf.norm.d, 16);
    assert_string_equal(mf.scale.mode, ""); /* older than the record */
    assert_non_null(strstr(mf.config_yaml, "name: \"tiny\""));
    dml_model_file_free(&mf);
    if (tu_python_has("h5py,numpy"))
        assert_int_equal(tu_python_run("tests/scripts/same_model_h5.py '%s' '%s'", path, out), 0);
    /* A damaged version-1 file that crashes libhdf5 (one of the fuzzer's seeds): the crash stays
     * in dml upgrade's child process, and the command ends with a clean exit 2. (Under make
     * sanitize, ASan reports the crash and exits 1: abort_on_error keeps it a signal.) */
    assert_int_equal(tu_system("cp tests/fuzz/corpus/model/v1_crash_global_heap.h5 '%s/bad.h5'",
                               dir), 0);
    assert_int_equal(tu_system("ASAN_OPTIONS=abort_on_error=1:detect_leaks=0 '%s' upgrade "
                               "'%s/bad.h5' '%s/bad2.h5' 2>'%s/err.txt'",
                               tu_dml_path(), dir, dir, dir), 2);
    assert_int_equal(tu_system("grep -q 'bad.h5: libhdf5, reading this version-1 file, crashed' "
                               "'%s/err.txt' && test ! -e '%s/bad2.h5'", dir, dir), 0);
    /* In place, as the error message says. */
    assert_int_equal(tu_system("'%s' upgrade '%s' >/dev/null", tu_dml_path(), path), 0);
    assert_int_equal(dml_model_file_read(path, &mf, &err), DML_OK);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* A checkpoint.h5 given where a model goes: dml info says what it is and that dml train
 * --resume reads it; neither it nor the model readers send the user to dml upgrade, which
 * refuses it. */
static void test_checkpoint_is_not_sent_to_upgrade(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "checkpoint.h5");
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t step[1] = {7};
    dml_ckpt_entry e[2] = {{"encoder_000_w", DML_CKPT_F32, w, 6, 0},
                           {"scalars_i", DML_CKPT_I64, step, 1, 0}};
    dml_error err = {0};
    assert_int_equal(dml_checkpoint_write(path, e, 2, &err), DML_OK);
    assert_int_equal(tu_system("'%s' info '%s' >'%s/out.txt' 2>&1", tu_dml_path(), path, dir), 0);
    assert_int_equal(tu_system("grep -q 'checkpoint.h5: a dml training checkpoint' '%s/out.txt' && "
                               "grep -q 'dml train CONFIG --resume' '%s/out.txt' && "
                               "! grep -q upgrade '%s/out.txt'", dir, dir, dir), 0);
    dml_model_file mf;
    assert_int_equal(dml_model_file_read(path, &mf, &err), DML_ERR_DATA);
    assert_null(strstr(err.msg, "upgrade"));
    assert_non_null(strstr(err.msg, "checkpoint"));
    fx_rm(dir);
}

static size_t dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* A write that fails half-way (the file size limit hits) leaves the old file byte for byte and
 * no temporary file; the same write without the limit replaces it. */
static void test_atomic_write(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "model.h5");
    dml_model_file small, big;
    fx_model(&small, &FX_LEAKY);
    fx_spec bs = FX_MLP;
    bs.dim_in = 256;
    bs.hidden[0] = 256;
    fx_model(&big, &bs);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(path, &small, &err), DML_OK);
    size_t n_old, n_now;
    char *old = fx_slurp(path, &n_old);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGXFSZ, SIG_IGN); /* writes past the limit fail with EFBIG instead */
        struct rlimit rl = {32 * 1024, 32 * 1024};
        setrlimit(RLIMIT_FSIZE, &rl);
        dml_status st = dml_model_file_write(path, &big, &err);
        _exit(st == DML_ERR_IO && !strcmp(err.file, path) ? 0 : 10 + (int)st);
    }
    int wst;
    waitpid(pid, &wst, 0);
    assert_true(WIFEXITED(wst));
    assert_int_equal(WEXITSTATUS(wst), 0);
    char *now = fx_slurp(path, &n_now);
    assert_int_equal(n_now, n_old);
    assert_memory_equal(now, old, n_old);
    assert_int_equal(dir_entries(dir), 1);
    free(now);

    assert_int_equal(dml_model_file_write(path, &big, &err), DML_OK);
    dml_model_file back;
    assert_int_equal(dml_model_file_read(path, &back, &err), DML_OK);
    assert_int_equal(dml_mlp_dim_in(&back.net.encoder), 256);
    assert_int_equal(dir_entries(dir), 1);
    dml_model_file_free(&back);
    dml_model_file_free(&small);
    dml_model_file_free(&big);
    free(old);
    fx_rm(dir);
}

static void test_write_refuses_inconsistent(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "model.h5");
    dml_model_file mf;
    fx_model(&mf, &FX_MLP);
    mf.pq.d = 6; /* codebooks for another width */
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(path, &mf, &err), DML_ERR_USAGE);
    assert_non_null(strstr(err.msg, "codebooks' width"));
    mf.pq.d = 8;
    snprintf(mf.metric, sizeof mf.metric, "cosine");
    assert_int_equal(dml_model_file_write(path, &mf, &err), DML_ERR_USAGE);
    assert_int_equal(dir_entries(dir), 0);
    dml_model_file_free(&mf);
    fx_rm(dir);
}

/* Fine-tuning: a trainer's fresh net takes the file's weights when the shapes agree. */
static void test_copy_into_trainer_net(void **state)
{
    (void)state;
    char dir[256], path[300];
    FX_TMP(dir, path, "model.h5");
    dml_model_file mf, back, fresh, other;
    fx_model(&mf, &FX_MLP);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(path, &mf, &err), DML_OK);
    assert_int_equal(dml_model_file_read(path, &back, &err), DML_OK);
    fx_spec s = FX_MLP;
    s.seed = 77;
    fx_model(&fresh, &s);
    assert_int_equal(dml_model_file_copy_mlp(&fresh.net.encoder, &back.net.encoder, path,
                                             "encoder", &err),
                     DML_OK);
    for (int i = 0; i < mf.net.encoder.n_layers; i++) {
        same_floats(mf.net.encoder.layers[i].w.data, fresh.net.encoder.layers[i].w.data,
                    (size_t)mf.net.encoder.layers[i].w.rows * mf.net.encoder.layers[i].w.cols);
        assert_non_null(fresh.net.encoder.layers[i].w.grad); /* still trainable */
    }
    s.hidden[0] = 20;
    fx_model(&other, &s);
    float before = other.net.encoder.layers[2].w.data[0];
    assert_int_equal(dml_model_file_copy_mlp(&other.net.encoder, &back.net.encoder, path,
                                             "encoder", &err),
                     DML_ERR_DATA);
    assert_string_equal(err.file, path);
    assert_string_equal(err.msg,
                        "layer 0 of the encoder is 16 x 12 (out x in) where 20 x 12 is expected");
    assert_true(other.net.encoder.layers[2].w.data[0] == before);
    dml_model_file_free(&mf);
    dml_model_file_free(&back);
    dml_model_file_free(&fresh);
    dml_model_file_free(&other);
    fx_rm(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_mlp),
        cmocka_unit_test(test_round_trip_autoencoder),
        cmocka_unit_test(test_round_trip_dual),
        cmocka_unit_test(test_input_scale_record),
        cmocka_unit_test(test_h5py_reads_it),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_long_values_are_cut),
        cmocka_unit_test(test_missing_or_not_hdf5),
        cmocka_unit_test(test_version_1_upgrade),
        cmocka_unit_test(test_checkpoint_is_not_sent_to_upgrade),
        cmocka_unit_test(test_atomic_write),
        cmocka_unit_test(test_write_refuses_inconsistent),
        cmocka_unit_test(test_copy_into_trainer_net),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
