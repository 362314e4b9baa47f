/* dml encode and dml export --faiss streamed a range of rows at a time (DML_ENCODE_CHUNK_ROWS
 * lowered to 4096, so 10000 rows take three ranges): the embeddings, PQ codes and labels equal
 * the in-memory path's byte for byte for HDF5, .npy and .fvecs inputs; a damaged input that
 * fails in a later range exits 2 naming the file and leaves nothing behind; a failed write,
 * fsync, close or rename of the output exits 1 and leaves no temporary file; the streamed FAISS
 * index loads in FAISS and holds the in-memory codes; under mpirun, ranks streaming their slices
 * in rounds write the one process's bytes; SIGTERM to a running encode removes its temporary
 * file and leaves the previous output, and a temporary file a killed writer (kill -9) left is
 * removed by the next write of the same path. */
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/fileio.h"
#include "tests/model_fixture.h"
#include "serve/serve.h"

#define N 10000 /* rows: three ranges of 4096 */
#define CHUNK "4096"

static char dir[256], model[300];
static dml_model_file mf;
static float *rows;     /* [N, dim_in] */
static int32_t labels[N];

/* FX_MLP with 8-bit codes (a byte a sub-quantizer) */
static const fx_spec SPEC = {DML_NET_MLP, 12, 0, 2, {16, 10}, 8, DML_ACT_RELU, DML_OUTPUT_L2,
                             1, 4, 8, NULL, 5};

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void write_h5(const char *name, const float *x, int n, int d, const int32_t *y)
{
    char path[400];
    path_of(path, sizeof path, name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t xd[2] = {(hsize_t)n, (hsize_t)d}, yd[1] = {(hsize_t)n};
    hid_t s = H5Screate_simple(2, xd, NULL);
    hid_t ds = H5Dcreate2(f, "X", H5T_IEEE_F32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(ds);
    H5Sclose(s);
    if (y) {
        s = H5Screate_simple(1, yd, NULL);
        ds = H5Dcreate2(f, "y", H5T_STD_I32LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
        H5Dclose(ds);
        H5Sclose(s);
    }
    H5Fclose(f);
}

/* numpy's .npy version 1.0, little-endian float32, C order. */
static void write_npy(const char *name, const float *x, int n, int d)
{
    char path[400], head[128];
    path_of(path, sizeof path, name);
    int len = snprintf(head, sizeof head,
                       "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", n, d);
    int pad = 64 - (10 + len + 1) % 64;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint16_t hl = (uint16_t)(len + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    fwrite(&hl, 2, 1, f);
    fwrite(head, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(x, sizeof(float), (size_t)n * d, f);
    fclose(f);
}

/* .fvecs: each row its width (int32) then its floats. */
static void write_fvecs(const char *name, const float *x, int n, int d)
{
    char path[400];
    path_of(path, sizeof path, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < n; i++) {
        fwrite(&d, sizeof d, 1, f);
        fwrite(x + (size_t)i * d, sizeof(float), (size_t)d, f);
    }
    fclose(f);
}

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir);
    path_of(model, sizeof model, "model.h5");
    fx_model(&mf, &SPEC);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(model, &mf, &err), DML_OK);
    rows = fx_rows(N, SPEC.dim_in, 7);
    for (int i = 0; i < N; i++)
        labels[i] = (i * 7) % 5;
    write_h5("in.h5", rows, N, SPEC.dim_in, labels);
    write_npy("in.npy", rows, N, SPEC.dim_in);
    write_fvecs("in.fvecs", rows, N, SPEC.dim_in);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(rows);
    dml_model_file_free(&mf);
    fx_rm(dir);
    return 0;
}

/* A dataset's bytes as stored (*n bytes), or NULL when the file lacks it. */
static unsigned char *dataset_bytes(const char *path, const char *name, size_t *n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    unsigned char *buf = NULL;
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(ds), ty = H5Dget_type(ds);
        *n = (size_t)H5Sget_simple_extent_npoints(sp) * H5Tget_size(ty);
        buf = malloc(*n + 1);
        assert_true(H5Dread(ds, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
        H5Tclose(ty);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return buf;
}

/* The in-memory path: the whole input read, embedded and PQ-encoded in one call each. */
static void expected(const char *input, float **x, uint8_t **codes, dml_dataset *ds)
{
    char path[400];
    path_of(path, sizeof path, input);
    dml_error err = {0};
    assert_int_equal(dml_dataset_open(path, ds, &err), DML_OK);
    dml_eval_model em;
    dml_model_file_eval_model(&mf, "model.h5", &em);
    assert_int_equal(dml_eval_model_embed(&em, 0, ds, x, &err), DML_OK);
    *codes = malloc((size_t)ds->n * dml_pq_code_size(&mf.pq));
    assert_int_equal(dml_pq_encode(&mf.pq, *x, (size_t)ds->n, *codes), DML_OK);
}

/* Nothing named .*.tmp.* is left in dir. */
static void assert_no_temporary(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp."))
            fail_msg("left behind: %s", e->d_name);
    closedir(d);
}

static void check_encode(const char *input, const char *chunk)
{
    char in[400], out[400];
    path_of(in, sizeof in, input);
    path_of(out, sizeof out, "out.h5");
    assert_int_equal(tu_system("DML_ENCODE_CHUNK_ROWS=%s %s encode %s %s %s --pq >%s/log 2>&1",
                               chunk, tu_dml_path(), model, in, out, dir), 0);
    float *x;
    uint8_t *codes;
    dml_dataset ds;
    expected(input, &x, &codes, &ds);
    size_t n = 0, cs = dml_pq_code_size(&mf.pq);
    unsigned char *got = dataset_bytes(out, "X", &n);
    assert_int_equal(n, (size_t)N * SPEC.dim * sizeof(float));
    assert_memory_equal(got, x, n);
    free(got);
    got = dataset_bytes(out, "codes", &n);
    assert_int_equal(n, (size_t)N * cs);
    assert_memory_equal(got, codes, n);
    free(got);
    got = dataset_bytes(out, "y", &n);
    if (ds.y) {
        assert_int_equal(n, (size_t)N * sizeof(int64_t));
        for (int i = 0; i < N; i++) {
            int64_t v;
            memcpy(&v, got + (size_t)i * sizeof v, sizeof v);
            assert_int_equal(v, ds.y[i]);
        }
    } else {
        assert_null(got);
    }
    free(got);
    /* and it reads back as a data SPEC */
    dml_dataset back;
    dml_error err = {0};
    assert_int_equal(dml_dataset_open(out, &back, &err), DML_OK);
    assert_int_equal(back.n, N);
    assert_int_equal(back.d, SPEC.dim);
    assert_memory_equal(back.x, x, (size_t)N * SPEC.dim * sizeof(float));
    dml_dataset_free(&back);
    dml_dataset_free(&ds);
    free(x);
    free(codes);
    assert_no_temporary();
}

static void test_hdf5_streamed_equals_in_memory(void **state)
{
    (void)state;
    check_encode("in.h5", CHUNK);
    check_encode("in.h5", "65536"); /* one range */
}

static void test_npy_and_fvecs_streamed_equal_in_memory(void **state)
{
    (void)state;
    check_encode("in.npy", CHUNK);
    check_encode("in.fvecs", CHUNK);
}

/* h5py reads the streamed file as it read the in-memory writer's: attributes, X, codes, y. */
static void test_h5py_reads_it(void **state)
{
    (void)state;
    if (!tu_python_has("h5py,numpy"))
        TU_SKIP("needs /usr/bin/python3 with h5py and numpy");
    char in[400], out[400];
    path_of(in, sizeof in, "in.h5");
    path_of(out, sizeof out, "out.h5");
    assert_int_equal(tu_system("DML_ENCODE_CHUNK_ROWS=%s %s encode %s %s %s --pq >%s/log 2>&1",
                               CHUNK, tu_dml_path(), model, in, out, dir), 0);
    assert_int_equal(tu_python_run(
        "-c 'import h5py, numpy as np\n"
        "f = h5py.File(\"%s\", \"r\"); g = h5py.File(\"%s\", \"r\")\n"
        "assert f.attrs[\"format\"] == b\"dml-embeddings\", f.attrs[\"format\"]\n"
        "assert f[\"X\"].shape == (%d, %d) and f[\"X\"].dtype == np.float32\n"
        "assert f[\"codes\"].shape == (%d, 4) and f[\"codes\"].dtype == np.uint8\n"
        "assert f[\"y\"].dtype == np.int64 and (f[\"y\"][:] == g[\"y\"][:]).all()\n"
        "assert np.isfinite(f[\"X\"][:]).all()'",
        out, in, N, SPEC.dim, N), 0);
}

/* --tower b of a dual encoder reads the rows into the second tower, range by range. */
static void test_tower_b(void **state)
{
    (void)state;
    dml_model_file dual;
    fx_model(&dual, &FX_DUAL);
    char dual_path[400], in[400], out[400];
    path_of(dual_path, sizeof dual_path, "dual.h5");
    path_of(in, sizeof in, "in_b.h5");
    path_of(out, sizeof out, "out_b.h5");
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(dual_path, &dual, &err), DML_OK);
    float *x_b = fx_rows(N, FX_DUAL.dim_in_b, 9);
    write_h5("in_b.h5", x_b, N, FX_DUAL.dim_in_b, NULL);
    assert_int_equal(tu_system("DML_ENCODE_CHUNK_ROWS=%s %s encode %s %s %s --tower b --pq "
                               ">%s/log 2>&1", CHUNK, tu_dml_path(), dual_path, in, out, dir), 0);
    dml_dataset ds;
    float *want;
    assert_int_equal(dml_dataset_open(in, &ds, &err), DML_OK);
    dml_eval_model em;
    dml_model_file_eval_model(&dual, dual_path, &em);
    assert_int_equal(dml_eval_model_embed(&em, 1, &ds, &want, &err), DML_OK);
    size_t n = 0;
    unsigned char *got = dataset_bytes(out, "X", &n);
    assert_int_equal(n, (size_t)N * FX_DUAL.dim * sizeof(float));
    assert_memory_equal(got, want, n);
    free(got);
    free(want);
    free(x_b);
    dml_dataset_free(&ds);
    dml_model_file_free(&dual);
}

/* A NaN in the last range: the error comes after two ranges were written, and must still name
 * the file and row and leave nothing behind. */
static void test_bad_row_in_a_later_range(void **state)
{
    (void)state;
    float *bad = malloc((size_t)N * SPEC.dim_in * sizeof(float));
    memcpy(bad, rows, (size_t)N * SPEC.dim_in * sizeof(float));
    bad[(size_t)9000 * SPEC.dim_in + 3] = NAN;
    write_npy("bad.npy", bad, N, SPEC.dim_in);
    write_h5("bad.h5", bad, N, SPEC.dim_in, labels);
    free(bad);
    const char *inputs[] = {"bad.npy", "bad.h5"};
    for (int i = 0; i < 2; i++) {
        char in[400], out[400], idx[400];
        path_of(in, sizeof in, inputs[i]);
        path_of(out, sizeof out, "bad_out.h5");
        path_of(idx, sizeof idx, "bad.index");
        assert_int_equal(tu_system("DML_ENCODE_CHUNK_ROWS=%s %s encode %s %s %s >%s/log 2>&1",
                                   CHUNK, tu_dml_path(), model, in, out, dir), 2);
        assert_int_equal(tu_system("grep -q '%s' %s/log", in, dir), 0);
        assert_false(dml_file_exists(out));
        assert_int_equal(tu_system("DML_ENCODE_CHUNK_ROWS=%s %s export %s --faiss %s --db %s "
                                   ">%s/log 2>&1", CHUNK, tu_dml_path(), model, idx, in, dir), 2);
        assert_int_equal(tu_system("grep -q '%s' %s/log", in, dir), 0);
        assert_false(dml_file_exists(idx));
        assert_no_temporary();
    }
}

/* A file cut short, and one whose rows are not the model's width: exit 2 naming the file. */
static void test_truncated_and_misshaped_inputs(void **state)
{
    (void)state;
    char in[400], out[400];
    path_of(out, sizeof out, "cut_out.h5");
    path_of(in, sizeof in, "in.npy");
    assert_int_equal(tu_system("head -c 300000 %s > %s/cut.npy && head -c 300000 %s/in.fvecs > "
                               "%s/cut.fvecs", in, dir, dir, dir), 0);
    write_fvecs("narrow.fvecs", rows, N, SPEC.dim_in - 1);
    const char *inputs[] = {"cut.npy", "cut.fvecs", "narrow.fvecs"};
    for (int i = 0; i < 3; i++) {
        path_of(in, sizeof in, inputs[i]);
        assert_int_equal(tu_system("DML_ENCODE_CHUNK_ROWS=%s %s encode %s %s %s --pq >%s/log 2>&1",
                                   CHUNK, tu_dml_path(), model, in, out, dir), 2);
        if (tu_system("grep -q '%s' %s/log", in, dir) != 0) {
            tu_system("cat %s/log", dir);
            fail_msg("the message does not name %s", in);
        }
        assert_false(dml_file_exists(out));
        assert_no_temporary();
    }
}

static void test_chunk_rows_must_fit_the_pq_blocks(void **state)
{
    (void)state;
    char in[400], out[400];
    path_of(in, sizeof in, "in.h5");
    path_of(out, sizeof out, "odd.h5");
    assert_int_equal(tu_system("DML_ENCODE_CHUNK_ROWS=1000 %s encode %s %s %s >%s/log 2>&1",
                               tu_dml_path(), model, in, out, dir), 2);
    assert_int_equal(tu_system("grep -q 'DML_ENCODE_CHUNK_ROWS=1000' %s/log", dir), 0);
    assert_false(dml_file_exists(out));
}

/* The streamed IndexPQ and IndexFlat hold the in-memory path's codes and vectors (the bytes
 * dml_export_faiss_* writes from them) and load in FAISS (tests/scripts/check_faiss.py). */
static void test_faiss_export_streamed(void **state)
{
    (void)state;
    float *x;
    uint8_t *codes;
    dml_dataset ds;
    expected("in.h5", &x, &codes, &ds);
    size_t cs = dml_pq_code_size(&mf.pq);
    const char *kinds[] = {"pq", "flat"};
    for (int i = 0; i < 2; i++) {
        char in[400], idx[400], ref[400];
        path_of(in, sizeof in, "in.h5");
        path_of(idx, sizeof idx, "db.index");
        path_of(ref, sizeof ref, "ref.index");
        assert_int_equal(tu_system("DML_ENCODE_CHUNK_ROWS=%s %s export %s --faiss %s --db %s --%s "
                                   "--metric l2 >%s/log 2>&1",
                                   CHUNK, tu_dml_path(), model, idx, in, kinds[i], dir), 0);
        dml_error err = {0};
        dml_status st = i == 0 ? dml_export_faiss_pq(ref, &mf.pq, codes, N, DML_FAISS_L2, &err)
                               : dml_export_faiss_flat(ref, x, N, SPEC.dim, DML_FAISS_L2, &err);
        assert_int_equal(st, DML_OK);
        assert_int_equal(tu_system("cmp -s %s %s", idx, ref), 0);
        if (!tu_python_has("faiss,numpy"))
            continue;
        char meta[64];
        snprintf(meta, sizeof meta, "%s %d %d l2", kinds[i], SPEC.dim, N);
        fx_dump(dir, "meta.txt", meta, strlen(meta));
        fx_dump(dir, "db.f32", x, (size_t)N * SPEC.dim * sizeof(float));
        fx_dump(dir, "codes.u8", codes, (size_t)N * cs);
        fx_dump(dir, "centroids.f32", mf.pq.centroids,
                (size_t)mf.pq.d * mf.pq.ksub * sizeof(float));
        assert_int_equal(tu_python_run("tests/scripts/check_faiss.py %s %s", idx, dir), 0);
    }
    assert_no_temporary();
    dml_dataset_free(&ds);
    free(x);
    free(codes);
}

static long fault_count(const char *kind)
{
    char path[400], name[16];
    path_of(path, sizeof path, "faults/counts");
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long n, found = -1;
    while (fscanf(f, "%15s %ld", name, &n) == 2)
        if (!strcmp(name, kind))
            found = n;
    fclose(f);
    return found;
}

/* Each write, fsync, close and rename of the streamed embeddings file fails in turn (the
 * injector of tests/test_faults.c): exit 1 naming the file and the reason, no temporary file,
 * and the previous OUTPUT.h5 whole. */
static void test_write_faults(void **state)
{
    (void)state;
    static const char *const kinds[] = {"write", "fsync", "close", "rename"};
    static const int errnos[] = {ENOSPC, EIO, EIO, EIO};
    char in[400], out[400], good[400];
    path_of(in, sizeof in, "in.h5");
    path_of(out, sizeof out, "faults/run/out.h5");
    path_of(good, sizeof good, "faults/good.h5");
    assert_int_equal(tu_system("mkdir -p %s/faults/run", dir), 0);
    const char *cmd = "env LD_PRELOAD=%s ASAN_OPTIONS=verify_asan_link_order=0 "
                      "FAULT_MATCH=%s/faults/run/ FAULT_CALL=%s FAULT_NTH=%ld FAULT_ERRNO=%d "
                      "FAULT_COUNTS=%s/faults/counts DML_ENCODE_CHUNK_ROWS=" CHUNK
                      " %s encode %s %s %s --pq >%s/faults/log 2>&1";
    assert_int_equal(tu_system(cmd, tu_fault_lib_path(), dir, "none", 0L, 0, dir, tu_dml_path(),
                               model, in, out, dir), 0);
    assert_int_equal(tu_system("cp %s %s", out, good), 0);
    long counts[4];
    for (int k = 0; k < 4; k++) {
        counts[k] = fault_count(kinds[k]);
        assert_true(counts[k] > 0);
    }
    assert_true(counts[0] > 3); /* the metadata, then X, codes and y in ranges */
    int injected = 0;
    for (int k = 0; k < 4; k++) {
        for (long nth = 1; nth <= counts[k]; nth++) {
            assert_int_equal(tu_system("cp %s %s", good, out), 0);
            int rc = tu_system(cmd, tu_fault_lib_path(), dir, kinds[k], nth, errnos[k], dir,
                               tu_dml_path(), model, in, out, dir);
            if (rc != 1 || tu_system("grep -qF -- '%s' %s/faults/log", out, dir) != 0 ||
                tu_system("grep -qF -- '%s' %s/faults/log", strerror(errnos[k]), dir) != 0) {
                tu_system("cat %s/faults/log", dir);
                fail_msg("%s number %ld: exit %d; expected 1 naming the file and the reason",
                         kinds[k], nth, rc);
            }
            assert_int_equal(tu_system("cmp -s %s %s", good, out), 0);
            assert_int_equal(tu_system("! ls -a %s/faults/run | grep -q '\\.tmp\\.'", dir), 0);
            injected++;
        }
    }
    print_message("  encode: %d failures injected, every one survived\n", injected);
}

/* Under mpirun each rank streams its slice in rounds (two or three ranges a rank here) and rank
 * 0 writes every rank's ranges where they go: X, codes and y are the one process's bytes. */
static void test_mpi_rounds_equal_one_process(void **state)
{
    (void)state;
    if (tu_system("command -v mpirun >/dev/null 2>&1") != 0)
        TU_SKIP("mpirun is not installed");
    tu_mpi_env();
    char in[400], one[400], many[400], *dml = realpath(tu_dml_path(), NULL);
    assert_non_null(dml);
    path_of(in, sizeof in, "in.h5");
    path_of(one, sizeof one, "one.h5");
    path_of(many, sizeof many, "many.h5");
    assert_int_equal(tu_system("%s encode %s %s %s --pq >%s/log 2>&1", dml, model, in, one, dir),
                     0);
    for (int np = 2; np <= 3; np++) {
        if (tu_system("DML_ENCODE_CHUNK_ROWS=" CHUNK " timeout 120 mpirun --oversubscribe "
                      "--allow-run-as-root -x DML_ENCODE_CHUNK_ROWS -np %d %s encode %s %s %s "
                      "--pq >%s/log 2>&1", np, dml, model, in, many, dir) != 0) {
            tu_system("cat %s/log", dir);
            fail_msg("mpirun -np %d failed", np);
        }
        const char *names[] = {"X", "codes", "y"};
        for (int i = 0; i < 3; i++) {
            size_t na = 0, nb = 0;
            unsigned char *a = dataset_bytes(one, names[i], &na);
            unsigned char *b = dataset_bytes(many, names[i], &nb);
            assert_non_null(a);
            assert_non_null(b);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, na);
            free(a);
            free(b);
        }
    }
    free(dml);
    assert_no_temporary();
}

/* SIGTERM and SIGINT while OUTPUT.h5 is being written (the injector holds its first write for
 * 30 s): exit 128 + the signal, no temporary file, the previous OUTPUT.h5 untouched. */
static void test_signal_removes_the_temporary_file(void **state)
{
    (void)state;
    char in[400], out[400], good[400], log[400];
    path_of(in, sizeof in, "in.h5");
    path_of(out, sizeof out, "sig/out.h5");
    path_of(good, sizeof good, "sig/good.h5");
    path_of(log, sizeof log, "sig/log");
    assert_int_equal(tu_system("mkdir -p %s/sig && %s encode %s %s %s >%s 2>&1", dir,
                               tu_dml_path(), model, in, out, log), 0);
    assert_int_equal(tu_system("cp %s %s", out, good), 0);
    const int sigs[] = {SIGTERM, SIGINT};
    for (int k = 0; k < 2; k++) {
        char cmd[2000], tmp[500];
        snprintf(cmd, sizeof cmd, "exec env LD_PRELOAD=%s ASAN_OPTIONS=verify_asan_link_order=0 "
                                  "FAULT_MATCH=%s/sig/.out FAULT_CALL=write FAULT_NTH=1 "
                                  "FAULT_SLEEP_MS=30000 %s encode %s %s %s >%s 2>&1",
                 tu_fault_lib_path(), dir, tu_dml_path(), model, in, out, log);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        snprintf(tmp, sizeof tmp, "%s/sig/.out.h5.tmp.%ld", dir, (long)pid);
        tu_wait_for_file(tmp, 120);
        kill(pid, sigs[k]);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 128 + sigs[k]) {
            tu_system("cat %s", log);
            fail_msg("signal %d: expected exit %d", sigs[k], 128 + sigs[k]);
        }
        assert_int_equal(access(tmp, F_OK), -1);
        assert_int_equal(tu_system("cmp -s %s %s", good, out), 0);
    }
}

/* A temporary file named for a process that is gone (kill -9 of a writer) is removed by the next
 * write of the same path; one of a live process, or of another file, is left alone. */
static void test_stale_temporary_files_are_removed(void **state)
{
    (void)state;
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0)
        _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    char out[400], stale[500], live[500], other[500];
    path_of(out, sizeof out, "stale.bin");
    snprintf(stale, sizeof stale, "%s/.stale.bin.tmp.%ld", dir, (long)dead);
    snprintf(live, sizeof live, "%s/.stale.bin.tmp.%ld", dir, (long)getppid());
    snprintf(other, sizeof other, "%s/.other.bin.tmp.%ld", dir, (long)dead);
    fx_dump(dir, strrchr(stale, '/') + 1, "x", 1);
    fx_dump(dir, strrchr(live, '/') + 1, "x", 1);
    fx_dump(dir, strrchr(other, '/') + 1, "x", 1);
    dml_error err = {0};
    assert_int_equal(dml_file_write_atomic(out, "test file", "abc", 3, &err), DML_OK);
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(access(live, F_OK), 0);
    assert_int_equal(access(other, F_OK), 0);
    unlink(live);
    unlink(other);
    unlink(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hdf5_streamed_equals_in_memory),
        cmocka_unit_test(test_npy_and_fvecs_streamed_equal_in_memory),
        cmocka_unit_test(test_h5py_reads_it),
        cmocka_unit_test(test_tower_b),
        cmocka_unit_test(test_bad_row_in_a_later_range),
        cmocka_unit_test(test_truncated_and_misshaped_inputs),
        cmocka_unit_test(test_chunk_rows_must_fit_the_pq_blocks),
        cmocka_unit_test(test_faiss_export_streamed),
        cmocka_unit_test(test_write_faults),
        cmocka_unit_test(test_mpi_rounds_equal_one_process),
        cmocka_unit_test(test_signal_removes_the_temporary_file),
        cmocka_unit_test(test_stale_temporary_files_are_removed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
