/* A loss's learned per-class rows (train/run_class_params.c; Proxy Anchor's proxies): their
 * set-up on a bare run (sizes, sub-centres, initial scale as PML draws it, the rank that owns
 * their gradient), then through the dml CLI on Gaussian blobs: the proxies are kept in
 * checkpoint.h5 and model.h5 holds the encoder alone; trained, each proxy points at its own
 * class's embeddings; the row's lr_multiplier reaches the optimizer; a killed and resumed run
 * ends with the uninterrupted run's model to the bit; 2 ranks under mpirun train the model one
 * process does.
 *
 * The loss's own gradients (for the embeddings and the proxies) are checked in
 * tests/test_losses.c and against PyTorch in tests/test_losses_torch.c. */
#include "tests/testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dml.h"
#include "train/run.h"

#define N_ROWS 600
#define WIDTH 16
#define CLASSES 4 /* Gaussian blobs */
#define DIM 8

static char dir[256], data[512];

static int setup(void **state)
{
    (void)state;
    tu_blobs_folder(dir, sizeof dir, data, sizeof data, N_ROWS, WIDTH, CLASSES);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_remove_folder(dir);
    return 0;
}

#define PROXY_ARGS                                                                                 \
    "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 "                       \
    "--set train.batch_size=32 --set train.threads=1 --set sampler.type=random "                  \
    "--set loss.type=proxy_anchor"

/* The command that trains configs/demo.yaml on the blobs into dir/out with extra arguments. */
static void command(char *cmd, size_t n, const char *out, const char *extra)
{
    tu_demo_train_command(cmd, n, dir, out, data, PROXY_ARGS, extra);
}

static int train(const char *out, const char *extra)
{
    char cmd[4096];
    command(cmd, sizeof cmd, out, extra);
    return tu_system("%s", cmd);
}

static int log_has(const char *out, const char *text)
{
    return tu_system("grep -q -- '%s' %s/%s.log", text, dir, out) == 0;
}

/* Dataset name of an HDF5 file as n floats (or int32s) into out; returns its element count. */
static hssize_t read_h5(const char *path, const char *name, hid_t type, void *out, hssize_t max)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hssize_t n = -1;
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), space = H5Dget_space(ds);
        n = H5Sget_simple_extent_npoints(space);
        assert_true(n <= max);
        if (out)
            assert_true(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
        H5Sclose(space);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return n;
}

extern const dml_loss_row dml_loss_row_proxy_anchor, dml_loss_row_arcface;

/* The set-up on a bare run: [classes * rows, dim] appended to r->params, drawn N(0, 2 / rows)
 * (PML's kaiming_normal_, fan_out), rows per class from the row's class_rows_key parameter when
 * it names one; the view, the optimizer's rate and the leaf are theirs; off rank 0 their
 * gradient is dropped before the ranks' sum. */
