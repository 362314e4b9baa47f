/* The trainer end to end through the dml CLI: the demo config, validation on the test set
 * picking nothing, resume equality after a kill and after SIGINT/SIGTERM, divergence, bad
 * input before anything is written, and defaults fitted to the data. */
#include "tests/testutil.h"

#include <hdf5.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "serve/serve.h"
#include "train/run.h"

#define N_ROWS 600
#define WIDTH 16
#define CLASSES 4 /* Gaussian blobs */

static char dir[256], data[512];

/* Four Gaussian classes in 16-d. */
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

/* dml train on the blobs with the given extra arguments; returns the exit code. */
static int train(const char *out, const char *extra)
{
    return tu_system("%s train configs/demo.yaml --out %s/%s --set data.train=%s --set data.test=%s "
                     "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 "
                     "--set sampler.m=8 --set train.batch_size=32 --set train.threads=1 %s "
                     ">%s/%s.log 2>&1",
                     tu_dml_path(), dir, out, data, data, extra, dir, out);
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

static void test_end_to_end_writes_every_output(void **state)
{
    (void)state;
    assert_int_equal(train("e2e", "--set train.epochs=3"), 0);
    assert_true(file_exists("e2e", "model.h5"));
    assert_true(file_exists("e2e", "checkpoint.h5"));
    assert_true(file_exists("e2e", "metrics.jsonl"));
    assert_true(file_exists("e2e", "report.html"));
    assert_true(log_has("e2e", "final metrics"));
    dml_model_file mf;
    read_model("e2e", &mf);
    assert_int_equal(dml_mlp_dim_in(&mf.net.encoder), WIDTH);
    assert_int_equal(dml_mlp_dim_out(&mf.net.encoder), 8);
    assert_int_equal(mf.pq.m, 2);
    assert_non_null(mf.metrics_json);
    /* Four separated blobs: the trained embedding retrieves its own class. */
    char *p1 = strstr(mf.metrics_json, "\"precision_at_1\": ");
    assert_non_null(p1);
    double precision = atof(p1 + strlen("\"precision_at_1\": "));
    print_message("  blobs: test precision_at_1 %.4f after 3 epochs\n", precision);
    assert_true(precision > 0.95);
    dml_model_file_free(&mf);
}

/* How many lines of the file at path (under the test folder) contain text. */
static int count_lines(const char *path, const char *text)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "grep -c -- '%s' %s/%s", text, dir, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    int n = -1;
    assert_int_equal(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

/* eval_every / checkpoint_every never: one validation and one checkpoint, both at the end;
 * every epoch: one of each per epoch. */
static void test_never_validates_and_checkpoints_only_at_the_end(void **state)
{
    (void)state;
    assert_int_equal(train("never", "--set train.epochs=3 --set train.eval_every=never "
                                    "--set train.checkpoint_every=0"), 0);
    assert_int_equal(count_lines("never/metrics.jsonl", "val_map_at_r"), 1);
    assert_int_equal(count_lines("never.log", "validation map_at_r"), 1);
    assert_true(file_exists("never", "checkpoint.h5"));
    assert_int_equal(train("epochs", "--set train.epochs=3"), 0);
    assert_int_equal(count_lines("epochs/metrics.jsonl", "val_map_at_r"), 3);
}

/* Kill a run at an arbitrary moment after its first checkpoint, resume it, and end with the
 * model an uninterrupted run gives (same seed, same thread count). */
/* The README's demo config itself, shortened, on the Debian package's Fashion-MNIST. */
static void test_demo_config_on_fashion_mnist(void **state)
{
    (void)state;
    if (access("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz", R_OK) != 0)
        TU_SKIP("dataset-fashion-mnist is not installed");
    int rc = tu_system("%s train configs/demo.yaml --out %s/demo --set train.steps=60 "
                       ">%s/demo.log 2>&1", tu_dml_path(), dir, dir);
    assert_int_equal(rc, 0);
    assert_true(log_has("demo", "final metrics on fashion-mnist:test"));
    dml_model_file mf;
    read_model("demo", &mf);
    char *m = strstr(mf.metrics_json, "\"map_at_r\": ");
    assert_non_null(m);
    double map_at_r = atof(m + strlen("\"map_at_r\": "));
    print_message("  demo, 60 steps: test map_at_r %.4f (raw pixels: 0.301)\n", map_at_r);
    assert_true(map_at_r > 0.45);
    dml_model_file_free(&mf);
}

/* dml train into dir/out in the background, exec'ed so that the pid is dml's, with env
 * ("NAME=value ...") added to its environment. */
static pid_t start_training_env(const char *out, const char *env, const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "exec env %s %s train configs/demo.yaml --out %s/%s --set data.train=%s --set data.test=%s "
             "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 "
             "--set sampler.m=8 --set train.batch_size=32 --set train.threads=1 %s "
             ">%s/%s.log 2>&1",
             env, tu_dml_path(), dir, out, data, data, args, dir, out);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static pid_t start_training(const char *out, const char *args)
{
    return start_training_env(out, "", args);
}

/* Waits for the run's first checkpoint: training is then under way (120 s: a loaded machine). */
static void wait_for_checkpoint(const char *out)
{
    char ckpt[700];
    snprintf(ckpt, sizeof ckpt, "%s/%s/checkpoint.h5", dir, out);
    tu_wait_for_file(ckpt, 120);
}

/* The model of dir/a and dir/b: the same to the bit. */
static void assert_same_model(const char *folder_a, const char *folder_b)
{
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/%s", dir, folder_a);
    snprintf(b, sizeof b, "%s/%s", dir, folder_b);
    tu_assert_same_model(a, b);
}

/* With no validation split, validation reads the test set and only reports: nothing is picked
 * by it (no "(best)" in the log), and the model is the last step's, the one a run that never
 * validates ends with. */
static void test_test_set_validation_picks_no_model(void **state)
{
    (void)state;
    const char *common = "--set data.val_fraction=0 --set train.epochs=4";
    char args[200];
    snprintf(args, sizeof args, "%s --set train.eval_every=5", common);
    assert_int_equal(train("on_test", args), 0);
    assert_true(count_lines("on_test.log", "validation map_at_r") > 4);
    assert_int_equal(count_lines("on_test.log", "(best)"), 0);
    snprintf(args, sizeof args, "%s --set train.eval_every=never", common);
    assert_int_equal(train("no_eval", args), 0);
    assert_same_model("on_test", "no_eval");
}

/* The largest difference between two runs' encoder weights (both towers), relative to the
 * largest weight of the layer. */
static double weights_rel_diff(const char *folder_a, const char *folder_b)
{
    dml_model_file a, b;
    read_model(folder_a, &a);
    read_model(folder_b, &b);
    double worst = 0.0;
    const dml_mlp *ta[2] = {&a.net.encoder, &a.net.encoder_b}, *tb[2] = {&b.net.encoder, &b.net.encoder_b};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < ta[t]->n_layers; i++) {
            const dml_tensor *wa = &ta[t]->layers[i].w, *wb = &tb[t]->layers[i].w;
            double big = 0.0, diff = 0.0;
            for (size_t k = 0; k < (size_t)wa->rows * wa->cols; k++) {
                big = fmax(big, fabs(wa->data[k]));
                diff = fmax(diff, fabs((double)wa->data[k] - wb->data[k]));
            }
            worst = fmax(worst, diff / big);
        }
    dml_model_file_free(&a);
    dml_model_file_free(&b);
    return worst;
}

/* GradCache: the batch in chunks of 5 (the last one short) gives the one-shot batch's
 * gradients. With SGD a step moves the weights by lr times the gradient, so after a few steps
 * equal weights (to float rounding) mean equal gradients; one encoder over same-class pairs,
 * two towers over halves, and the same with mined negatives (steps 3 and 4 draw from the pools
 * mined at step 2, their rows embedded in chunks too). The chunks sum in another order: the weights differ by up to
 * 2.9e-7 of their layer's largest weight on any OpenBLAS kernel (docs/testing.md), under a bound
 * over ten times that. (Weight by weight, as tests/test_mpi.c measures, the smallest weights of
 * two towers after these four large SGD steps differ by 3e-4 of themselves.) */
static void test_gradcache_gradients_equal_one_shot(void **state)
{
    (void)state;
    static const char *const setups[3] = {
        "--set loss.type=mnr --set data.pairs=same_class",
        "--set loss.type=mnr --set data.pairs=halves --set model.type=dual",
        "--set loss.type=mnr --set data.pairs=halves --set model.type=dual "
        "--set 'loss.hard_negatives={k: 2, every: 2, candidates: 4}'"};
    static const char *const what[3] = {"GradCache, one encoder: chunks of 5 vs one shot",
                                        "GradCache, two towers: chunks of 5 vs one shot",
                                        "GradCache, mined negatives: chunks of 5 vs one shot"};
    for (int k = 0; k < 3; k++) {
        char args[400], chunked[450];
        snprintf(args, sizeof args, "%s --set train.optimizer=sgd --set train.lr=0.5 "
                                    "--set train.steps=4 --set train.eval_every=never",
                 setups[k]);
        snprintf(chunked, sizeof chunked, "%s --set train.chunk_size=5", args);
        assert_int_equal(train("gc_whole", args), 0);
        assert_int_equal(train("gc_chunks", chunked), 0);
        tu_assert_measured(what[k], weights_rel_diff("gc_whole", "gc_chunks"), 1e-5);
    }
}

#define RESUME_ARGS "--set train.steps=3000 --set train.checkpoint_every=20 --set train.eval_every=100"

/* Trains dir/whole with args, then dir/killed the same way, SIGKILLed after its first checkpoint
 * and resumed: both must end with the same model to the bit. */
static void kill_and_resume(const char *whole, const char *killed, const char *args)
{
    assert_int_equal(train(whole, args), 0);
    pid_t pid = start_training(killed, args);
    wait_for_checkpoint(killed);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_false(file_exists(killed, "model.h5")); /* it was killed mid-run */
    char resume[600];
    snprintf(resume, sizeof resume, "--resume %s", args);
    assert_int_equal(train(killed, resume), 0);
    assert_same_model(whole, killed);
}

static void test_resume_after_kill_equals_uninterrupted(void **state)
{
    (void)state;
    kill_and_resume("whole", "killed", RESUME_ARGS);
}

/* Augmentation draws from its own generator, kept in the checkpoint: a killed and resumed run
 * ends with the uninterrupted one's model, and the augmented run differs from the plain one. */
static void test_augmented_resume_equals_uninterrupted(void **state)
{
    (void)state;
    kill_and_resume("aug_whole", "aug_killed",
                    RESUME_ARGS " --set 'data.augment={noise: 0.3, dropout: 0.1}'");
    dml_model_file a, b;
    read_model("whole", &a);
    read_model("aug_whole", &b);
    const dml_tensor *wa = &a.net.encoder.layers[0].w, *wb = &b.net.encoder.layers[0].w;
    assert_true(memcmp(wa->data, wb->data, (size_t)wa->rows * wa->cols * sizeof(float)) != 0);
    dml_model_file_free(&a);
    dml_model_file_free(&b);
}

/* The cross-batch memory (its rows, labels and ring position) is kept in the checkpoint: a
 * killed and resumed run ends with the uninterrupted one's model. 96 rows of batches of 32
 * wrap around every 3 steps, so the checkpoint catches the ring part-way. */
static void test_memory_resume_equals_uninterrupted(void **state)
{
    (void)state;
    kill_and_resume("mem_whole", "mem_killed",
                    RESUME_ARGS " --set loss.type=contrastive"
                                " --set 'loss.memory={size: 96, start_step: 10}'");
}

#define HARD_NEG_ARGS                                                                              \
    " --set loss.type=mnr --set data.pairs=halves --set model.type=dual --set sampler.type=random"  \
    " --set 'loss.memory={size: 64, start_step: 10}'"

/* Mined hard negatives (with a cross-batch memory's candidates after them): their pools (mined
 * every 7 steps, so the checkpoint every 20 catches them part-way) are in the checkpoint and
 * each step's draw follows from the seed and the step: a killed and resumed run ends with the
 * uninterrupted one's model. And they are used: the model differs from the one trained on the
 * batch's and the memory's negatives alone. */
static void test_hard_negatives_resume_equals_uninterrupted(void **state)
{
    (void)state;
    kill_and_resume("hn_whole", "hn_killed",
                    RESUME_ARGS HARD_NEG_ARGS
                    " --set 'loss.hard_negatives={k: 2, every: 7, candidates: 4}'");
    assert_int_equal(train("hn_none", RESUME_ARGS HARD_NEG_ARGS), 0);
    assert_true(weights_rel_diff("hn_whole", "hn_none") > 1e-3);
}

/* An anchor's pool, by hand: its own positive (search result 3) is never in it, nor candidates
 * whose cosine is above (1 - relative_margin) times the positive's; the rest in search order,
 * up to the pool's size; the searcher's -1 past the end is skipped. */
static void test_hard_negative_pool_drops_the_positive_and_the_margin(void **state)
{
    (void)state;
    const int32_t found[6] = {3, 7, 1, 5, 9, -1};
    const float cosine[6] = {0.99f, 0.9f, 0.8f, 0.6f, 0.5f, INFINITY};
    int32_t pool[6];
    /* 0.9 * 0.99 = 0.891: 7 (0.9) is dropped as a likely positive, 1 (0.8) kept */
    assert_int_equal(dml_hard_negatives_filter(found, cosine, 6, 3, 0.99f, 0.1f, 2, pool), 2);
    assert_int_equal(pool[0], 1);
    assert_int_equal(pool[1], 5);
    assert_int_equal(dml_hard_negatives_filter(found, cosine, 6, 3, 0.99f, 0.1f, 5, pool), 3);
    assert_int_equal(pool[2], 9);
    /* no margin: everything but the positive itself, which scores as much as the bar */
    assert_int_equal(dml_hard_negatives_filter(found, cosine, 6, 3, 0.99f, 0.0f, 5, pool), 4);
    assert_int_equal(pool[0], 7);
    /* a positive scoring below every candidate: none is kept */
    assert_int_equal(dml_hard_negatives_filter(found, cosine, 6, 3, 0.4f, 0.0f, 5, pool), 0);
}

/* SIGINT and SIGTERM (a preemption) write a checkpoint at the next step and exit 128 + the
 * signal; --resume then ends with the uninterrupted run's model. Runs after the kill test,
 * whose uninterrupted run it compares with. */
static void test_signal_checkpoints_then_resume_equals_uninterrupted(void **state)
{
    (void)state;
    const int sigs[] = {SIGINT, SIGTERM};
    const char *outs[] = {"sigint", "sigterm"};
    for (int k = 0; k < 2; k++) {
        pid_t pid = start_training(outs[k], RESUME_ARGS);
        wait_for_checkpoint(outs[k]);
        kill(pid, sigs[k]);
        int status;
        waitpid(pid, &status, 0);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 128 + sigs[k]);
        assert_true(log_has(outs[k], "interrupted at step"));
        assert_false(file_exists(outs[k], "model.h5"));
        char resume[300];
        snprintf(resume, sizeof resume, "--resume %s", RESUME_ARGS);
        assert_int_equal(train(outs[k], resume), 0);
        assert_same_model("whole", outs[k]);
    }
}

