/* model.head, the projection head between the encoder and the training loss (SimCLR's), through
 * the dml CLI on Gaussian blobs: model.h5 holds the encoder alone, of the no-head model's shapes;
 * the head changes what the encoder learns; it is kept in checkpoint.h5, and a killed and resumed
 * run ends with the uninterrupted run's model to the bit; 2 ranks under mpirun train the model
 * one process does; combinations it cannot serve are config errors naming model.head.
 *
 * No finite-difference check here: the head is a dml_mlp (dml_dense_relu, dml_dense, then
 * dml_l2_normalize), ops whose gradients tests/test_nn_ops.c and tests/test_nn_mlp.c check; it
 * adds no op. */
#include "tests/testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/serve.h"

#define N_ROWS 600
#define WIDTH 16
#define CLASSES 4 /* Gaussian blobs */

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

#define BASE_ARGS                                                                                  \
    "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 --set sampler.m=8 "     \
    "--set train.batch_size=32 --set train.threads=1"

/* SimCLR on the blobs: two noisy views of each row, NT-Xent. */
#define SIMCLR_ARGS                                                                                \
    "--set data.unlabelled=true --set data.pairs=augment --set 'data.augment={noise: 0.3}' "     \
    "--set loss.type=mnr --set loss.symmetric=true --set loss.scale=10 --set sampler.type=random"

/* The command that trains configs/demo.yaml on the blobs into dir/out with extra arguments. */
static void command(char *cmd, size_t n, const char *out, const char *extra)
{
    tu_demo_train_command(cmd, n, dir, out, data, BASE_ARGS, extra);
}

static int train(const char *out, const char *extra)
{
    char cmd[4096];
    command(cmd, sizeof cmd, out, extra);
    return tu_system("%s", cmd);
}

static int file_exists(const char *folder, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s/%s", dir, folder, name);
    struct stat st;
    return stat(path, &st) == 0;
}

static int log_has(const char *out, const char *text)
{
    return tu_system("grep -q -- '%s' %s/%s.log", text, dir, out) == 0;
}

static void read_model(const char *folder, dml_model_file *mf)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s/model.h5", dir, folder);
    dml_error err = {0};
    assert_int_equal(dml_model_file_read(path, mf, &err), DML_OK);
}

/* The shape of checkpoint.h5's dataset name in dir/folder: 1 with its element count, 0 when
 * there is none. */
static int checkpoint_has(const char *folder, const char *name, hssize_t *n)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s/checkpoint.h5", dir, folder);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    int found = H5Lexists(f, name, H5P_DEFAULT) > 0;
    if (found) {
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), space = H5Dget_space(ds);
        *n = H5Sget_simple_extent_npoints(space);
        H5Sclose(space);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return found;
}

/* Embeddings of rows x[n, WIDTH] by a model file's encoder, into out[n, dim] (the input
 * normalisation left out: the same rows go through both encoders compared). */
static void embed(const dml_model_file *mf, const float *x, int n, float *out)
{
    dml_graph g;
    dml_graph_init(&g, 1u << 20);
    dml_tensor *z = dml_mlp_forward(&g, &mf->net.encoder, dml_leaf(&g, (float *)x, NULL, n, WIDTH));
    assert_non_null(z);
    memcpy(out, z->data, (size_t)n * z->cols * sizeof(float));
    dml_graph_free(&g);
}

/* With a head, model.h5 holds the encoder alone, its shapes those of the run without it, and
 * the checkpoint holds the head; the encoder learned something else (for the loss on a head's
 * output and for one on the encoder's own). Both the SimCLR path (augment pairs, mnr) and a
 * labelled loss (triplet). */
static void test_model_holds_the_encoder_alone(void **state)
{
    (void)state;
    static const char *const setups[2] = {SIMCLR_ARGS, "--set loss.type=triplet"};
    for (int k = 0; k < 2; k++) {
        char plain[600], head[700];
        snprintf(plain, sizeof plain, "%s --set train.epochs=3", setups[k]);
        snprintf(head, sizeof head, "%s --set model.head=[24,6]", plain);
        assert_int_equal(train("plain", plain), 0);
        assert_int_equal(train("head", head), 0);
        assert_true(log_has("head", "  head: \\[24, 6\\]"));
        dml_model_file a, b;
        read_model("plain", &a);
        read_model("head", &b);
        assert_int_equal(b.net.encoder.n_layers, a.net.encoder.n_layers);
        for (int i = 0; i < a.net.encoder.n_layers; i++) {
            assert_int_equal(b.net.encoder.layers[i].w.rows, a.net.encoder.layers[i].w.rows);
            assert_int_equal(b.net.encoder.layers[i].w.cols, a.net.encoder.layers[i].w.cols);
        }
        assert_int_equal(dml_mlp_dim_out(&b.net.encoder), 8);
        assert_int_equal(b.net.decoder.n_layers, 0);
        assert_int_equal(b.net.encoder_b.n_layers, 0);
        assert_int_equal(b.pq.d, 8); /* the codebooks quantize the encoder's output */
        /* the same rows through both encoders */
        float x[8 * WIDTH], za[8 * 8], zb[8 * 8];
        tu_fill_normal(x, sizeof x / sizeof x[0], 1.0f, 7);
        embed(&a, x, 8, za);
        embed(&b, x, 8, zb);
        double diff = 0.0;
        for (int i = 0; i < 8 * 8; i++)
            diff = fmax(diff, fabs((double)za[i] - zb[i]));
        print_message("  %s: largest embedding difference with and without the head %.3f\n",
                      k ? "triplet" : "simclr", diff);
        assert_true(diff > 0.01);
        dml_model_file_free(&a);
        dml_model_file_free(&b);
        hssize_t n = 0;
        assert_true(checkpoint_has("head", "head_000_w", &n));
        assert_int_equal(n, 24 * 8);
        assert_true(checkpoint_has("head", "head_001_w", &n));
        assert_int_equal(n, 6 * 24);
        assert_true(checkpoint_has("head", "head_001_b", &n));
        assert_int_equal(n, 6);
        assert_false(checkpoint_has("plain", "head_000_w", &n));
    }
}