static void test_set_up_on_a_bare_run(void **state)
{
    (void)state;
    static const dml_loss_param sub_param[] = {
        {"sub_centers", DML_LP_INT, 1, 1, 100, 0, NULL, "rows per class"},
        {"lr_multiplier", DML_LP_FLOAT, 1, 0, 1e6f, 1, NULL, "rate"},
    };
    dml_loss_row sub = dml_loss_row_proxy_anchor;
    sub.params = sub_param;
    sub.n_params = 2;
    sub.class_rows_key = "sub_centers";
    /* want_std: PML's draws, kaiming's fan-out for proxies (0), normal_ for ArcFace's weights */
    const struct {
        const dml_loss_row *row;
        float p[4];
        int rows;
        float lr;
        double want_std;
    } cases[3] = {{&dml_loss_row_proxy_anchor, {0.1f, 32.0f, 100.0f}, 1, 100.0f, 0.0},
                  {&sub, {40.0f, 3.0f}, 40, 3.0f, 0.0},
                  {&dml_loss_row_arcface, {28.6f, 64.0f, 2.0f, 1.0f}, 2, 1.0f, 1.0}};
    for (int k = 0; k < 3; k++) {
        dml_run *r = calloc(1, sizeof *r);
        assert_non_null(r);
        r->cfg = &r->cfg_fitted;
        r->cfg_fitted.seed = 5;
        char *logged = NULL;
        size_t logged_n = 0;
        r->log = open_memstream(&logged, &logged_n);
        assert_non_null(r->log);
        r->train.n_classes = 7;
        r->dim_loss = 64;
        r->n_params = 2; /* the network's, say */
        assert_int_equal(dml_run_class_params_open(r, cases[k].row, cases[k].p, NULL), DML_OK);
        fclose(r->log);
        char said[128];
        snprintf(said, sizeof said, "%d learned class rows (7 classes x %d) of width 64, learning "
                 "rate x %g\n", 7 * cases[k].rows, cases[k].rows, (double)cases[k].lr);
        assert_non_null(strstr(logged, said));
        free(logged);
        dml_class_params *cp = &r->cls;
        int n_rows = 7 * cases[k].rows;
        size_t n = (size_t)n_rows * 64;
        assert_int_equal(cp->rows, cases[k].rows);
        assert_int_equal(r->n_params, 3);
        assert_int_equal(cp->param, 2);
        assert_ptr_equal(r->params[2].data, cp->data);
        assert_true(r->params[2].n == n);
        double ss = 0.0;
        for (size_t i = 0; i < n; i++)
            ss += (double)cp->data[i] * cp->data[i];
        double std = sqrt(ss / (double)n);
        double want = cases[k].want_std > 0.0 ? cases[k].want_std : sqrt(2.0 / n_rows);
        print_message("  %s, %d rows of 64: std %.4f, PML's %.4f\n", cases[k].row->name, n_rows, std,
                      want);
        assert_true(fabs(std / want - 1.0) < 0.1);
        dml_optim_spec os = {.kind = DML_OPTIM_ADAM};
        assert_int_equal(dml_optim_init(&r->optim, &os, r->params, r->n_params, NULL), DML_OK);
        dml_run_class_params_lr(r);
        assert_true(r->optim.lr_scale[2] == cases[k].lr && r->optim.lr_scale[1] == 1.0f);
        dml_graph g;
        dml_graph_init(&g, 1 << 16);
        dml_tensor *leaf = dml_run_class_params_leaf(r, &g);
        assert_true(leaf && leaf->data == cp->data && leaf->grad == cp->grad);
        assert_int_equal(leaf->rows, n_rows);
        dml_graph_free(&g);
        dml_comm comm = {.rank = 0, .size = 2};
        r->comm = &comm;
        for (int rank = 0; rank < 2; rank++) {
            comm.rank = rank;
            for (size_t i = 0; i < n; i++)
                cp->grad[i] = 1.0f;
            dml_run_class_params_own(r);
            assert_true(cp->grad[0] == (rank == 0 ? 1.0f : 0.0f) && cp->grad[n - 1] == cp->grad[0]);
        }
        dml_optim_free(&r->optim);
        dml_run_class_params_free(cp);
        free(r);
    }
}

static double cosine(const float *a, const float *b, int d)
{
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int k = 0; k < d; k++) {
        ab += (double)a[k] * b[k];
        aa += (double)a[k] * a[k];
        bb += (double)b[k] * b[k];
    }
    return ab / sqrt(aa * bb);
}

/* After training: checkpoint.h5 holds the proxies [CLASSES, DIM] (and model.h5 the encoder
 * alone, of the width the proxies have), and each class's mean embedding (model.h5's encoder on
 * the blobs) is nearer, in cosine, to its own proxy than to any other. */
static void test_proxies_are_trained_and_kept_in_the_checkpoint(void **state)
{
    (void)state;
    assert_int_equal(train("proxy", "--set train.epochs=3"), 0);
    assert_true(log_has("proxy", "loss.type proxy_anchor: 4 learned class rows (4 classes x 1) "
                                 "of width 8, learning rate x 100"));
    char path[700];
    float proxies[CLASSES * DIM];
    snprintf(path, sizeof path, "%s/proxy/checkpoint.h5", dir);
    assert_int_equal(read_h5(path, "class_params", H5T_NATIVE_FLOAT, proxies, CLASSES * DIM),
                     CLASSES * DIM);
    snprintf(path, sizeof path, "%s/proxy/model.h5", dir);
    assert_int_equal(read_h5(path, "class_params", H5T_NATIVE_FLOAT, NULL, 0), -1);
    char err[512];
    dml_model *m = NULL;
    assert_int_equal(dml_model_open(path, &m, err, sizeof err), DML_OK);
    assert_int_equal(dml_model_dim_out(m), DIM);
    float *x = malloc((size_t)N_ROWS * WIDTH * sizeof *x), *z = malloc((size_t)N_ROWS * DIM * sizeof *z);
    int32_t y[N_ROWS];
    assert_true(x && z);
    assert_int_equal(read_h5(data, "X", H5T_NATIVE_FLOAT, x, N_ROWS * WIDTH), N_ROWS * WIDTH);
    assert_int_equal(read_h5(data, "y", H5T_NATIVE_INT32, y, N_ROWS), N_ROWS);
    assert_int_equal(dml_model_encode(m, x, N_ROWS, z), DML_OK);
    float mean[CLASSES * DIM] = {0};
    for (int i = 0; i < N_ROWS; i++)
        for (int k = 0; k < DIM; k++)
            mean[y[i] * DIM + k] += z[(size_t)i * DIM + k];
    for (int c = 0; c < CLASSES; c++) {
        int nearest = 0;
        for (int p = 1; p < CLASSES; p++)
            if (cosine(mean + c * DIM, proxies + p * DIM, DIM) >
                cosine(mean + c * DIM, proxies + nearest * DIM, DIM))
                nearest = p;
        print_message("  class %d: cosine to its proxy %.3f, nearest proxy %d\n", c,
                      cosine(mean + c * DIM, proxies + c * DIM, DIM), nearest);
        assert_int_equal(nearest, c);
    }
    free(x);
    free(z);
    dml_model_free(m);
}