/* A second SIGINT does not wait for the checkpoint, and removes its temporary file. The fault
 * injector (tests/fault_preload.c) holds the interrupted run's checkpoint write in fsync for
 * 5 s, so the second signal surely comes while the first one's checkpoint is being written. */
static void test_second_sigint_stops_at_once(void **state)
{
    (void)state;
    char env[1200];
    snprintf(env, sizeof env, "LD_PRELOAD=%s FAULT_MATCH=%s/twice FAULT_CALL=fsync FAULT_NTH=1 "
                              "FAULT_SLEEP_MS=5000 ASAN_OPTIONS=verify_asan_link_order=0",
             tu_fault_lib_path(), dir);
    pid_t pid = start_training_env("twice", env, "--set train.steps=100000 "
                                                 "--set train.checkpoint_every=100000");
    char log[600];
    snprintf(log, sizeof log, "%s/twice.log", dir);
    for (int i = 0; i < 3000 && !log_has("twice", "step 1"); i++) /* under way */
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    kill(pid, SIGINT);
    for (int i = 0; i < 3000 && !log_has("twice", "SIGINT again: stop now"); i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    assert_true(log_has("twice", "SIGINT again: stop now"));
    double t0 = tu_now();
    kill(pid, SIGINT);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGINT);
    assert_true(tu_now() - t0 < 4.0); /* it did not sit out the slow fsync */
    assert_false(file_exists("twice", "checkpoint.h5"));
    /* nor is the checkpoint's temporary file left */
    assert_int_equal(tu_system("! ls -a %s/twice | grep -q '\\.tmp\\.'", dir), 0);
}