/* The head's weights and its optimizer moments are in the checkpoint: a SimCLR run with a head,
 * SIGKILLed after its first checkpoint and resumed, ends with the uninterrupted run's model to
 * the bit. */
static void test_resume_with_a_head_equals_uninterrupted(void **state)
{
    (void)state;
    const char *args = SIMCLR_ARGS " --set model.head=[24,6] --set train.steps=3000 "
                                   "--set train.checkpoint_every=20 --set train.eval_every=100";
    assert_int_equal(train("whole", args), 0);
    char cmd[4096], path[700];
    command(cmd, sizeof cmd, "killed", args);
    snprintf(path, sizeof path, "%s/killed", dir);
    tu_kill_after_checkpoint(cmd, path);
    assert_false(file_exists("killed", "model.h5")); /* it was killed mid-run */
    char resume[600];
    snprintf(resume, sizeof resume, "--resume %s", args);
    assert_int_equal(train("killed", resume), 0);
    assert_true(log_has("killed", "resuming "));
    char whole[600], killed[600];
    snprintf(whole, sizeof whole, "%s/whole", dir);
    snprintf(killed, sizeof killed, "%s/killed", dir);
    tu_assert_same_model(whole, killed);
}

/* Under mpirun each rank runs the head on its own rows before the batch is gathered (and so
 * backpropagates only those): 2 ranks end with the model one process trains, to float rounding,
 * over a short run with the bound of tests/test_mpi.c's (which says why). Skipped without
 * mpirun. */
static void test_two_ranks_with_a_head_equal_one_process(void **state)
{
    (void)state;
    if (tu_system("command -v mpirun >/dev/null 2>&1") != 0)
        TU_SKIP("mpirun is not installed");
    tu_mpi_env();
    const char *args = SIMCLR_ARGS " --set model.head=[24,6] --set train.steps=12";
    char cmd[4096];
    assert_int_equal(train("one", args), 0);
    command(cmd, sizeof cmd, "ranks", args);
    assert_int_equal(tu_system("timeout 120 mpirun --oversubscribe --allow-run-as-root -np 2 %s",
                               cmd + strlen("exec ")), 0);
    char one[600], ranks[600];
    snprintf(one, sizeof one, "%s/one", dir);
    snprintf(ranks, sizeof ranks, "%s/ranks", dir);
    tu_assert_measured("projection head, 2 ranks vs 1 process", tu_model_rel_diff(one, ranks),
                       5e-4);
}

/* What a head cannot serve is refused before anything is written, exit 2, with the config's
 * position of model.head and the key. */
static void test_refused_combinations_name_model_head(void **state)
{
    (void)state;
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/head.yaml", dir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fprintf(f, "name: head\nmodel:\n  head: [16, 8]\n");
    fclose(f);
    static const struct {
        const char *set, *message;
    } cases[] = {
        {"--set model.type=autoencoder --set loss.type=reconstruction",
         "head.yaml:3:9: model.head: a projection head feeds a metric loss, and reconstruction "
         "has none"},
        {"--set 'loss.quantization={weight: 0.1}'",
         "head.yaml:3:9: model.head: the joint quantization loss would quantize the head"},
        {"--set loss.type=mnr --set data.pairs=same_class --set train.chunk_size=8",
         "head.yaml:3:9: model.head: GradCache chunks (train.chunk_size) do not run a projection "
         "head"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = tu_system("%s train %s --out %s/refused --set data.train=%s --set data.test=%s %s "
                           ">%s/refused.log 2>&1",
                           tu_dml_path(), cfg, dir, data, data, cases[i].set, dir);
        assert_int_equal(rc, 2);
        if (!log_has("refused", cases[i].message)) {
            tu_system("cat %s/refused.log", dir);
            fail_msg("expected: %s", cases[i].message);
        }
        assert_false(file_exists("refused", ""));
    }
    /* a bad width names its entry */
    assert_int_equal(train("bad", "--set model.head=[16,0]"), 2);
    assert_true(log_has("bad", "model.head\\[1\\]: expected an integer in 1..65536, got \"0\""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_holds_the_encoder_alone),
        cmocka_unit_test(test_resume_with_a_head_equals_uninterrupted),
        cmocka_unit_test(test_two_ranks_with_a_head_equal_one_process),
        cmocka_unit_test(test_refused_combinations_name_model_head),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