/* loss.lr_multiplier reaches the optimizer: at 1 instead of 100 the same run ends elsewhere. */
static void test_lr_multiplier_changes_the_run(void **state)
{
    (void)state;
    assert_int_equal(train("x100", "--set train.steps=30"), 0);
    assert_int_equal(train("x1", "--set train.steps=30 --set loss.lr_multiplier=1"), 0);
    assert_true(log_has("x1", "learning rate x 1$"));
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/x100", dir);
    snprintf(b, sizeof b, "%s/x1", dir);
    double diff = tu_model_rel_diff(a, b);
    print_message("  largest relative weight difference, lr_multiplier 100 against 1: %.3g\n", diff);
    assert_true(diff > 1e-3);
}

/* The proxies and their optimizer moments are in the checkpoint: a run SIGKILLed after its
 * first checkpoint and resumed ends with the uninterrupted run's model to the bit. */
static void test_resume_with_proxies_equals_uninterrupted(void **state)
{
    (void)state;
    const char *args = "--set train.steps=3000 --set train.checkpoint_every=20 "
                       "--set train.eval_every=100";
    assert_int_equal(train("whole", args), 0);
    char cmd[4096], path[700];
    command(cmd, sizeof cmd, "killed", args);
    snprintf(path, sizeof path, "%s/killed", dir);
    tu_kill_after_checkpoint(cmd, path);
    snprintf(path, sizeof path, "%s/killed/model.h5", dir);
    struct stat st;
    assert_true(stat(path, &st) != 0); /* it was killed mid-run */
    char resume[600];
    snprintf(resume, sizeof resume, "--resume %s", args);
    assert_int_equal(train("killed", resume), 0);
    assert_true(log_has("killed", "resuming "));
    char whole[600], killed[600];
    snprintf(whole, sizeof whole, "%s/whole", dir);
    snprintf(killed, sizeof killed, "%s/killed", dir);
    tu_assert_same_model(whole, killed);
}

/* Under mpirun every rank computes the global batch's loss, and so the same proxy gradient;
 * rank 0's alone enters the sum. 2 ranks end with the model one process trains, to float
 * rounding, over a short run with the bound of tests/test_mpi.c's. Skipped without mpirun. */
static void test_two_ranks_with_proxies_equal_one_process(void **state)
{
    (void)state;
    if (tu_system("command -v mpirun >/dev/null 2>&1") != 0)
        TU_SKIP("mpirun is not installed");
    tu_mpi_env();
    /* SGD: Adam would hide a proxy gradient counted twice (it is blind to a gradient's scale) */
    const char *args = "--set train.steps=12 --set train.optimizer=sgd --set train.momentum=0.9";
    char cmd[4096];
    assert_int_equal(train("one", args), 0);
    command(cmd, sizeof cmd, "ranks", args);
    assert_int_equal(tu_system("timeout 120 mpirun --oversubscribe --allow-run-as-root -np 2 %s",
                               cmd + strlen("exec ")), 0);
    char one[600], ranks[600];
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(ranks, sizeof ranks, "%s/ranks", dir);
    tu_assert_measured("proxy anchor, 2 ranks vs 1 process", tu_model_rel_diff(one, ranks), 5e-4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_up_on_a_bare_run),
        cmocka_unit_test(test_proxies_are_trained_and_kept_in_the_checkpoint),
        cmocka_unit_test(test_lr_multiplier_changes_the_run),
        cmocka_unit_test(test_resume_with_proxies_equals_uninterrupted),
        cmocka_unit_test(test_two_ranks_with_proxies_equal_one_process),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