static void test_divergence_stops_and_keeps_the_checkpoint(void **state)
{
    (void)state;
    int rc = train("diverge", "--set train.optimizer=sgd --set train.lr=1000 --set train.steps=200 "
                              "--set train.checkpoint_every=1 --set model.output=none "
                              "--set loss.distance=squared_euclidean --set train.schedule=constant");
    assert_int_equal(rc, 1);
    assert_true(log_has("diverge", "diverged"));
    assert_true(file_exists("diverge", "checkpoint.h5"));
    assert_false(file_exists("diverge", "model.h5"));
}

static void test_bad_input_exits_2_before_writing(void **state)
{
    (void)state;
    assert_int_equal(train("bad_k", "--set pq.k=1024"), 2);
    assert_true(log_has("bad_k", "pq.k"));
    assert_false(file_exists("bad_k", "checkpoint.h5"));
    assert_int_equal(
        tu_system("%s train configs/demo.yaml --out %s/missing --set data.train=%s/none.h5 "
                  ">%s/missing.log 2>&1", tu_dml_path(), dir, dir, dir), 2);
    assert_true(log_has("missing", "none.h5"));
    struct stat st;
    char path[700];
    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_not_equal(stat(path, &st), 0); /* not even the run folder */
}

/* A config that sets nothing but its data: every default must fit the 4 classes and the few
 * rows, and say what it chose; a value the user set is refused as before. */
