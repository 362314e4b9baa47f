#include "tests/testutil.h"

#include <hdf5.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve.h"

void tu_fill_normal(float *x, size_t n, float scale, uint64_t seed)
{
    dml_rng r;
    dml_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * dml_rng_normal(&r);
}

/* sum(out * R) in double (0 when r is NULL), after a fresh forward pass from the given values. */
static double forward_loss(dml_graph *g, tu_build_fn build, void *ctx, int n_in, const tu_input *in,
                           float **vals, const float *r, dml_tensor **leaves, dml_tensor **out_node)
{
    dml_graph_reset(g);
    dml_arena_poison(&g->arena); /* an op that reads a buffer it did not write sees NaNs */
    for (int k = 0; k < n_in; k++)
        leaves[k] = dml_leaf_copy(g, vals[k], in[k].rows, in[k].cols, !in[k].no_grad);
    dml_tensor *out = build(g, leaves, ctx);
    assert_non_null(out);
    double acc = 0.0;
    for (size_t i = 0; r && i < (size_t)out->rows * out->cols; i++)
        acc += (double)out->data[i] * r[i];
    if (out_node)
        *out_node = out;
    return acc;
}

double tu_gradcheck(tu_build_fn build, void *ctx, int n_in, const tu_input *in, float eps,
                    double tol)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 16);
    float **vals = calloc((size_t)n_in, sizeof *vals);
    dml_tensor **leaves = calloc((size_t)n_in, sizeof *leaves);
    for (int k = 0; k < n_in; k++) {
        size_t n = (size_t)in[k].rows * in[k].cols;
        vals[k] = malloc((n ? n : 1) * sizeof(float));
        memcpy(vals[k], in[k].data, n * sizeof(float));
    }
    /* The output's shape, then a fixed random R to weight it. */
    dml_tensor *out;
    forward_loss(&g, build, ctx, n_in, in, vals, NULL, leaves, &out);
    size_t n_out = (size_t)out->rows * out->cols;
    float *r = malloc(n_out * sizeof(float));
    tu_fill_normal(r, n_out, 1.0f, 1234);
    if (n_out == 1)
        r[0] = 1.0f;

    /* Analytic gradients, copied out before the graph is reused. */
    forward_loss(&g, build, ctx, n_in, in, vals, r, leaves, &out);
    float **analytic = calloc((size_t)n_in, sizeof *analytic);
    if (out->grad) {
        memcpy(out->grad, r, n_out * sizeof(float));
        assert_int_equal(dml_backward_from(&g, out), DML_OK);
    }
    for (int k = 0; k < n_in; k++) {
        size_t n = (size_t)in[k].rows * in[k].cols;
        analytic[k] = calloc(n ? n : 1, sizeof(float));
        if (!in[k].no_grad)
            memcpy(analytic[k], leaves[k]->grad, n * sizeof(float));
    }

    double worst = 0.0;
    for (int k = 0; k < n_in; k++) {
        if (in[k].no_grad)
            continue;
        for (size_t i = 0; i < (size_t)in[k].rows * in[k].cols; i++) {
            float saved = vals[k][i];
            vals[k][i] = saved + eps;
            double up = forward_loss(&g, build, ctx, n_in, in, vals, r, leaves, NULL);
            vals[k][i] = saved - eps;
            double down = forward_loss(&g, build, ctx, n_in, in, vals, r, leaves, NULL);
            vals[k][i] = saved;
            double numeric = (up - down) / (2.0 * eps), a = analytic[k][i];
            double scaled = fabs(a - numeric) / (1.0 + fmax(fabs(a), fabs(numeric)));
            if (scaled > worst)
                worst = scaled;
            if (!(scaled <= tol)) /* a NaN fails too */
                fail_msg("gradient of input %d element %zu: analytic %.6g, numeric %.6g", k, i, a,
                         numeric);
        }
    }
    for (int k = 0; k < n_in; k++) {
        free(vals[k]);
        free(analytic[k]);
    }
    free(vals);
    free(analytic);
    free(leaves);
    free(r);
    dml_graph_free(&g);
    return worst;
}

void tu_mkdtemp(char *out, size_t n)
{
    const char *base = getenv("TMPDIR");
    snprintf(out, n, "%s/dml-test-XXXXXX", base && *base ? base : "/tmp");
    assert_non_null(mkdtemp(out));
}

static const char *python(void)
{
    const char *p = getenv("PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

static int vsystem(const char *fmt, va_list ap)
{
    char cmd[8192];
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc))
        return -1;
    return WEXITSTATUS(rc);
}

int tu_system(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vsystem(fmt, ap);
    va_end(ap);
    return rc;
}

int tu_python_has(const char *modules)
{
    return tu_system("%s -c 'import %s' >/dev/null 2>&1", python(), modules) == 0;
}

int tu_python_run(const char *fmt, ...)
{
    char args[7000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    return tu_system("%s %s", python(), args);
}

char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len)
        *len = (size_t)n;
    return buf;
}

const char *tu_dml_path(void)
{
    const char *p = getenv("DML");
    return p && *p ? p : "build/dml";
}

const char *tu_fault_lib_path(void)
{
    static char path[4200];
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(exe, '/');
    snprintf(path, sizeof path, "%.*s/libfault.so", slash ? (int)(slash - exe) : 1,
             slash ? exe : ".");
    return path;
}