static void test_defaults_fit_the_data(void **state)
{
    (void)state;
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/empty.yaml", dir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fclose(f);
    const char *cmd = "%s train %s --out %s/%s --set data.train=%s --set train.threads=1 "
                      "--set train.epochs=1 %s >%s/%s.log 2>&1";
    assert_int_equal(tu_system(cmd, tu_dml_path(), cfg, dir, "fit", data, "", dir, "fit"), 0);
    assert_true(log_has("fit", "# sampler.m: 64 (batch_size 256 in groups of the default 4 needs "
                               "more classes; the training rows have 4 classes)"));
    assert_true(file_exists("fit", "model.h5"));
    assert_int_equal(tu_system(cmd, tu_dml_path(), cfg, dir, "few", data,
                               "--set data.labels_per_class=20", dir, "few"), 0);
    assert_true(log_has("few", "# train.batch_size: 64 (the default 256 is more than the 80"));
    assert_true(log_has("few", "# sampler.m: 16"));
    assert_int_equal(tu_system(cmd, tu_dml_path(), cfg, dir, "given", data, "--set sampler.m=4",
                               dir, "given"), 2);
    assert_true(log_has("given", "m_per_class needs batch_size / m = 64 classes per batch"));
}

/* An ann-benchmarks file: train and test rows and the test rows' neighbors, no labels. */
static void write_ann(const char *path)
{
    static float x[300 * 8];
    static int32_t nb[50 * 10];
    tu_fill_normal(x, 300 * 8, 1.0f, 3);
    for (int i = 0; i < 50 * 10; i++)
        nb[i] = i % 250;
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const char *names[] = {"train", "test", "neighbors"};
    hsize_t dims[3][2] = {{250, 8}, {50, 8}, {50, 10}};
    const void *bufs[] = {x, x + 250 * 8, nb};
    for (int i = 0; i < 3; i++) {
        hid_t sp = H5Screate_simple(2, dims[i], NULL);
        hid_t ds = H5Dcreate2(f, names[i], i < 2 ? H5T_IEEE_F32LE : H5T_STD_I32LE, sp,
                              H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        assert_true(H5Dwrite(ds, i < 2 ? H5T_NATIVE_FLOAT : H5T_NATIVE_INT32, H5S_ALL, H5S_ALL,
                             H5P_DEFAULT, bufs[i]) >= 0);
        H5Dclose(ds);
        H5Sclose(sp);
    }
    H5Fclose(f);
}

/* With loss.type unset, an autoencoder on data without labels (an ann-benchmarks file, or
 * data.unlabelled) reconstructs them, said in one line; an mlp is refused with what to set. */
static void test_unlabelled_data_default_loss(void **state)
{
    (void)state;
    char cfg[600], ann[600];
    snprintf(cfg, sizeof cfg, "%s/empty.yaml", dir);
    snprintf(ann, sizeof ann, "%s/ann.h5", dir);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fclose(f);
    write_ann(ann);
    const char *cmd = "%s train %s --out %s/%s --set data.train=%s --set train.threads=1 "
                      "--set train.steps=3 --set model.hidden=[16] --set model.dim=4 %s "
                      ">%s/%s.log 2>&1";
    assert_int_equal(tu_system(cmd, tu_dml_path(), cfg, dir, "ae", ann,
                               "--set model.type=autoencoder", dir, "ae"), 0);
    assert_true(log_has("ae", "# loss.type: reconstruction (the training data have no labels"));
    assert_true(file_exists("ae", "model.h5"));
    assert_int_equal(tu_system(cmd, tu_dml_path(), cfg, dir, "ae_unl", data,
                               "--set model.type=autoencoder --set data.unlabelled=true", dir,
                               "ae_unl"), 0);
    assert_true(file_exists("ae_unl", "model.h5"));
    assert_int_equal(tu_system(cmd, tu_dml_path(), cfg, dir, "mlp", ann, "", dir, "mlp"), 2);
    assert_true(log_has("mlp", "loss.type: the default loss (triplet) needs labels, and"));
    assert_true(log_has("mlp", "set model.type to autoencoder"));
}

/* train.threads: a step's products are split into one block of rows or columns per thread, and
 * the same count gives the same model to the bit, run after run (the passes' chunks, taken in
 * turn by whichever thread is free, do the same arithmetic on any thread). Another count changes
 * the blocks: under SkylakeX the bits stay the same, but under OpenBLAS's Haswell and Zen kernels
 * a block boundary inside a register tile sums another way, so the model moves at the rounding
 * level, bounded here. 784 inputs and batch 256 make every layer's product a split one; SGD,
 * as Adam's first steps turn a rounding-sized gradient into a learning-rate-sized step. */
static void test_thread_count_changes_the_model_only_at_rounding(void **state)
{
    (void)state;
    char wide[512];
    snprintf(wide, sizeof wide, "%s/wide.h5", dir);
    tu_write_blobs(wide, 512, 784, 4);
    static const char *const runs[4] = {"threads1", "threads2", "threads3", "threads2_again"};
    static const int threads[4] = {1, 2, 3, 2};
    for (int t = 0; t < 4; t++) {
        char args[1400];
        snprintf(args, sizeof args, "--set data.train=%s --set data.test=%s --set model.hidden=[512] "
                 "--set model.dim=128 --set train.batch_size=256 --set sampler.m=64 "
                 "--set train.steps=6 --set train.eval_every=never --set train.optimizer=sgd "
                 "--set train.lr=0.1 --set train.threads=%d",
                 wide, wide, threads[t]);
        assert_int_equal(train(runs[t], args), 0);
    }
    assert_same_model("threads2", "threads2_again");
    tu_assert_measured("6 steps on 2 threads against 1, largest weight difference / largest weight",
                       weights_rel_diff("threads1", "threads2"), 1e-5);
    tu_assert_measured("6 steps on 3 threads against 1, largest weight difference / largest weight",
                       weights_rel_diff("threads1", "threads3"), 1e-5);
}

/* Augmentation runs on dml's threads, each row from its own generator (the batch's draw and the
 * row's index) with its own row of scratch. With every product under the split (a 16-wide
 * layer), the encoder is the same to the bit on 1, 2 and 3 threads; 64 rows of 784 are enough
 * to hand the rows out. (The PQ codebooks, fitted after training over every row's embedding,
 * come from products that are split, so they may differ at the rounding level.) */
static void test_augmented_model_same_on_any_thread_count(void **state)
{
    (void)state;
    char wide[512];
    snprintf(wide, sizeof wide, "%s/wide_aug.h5", dir);
    tu_write_blobs(wide, 256, 784, 4);
    static const char *const runs[3] = {"aug_threads1", "aug_threads2", "aug_threads3"};
    for (int t = 0; t < 3; t++) {
        char args[1400];
        snprintf(args, sizeof args, "--set data.train=%s --set data.test=%s --set model.hidden=[16] "
                 "--set model.dim=8 --set train.batch_size=64 --set sampler.m=16 "
                 "--set train.steps=4 --set train.eval_every=never --set train.threads=%d "
                 "--set 'data.augment={height: 28, width: 28, shift: 2, rotate: 10, noise: 0.2, "
                 "dropout: 0.1}'",
                 wide, wide, t + 1);
        assert_int_equal(train(runs[t], args), 0);
    }
    dml_model_file one;
    read_model("aug_threads1", &one);
    for (int t = 1; t < 3; t++) {
        dml_model_file many;
        read_model(runs[t], &many);
        assert_int_equal(many.net.encoder.n_layers, one.net.encoder.n_layers);
        for (int i = 0; i < one.net.encoder.n_layers; i++) {
            const dml_linear *a = &one.net.encoder.layers[i], *b = &many.net.encoder.layers[i];
            assert_memory_equal(a->w.data, b->w.data, (size_t)a->w.rows * a->w.cols * sizeof(float));
            assert_memory_equal(a->b.data, b->b.data, (size_t)a->b.cols * sizeof(float));
        }
        dml_model_file_free(&many);
    }
    dml_model_file_free(&one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_end_to_end_writes_every_output),
        cmocka_unit_test(test_never_validates_and_checkpoints_only_at_the_end),
        cmocka_unit_test(test_test_set_validation_picks_no_model),
        cmocka_unit_test(test_demo_config_on_fashion_mnist),
        cmocka_unit_test(test_resume_after_kill_equals_uninterrupted),
        cmocka_unit_test(test_augmented_resume_equals_uninterrupted),
        cmocka_unit_test(test_memory_resume_equals_uninterrupted),
        cmocka_unit_test(test_gradcache_gradients_equal_one_shot),
        cmocka_unit_test(test_hard_negatives_resume_equals_uninterrupted),
        cmocka_unit_test(test_hard_negative_pool_drops_the_positive_and_the_margin),
        cmocka_unit_test(test_signal_checkpoints_then_resume_equals_uninterrupted),
        cmocka_unit_test(test_second_sigint_stops_at_once),
        cmocka_unit_test(test_divergence_stops_and_keeps_the_checkpoint),
        cmocka_unit_test(test_bad_input_exits_2_before_writing),
        cmocka_unit_test(test_defaults_fit_the_data),
        cmocka_unit_test(test_unlabelled_data_default_loss),
        cmocka_unit_test(test_thread_count_changes_the_model_only_at_rounding),
        cmocka_unit_test(test_augmented_model_same_on_any_thread_count),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