double tu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void tu_write_blobs(const char *path, int n, int d, int classes)
{
    float *x = malloc((size_t)n * d * sizeof(float)), *centers = malloc((size_t)classes * d * sizeof(float));
    int32_t *y = malloc((size_t)n * sizeof(int32_t));
    assert_true(x && centers && y);
    tu_fill_normal(centers, (size_t)classes * d, 2.0f, 1);
    tu_fill_normal(x, (size_t)n * d, 1.0f, 2);
    for (int i = 0; i < n; i++) {
        y[i] = i % classes;
        for (int j = 0; j < d; j++)
            x[(size_t)i * d + j] += centers[y[i] * d + j];
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dx[2] = {(hsize_t)n, (hsize_t)d}, dy[1] = {(hsize_t)n};
    hid_t sx = H5Screate_simple(2, dx, NULL), sy = H5Screate_simple(1, dy, NULL);
    hid_t ds = H5Dcreate2(f, "X", H5T_IEEE_F32LE, sx, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0 && ds >= 0 && H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    H5Dclose(ds);
    ds = H5Dcreate2(f, "y", H5T_STD_I32LE, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(ds >= 0 && H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
    H5Dclose(ds);
    H5Sclose(sx);
    H5Sclose(sy);
    H5Fclose(f);
    free(x);
    free(centers);
    free(y);
}

static void read_run_model(const char *run, dml_model_file *mf)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/model.h5", run);
    dml_error err = {0};
    assert_int_equal(dml_model_file_read(path, mf, &err), DML_OK);
}

void tu_assert_same_model(const char *run_a, const char *run_b)
{
    dml_model_file a, b;
    read_run_model(run_a, &a);
    read_run_model(run_b, &b);
    assert_int_equal(a.steps, b.steps);
    for (int i = 0; i < a.net.encoder.n_layers; i++) {
        const dml_linear *la = &a.net.encoder.layers[i], *lb = &b.net.encoder.layers[i];
        assert_memory_equal(la->w.data, lb->w.data, (size_t)la->w.rows * la->w.cols * sizeof(float));
        assert_memory_equal(la->b.data, lb->b.data, (size_t)la->b.cols * sizeof(float));
    }
    assert_memory_equal(a.pq.centroids, b.pq.centroids, (size_t)a.pq.d * a.pq.ksub * sizeof(float));
    dml_model_file_free(&a);
    dml_model_file_free(&b);
}

static double max_rel(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double scale = fmax(fmax(fabs(a[i]), fabs(b[i])), 1e-4);
        worst = fmax(worst, fabs((double)a[i] - b[i]) / scale);
    }
    return worst;
}

static double mlp_rel_diff(const dml_mlp *a, const dml_mlp *b)
{
    assert_int_equal(a->n_layers, b->n_layers);
    double worst = 0.0;
    for (int i = 0; i < a->n_layers; i++) {
        const dml_linear *la = &a->layers[i], *lb = &b->layers[i];
        assert_int_equal(la->w.rows * la->w.cols, lb->w.rows * lb->w.cols);
        worst = fmax(worst, max_rel(la->w.data, lb->w.data, (size_t)la->w.rows * la->w.cols));
        worst = fmax(worst, max_rel(la->b.data, lb->b.data, (size_t)la->b.cols));
    }
    return worst;
}

double tu_model_rel_diff(const char *run_a, const char *run_b)
{
    dml_model_file a, b;
    read_run_model(run_a, &a);
    read_run_model(run_b, &b);
    assert_int_equal(a.steps, b.steps);
    double worst = fmax(mlp_rel_diff(&a.net.encoder, &b.net.encoder),
                        mlp_rel_diff(&a.net.encoder_b, &b.net.encoder_b));
    assert_int_equal(a.pq.d * a.pq.ksub, b.pq.d * b.pq.ksub);
    worst = fmax(worst, max_rel(a.pq.centroids, b.pq.centroids, (size_t)a.pq.d * a.pq.ksub));
    dml_model_file_free(&a);
    dml_model_file_free(&b);
    return worst;
}

void tu_assert_measured(const char *what, double value, double bound)
{
    print_message("  measured %s: %.3g (bound %.3g)\n", what, value, bound);
    if (!(value <= bound))
        fail_msg("%s: %.3g is over its bound %.3g", what, value, bound);
}

void tu_wait_for_file(const char *path, double seconds)
{
    double until = tu_now() + seconds;
    while (access(path, F_OK) != 0 && tu_now() < until)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    if (access(path, F_OK) != 0)
        fail_msg("%s did not appear within %.0f s", path, seconds);
}

void tu_kill_after_checkpoint(const char *cmd, const char *run_dir)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint.h5", run_dir);
    tu_wait_for_file(path, 120);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
}

void tu_mpi_env(void)
{
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
    setenv("OMPI_MCA_mpi_yield_when_idle", "1", 1);
    setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
    setenv("ASAN_OPTIONS", "fast_unwind_on_malloc=0", 0);
    char supp[1200], *sp = realpath("tests/lsan_openmpi.supp", NULL);
    assert_non_null(sp);
    snprintf(supp, sizeof supp, "suppressions=%s", sp);
    free(sp);
    setenv("LSAN_OPTIONS", supp, 0);
}

void tu_blobs_folder(char *dir, size_t dir_size, char *data, size_t data_size, int n, int d,
                     int classes)
{
    tu_mkdtemp(dir, dir_size);
    snprintf(data, data_size, "%s/blobs.h5", dir);
    tu_write_blobs(data, n, d, classes);
}

void tu_remove_folder(const char *dir)
{
    tu_system("rm -rf '%s'", dir);
}

void tu_demo_train_command(char *cmd, size_t n, const char *dir, const char *out,
                           const char *data, const char *args, const char *extra)
{
    snprintf(cmd, n,
             "exec %s train configs/demo.yaml --out %s/%s --set data.train=%s --set data.test=%s "
             "%s %s >%s/%s.log 2>&1",
             tu_dml_path(), dir, out, data, data, args, extra, dir, out);
}
