/* Data-parallel training under mpirun, over loopback on this machine (docs/scale.md): 2 and 3
 * ranks end with the model one process trains, for each coupled loss; resume after a rank is
 * killed; training rows read in blocks, each rank reading and keeping only its share (the
 * model, resume, the rows a rank holds); the errors that name a rank (a changed config on
 * --resume, a locked run folder); the gradient allreduce overlapped with backward;
 * dml encode sharded over the ranks. Skipped (with a note) when mpirun is not installed.
 * As root, where network namespaces can be made: bench/cluster.py's 2-rank smoke over a cluster
 * of namespaces, and bench/cluster.sh leaving none behind when its run fails or is stopped. */
#include "tests/testutil.h"

#include <fcntl.h>
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

#define N_ROWS 600
#define BIG_ROWS 6000 /* read in blocks: three block-random windows (STREAMED below) */
#define WIDTH 16
#define CLASSES 4

/* Ranks and one process sum the same gradients in other orders, so their models differ by
 * rounding, which grows with every step (and through the cross-batch memory, which feeds each
 * step's rounding into the next) until it says nothing about the code: after 1500 steps,
 * 1.5e-4 under OpenBLAS's SkylakeX kernel against 3.1e-5 under Zen. So each loss is compared
 * over a short run, where the difference stays rounding's own size, under a bound at least ten
 * times the largest difference measured on any kernel: 4.2e-5 (mnr with memory, 3 ranks,
 * Haswell and Zen), the rest 1.7e-5 or less, on Nehalem, Sandybridge, Haswell, Zen, SkylakeX
 * and Cooperlake (make test-kernels prints them; docs/testing.md has the table). A learning
 * rate 2% off, the size of a rank losing one row of the 48, is 0.3 away after these 12 steps.
 * Long runs are compared bit for bit with the same ranks' own uninterrupted run, and with one
 * process on their metrics. */
#define SHORT_STEPS "--set train.steps=12 " /* one epoch of 11 batches, and a step of the next */
#define REL_TOL 5e-4

/* CI runs as root, and 3 ranks on 2 cores oversubscribe. */
#define MPIRUN "mpirun --oversubscribe --allow-run-as-root"
/* Ranks that disagreed on a collective would wait for each other for ever: a hang fails. */
#define MPIRUN_T "timeout 120 " MPIRUN

static char dir[256], data[512], data2[512], queries[512], ties[512], big[512];
static char dml[1024], config[1024]; /* absolute: some ranks run in other folders */

/* n rows of four Gaussian classes in 16-d as X/y in an HDF5 file; shift moves every value
 * (other data). */
#define N_QUERIES 3000 /* three of eval's 1024-query search blocks */
static void write_xy(const char *path, const float *x, const int32_t *y, int n);
static void write_blobs(const char *path, int n, float shift)
{
    static float x[N_QUERIES * WIDTH], centers[CLASSES * WIDTH];
    static int32_t y[N_QUERIES];
    tu_fill_normal(centers, CLASSES * WIDTH, 2.0f, 1);
    tu_fill_normal(x, (size_t)n * WIDTH, 1.0f, 2);
    for (int i = 0; i < n; i++) {
        y[i] = i % CLASSES;
        for (int j = 0; j < WIDTH; j++)
            x[i * WIDTH + j] += centers[y[i] * WIDTH + j] + shift;
    }
    write_xy(path, x, y, n);
}

/* X[n, WIDTH] and y[n] into an HDF5 file. */
static void write_xy(const char *path, const float *x, const int32_t *y, int n)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dx[2] = {(hsize_t)n, WIDTH}, dy[1] = {(hsize_t)n};
    hid_t sx = H5Screate_simple(2, dx, NULL), sy = H5Screate_simple(1, dy, NULL);
    hid_t ds = H5Dcreate2(f, "X", H5T_IEEE_F32LE, sx, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    ds = H5Dcreate2(f, "y", H5T_STD_I32LE, sy, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, y);
    H5Dclose(ds);
    H5Sclose(sx);
    H5Sclose(sy);
    H5Fclose(f);
}

/* TIES rows in three equal thirds: row j + TIES / 3 and row j + 2 TIES / 3 are row j's
 * features, the first with its label, the second with the next label. Every row's two twins
 * tie, and which comes first decides precision_at_1, so a ranking that does not break ties by
 * the lower row, as one process does, gets other numbers. 300 rows are two 256-row slices: of 3
 * ranks, rank 0 holds none, and rank 2's rows [256, 300) are twins of rank 1's. */
#define TIES 300
static void write_ties(const char *path)
{
    static float x[TIES * WIDTH];
    static int32_t y[TIES];
    int third = TIES / 3;
    write_blobs(path, third, 0.0f); /* its first rows, read back */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "X", H5P_DEFAULT);
    H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    H5Dclose(ds);
    H5Fclose(f);
    for (int j = 0; j < third; j++) {
        y[j] = y[j + third] = j % CLASSES;
        y[j + 2 * third] = (j + 1) % CLASSES;
        memcpy(x + (size_t)(j + third) * WIDTH, x + (size_t)j * WIDTH, WIDTH * sizeof *x);
        memcpy(x + (size_t)(j + 2 * third) * WIDTH, x + (size_t)j * WIDTH, WIDTH * sizeof *x);
    }
    write_xy(path, x, y, TIES);
}

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/blobs.h5", dir);
    snprintf(data2, sizeof data2, "%s/blobs2.h5", dir);
    snprintf(queries, sizeof queries, "%s/queries.h5", dir);
    snprintf(ties, sizeof ties, "%s/ties.h5", dir);
    snprintf(big, sizeof big, "%s/big.h5", dir);
    tu_write_blobs(big, BIG_ROWS, WIDTH, CLASSES);
    write_blobs(data, N_ROWS, 0.0f);
    write_blobs(data2, N_ROWS, 0.5f);
    write_blobs(queries, N_QUERIES, 0.0f);
    write_ties(ties);
    tu_mpi_env();
    char *d = realpath(tu_dml_path(), NULL), *c = realpath("configs/demo.yaml", NULL);
    if (!d || !c || strlen(d) >= sizeof dml || strlen(c) >= sizeof config)
        return -1;
    snprintf(dml, sizeof dml, "%s", d);
    snprintf(config, sizeof config, "%s", c);
    free(d);
    free(c);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_system("rm -rf '%s'", dir);
    return 0;
}

static int have_mpirun(void)
{
    return tu_system("command -v mpirun >/dev/null 2>&1") == 0;
}

/* The training arguments every run shares: a global batch of 48 (divisible by 2 and 3). */
#define ARGS "%s --set data.train=%s --set data.test=%s --set model.hidden=[32] " \
             "--set model.dim=8 --set pq.m=2 --set pq.k=16 --set sampler.m=12 "               \
             "--set train.batch_size=48 --set train.threads=1 --set train.steps=40 "

/* dml train into dir/out on np ranks (np 0: plain dml, no mpirun); returns the exit code. */
static int train(int np, const char *out, const char *extra)
{
    char launcher[256] = "";
    if (np > 0)
        snprintf(launcher, sizeof launcher, MPIRUN_T " -np %d", np);
    return tu_system("%s %s train " ARGS "--out %s/%s %s >%s/%s.log 2>&1", launcher, dml,
                     config, data, data, dir, out, extra, dir, out);
}

static int log_has(const char *out, const char *text)
{
    return tu_system("grep -q -- '%s' %s/%s.log", text, dir, out) == 0;
}

static int file_exists(const char *folder, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s/%s", dir, folder, name);
    struct stat st;
    return stat(path, &st) == 0;
}

/* dir/folder, for the test helpers that take a run folder. */
static const char *run_path(const char *folder)
{
    static char path[2][700];
    static int turn;
    turn = !turn;
    snprintf(path[turn], sizeof path[turn], "%s/%s", dir, folder);
    return path[turn];
}

static double model_rel_diff(const char *folder_a, const char *folder_b)
{
    return tu_model_rel_diff(run_path(folder_a), run_path(folder_b));
}

/* One process, then 2 and 3 ranks, of one loss over a short run (extra may set more steps):
 * the same model within tol. */
static void check_loss_within(const char *name, const char *extra, double tol)
{
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed (make deps installs openmpi-bin)");
    char one[64], many[64], args[512];
    snprintf(one, sizeof one, "%s_1", name);
    snprintf(args, sizeof args, SHORT_STEPS "%s", extra);
    extra = args;
    assert_int_equal(train(0, one, extra), 0);
    for (int np = 2; np <= 3; np++) {
        snprintf(many, sizeof many, "%s_%d", name, np);
        assert_int_equal(train(np, many, extra), 0);
        char what[96];
        snprintf(what, sizeof what, "%s, %d ranks vs 1 process", name, np);
        tu_assert_measured(what, model_rel_diff(one, many), tol);
    }
}

static void check_loss(const char *name, const char *extra)
{
    check_loss_within(name, extra, REL_TOL);
}

/* Augmented batches move the weights further each step, and rounding with them. Measured: 2.9e-6
 * and 7e-6 with today's augmentation draws, but 3.9e-3 (augment, 3 ranks) with an earlier
 * generator, whose runs agreed to 6e-8 up to step 30 until one hinge (a triplet at the margin,
 * or a unit at relu's zero) went the other way under another reduction order: any change of
 * draws can bring such a flip back. A rank that drew other augmentations (noise 0.11 for 0.1)
 * was 1.8 away (measured by hand), so this still tells them apart. */
#define AUGMENT_TOL 1e-2

static void test_triplet_equals_one_process(void **state)
{
    (void)state;
    check_loss("triplet", "");
}

static void test_contrastive_equals_one_process(void **state)
{
    (void)state;
    check_loss("contrastive", "--set loss.type=contrastive");
}

/* The losses over cosines of the global batch: every rank's rows are paired with every other
 * rank's, and the MS miner chooses over all of them. */
static void test_multi_similarity_equals_one_process(void **state)
{
    (void)state;
    check_loss("multi_similarity", "--set loss.type=multi_similarity");
}

/* Circle's default gamma 80 scales every cosine's rounding into its softmax weights (measured
 * 9.3e-5 and 1.4e-4 sharded on 2 and 3 ranks, docs/scale.md): too close to the bound to hold on
 * every kernel. What is tested here is the ranks' bookkeeping, so gamma 16 keeps rounding out of
 * it; the sharded arithmetic at gamma 80 is checked in one process (tests/test_losses.c's two
 * shards against the whole loss). */
static void test_circle_equals_one_process(void **state)
{
    (void)state;
    check_loss("circle", "--set loss.type=circle --set loss.gamma=16");
}

/* Supervised contrastive over the global batch, on labels and on two views: a rank's rows of
 * each view are its anchors, ranked among every row of both. On labels at the default
 * temperature 0.1 rounding measured 9.0e-5 (2 ranks), too near the bound for every kernel; 0.5
 * keeps the ranks' bookkeeping what is tested (the sharded arithmetic at 0.1 is checked in one
 * process, tests/test_losses.c). */
static void test_supcon_equals_one_process(void **state)
{
    (void)state;
    check_loss("supcon", "--set loss.type=supcon --set loss.temperature=0.5");
    check_loss("supcon_views", "--set loss.type=supcon --set data.pairs=same_class");
}

static void test_cosine_pair_equals_one_process(void **state)
{
    (void)state;
    check_loss("cosine_pair", "--set loss.type=cosine_pair");
}

static void test_mnr_equals_one_process(void **state)
{
    (void)state;
    check_loss("mnr", "--set loss.type=mnr --set data.pairs=same_class");
}

/* The sharded losses' other miners and forms (docs/scale.md, "The sharded loss"): each rank mines
 * its own anchors' triplets among every gathered row, and MNR's symmetric terms rank this rank's
 * positives among every anchor. */
static void test_sharded_miners_equal_one_process(void **state)
{
    (void)state;
    check_loss("triplet_hard", "--set loss.miner=hard");
    check_loss("triplet_semihard", "--set loss.miner=semihard");
    check_loss("mnr_symmetric", "--set loss.type=mnr --set data.pairs=same_class "
                                "--set loss.symmetric=true");
    check_loss("mnr_unmasked", "--set loss.type=mnr --set data.pairs=same_class "
                               "--set loss.mask_same_label=false");
}

/* The bytes of a step's arena the metric loss took on a rank, as the trainer logs them from out's
 * run (every rank the same, their shards being equal); 0 when not logged. */
static double loss_bytes(const char *out)
{
    char path[700], line[512];
    snprintf(path, sizeof path, "%s/%s.log", dir, out);
    FILE *f = fopen(path, "r");
    size_t bytes = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "# the metric loss took at most %zu bytes", &bytes) == 1)
            break;
    if (f)
        fclose(f);
    return (double)bytes;
}

/* A sharded loss holds a rank's anchors' rows against every candidate (b x B distances, their
 * gradient and the op's scratch), where the whole loss held B x B on every rank: its memory on
 * each of N ranks, times N, is one process's within bound (at a global batch of 192; the O(B)
 * terms, the gathered embeddings and norms, keep it over 1). */
static void check_loss_memory(const char *name, const char *extra, double bound)
{
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    char one[64], many[64], args[512], what[128];
    snprintf(args, sizeof args, "--set train.batch_size=192 --set sampler.m=48 "
                                "--set train.steps=2 %s", extra);
    snprintf(one, sizeof one, "%s_bytes_1", name);
    assert_int_equal(train(0, one, args), 0);
    double bytes_one = loss_bytes(one);
    assert_true(bytes_one > 0.0);
    printf("  measured %s loss memory, 1 process: %.0f bytes\n", name, bytes_one);
    for (int np = 2; np <= 4; np *= 2) {
        snprintf(many, sizeof many, "%s_bytes_%d", name, np);
        assert_int_equal(train(np, many, args), 0);
        double bytes = loss_bytes(many);
        printf("  measured %s loss memory, %d ranks: %.0f bytes a rank\n", name, np, bytes);
        snprintf(what, sizeof what, "%s loss memory x %d ranks / one process's", name, np);
        assert_true(bytes > 0.0);
        tu_assert_measured(what, bytes * np / bytes_one, bound);
    }
}

static void test_sharded_loss_memory_falls_with_the_ranks(void **state)
{
    (void)state;
    check_loss_memory("triplet", "", 1.3);
    check_loss_memory("mnr", "--set loss.type=mnr --set data.pairs=same_class", 1.3);
    check_loss_memory("multi_similarity", "--set loss.type=multi_similarity", 1.3);
    check_loss_memory("circle", "--set loss.type=circle", 1.3);
    check_loss_memory("supcon", "--set loss.type=supcon --set data.pairs=same_class", 1.3);
    check_loss_memory("cosine_pair", "--set loss.type=cosine_pair", 1.3);
    /* One process walks the columns of its B x B similarities for the symmetric terms; a rank
     * holds its positives' rows against every anchor as a second b x B matrix (and its
     * gradient): 6 b B floats where one process holds 4 B^2, so N ranks x their memory is 1.5
     * of one process's. */
    check_loss_memory("mnr_symmetric", "--set loss.type=mnr --set data.pairs=same_class "
                                       "--set loss.symmetric=true", 1.5 * 1.3);
}

/* Every rank pushes the gathered batch into its cross-batch memory, so the rings, and the
 * model, stay those of one process. */
static void test_memory_equals_one_process(void **state)
{
    (void)state;
    check_loss("contrastive_memory", "--set loss.type=contrastive "
                                     "--set 'loss.memory={size: 64, start_step: 3}'");
    check_loss("mnr_memory", "--set loss.type=mnr --set data.pairs=same_class "
                             "--set 'loss.memory={size: 64, start_step: 3}'");
    check_loss("triplet_memory", "--set 'loss.memory={size: 64, start_step: 3}'");
}

/* The gradient allreduce overlapped with backward (train.allreduce_bucket_mb, docs/scale.md):
 * buckets of 1 KB split this model (16-32-8, 3.4 KB of gradients) into one per parameter
 * tensor or two, started from backward's hook. Two ranks sum each element as a + b whatever
 * the call, so the model is the blocking run's bit for bit; three ranks (OpenMPI's
 * nonblocking collectives may add in another order) and Proxy Anchor's proxies (rank 0's
 * class-row gradient alone enters the sum) equal one process within today's bound. */
#define OVERLAP "--set train.allreduce_bucket_mb=0.001 "
static void test_overlapped_allreduce_equals_blocking(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed (make deps installs openmpi-bin)");
    /* a projection head, two towers with mined negatives, an autoencoder: other tapes */
    const char *models[] = {
        "",
        "--set model.head=[16]",
        "--set loss.type=mnr --set data.pairs=halves --set model.type=dual "
        "--set sampler.type=random --set 'loss.hard_negatives={k: 2, every: 4, candidates: 4}'",
        "--set model.type=autoencoder --set loss.reconstruction_weight=0.5",
    };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        char args[512];
        snprintf(args, sizeof args, SHORT_STEPS "%s", models[i]);
        assert_int_equal(train(2, "blocking_2", args), 0);
        snprintf(args, sizeof args, SHORT_STEPS OVERLAP "%s", models[i]);
        assert_int_equal(train(2, "overlap_2", args), 0);
        if (model_rel_diff("blocking_2", "overlap_2") != 0.0)
            fail_msg("overlapped and blocking differ with %s", models[i]);
    }
    check_loss("overlap", OVERLAP);
    check_loss("proxy_anchor_overlap", OVERLAP "--set loss.type=proxy_anchor");
}

/* Mined hard negatives: rank 0 mines (at steps 4 and 8) and sends the pools, every rank draws
 * the same negatives and embeds its own anchors' share. Measured by hand: 7.6e-8 with 2 ranks
 * (and the hard negatives move the model by 5.7e-3 against in-batch negatives alone). */
static void test_hard_negatives_equal_one_process(void **state)
{
    (void)state;
    check_loss("mnr_hard_negatives", "--set loss.type=mnr --set data.pairs=halves "
                                     "--set model.type=dual --set sampler.type=random "
                                     "--set 'loss.hard_negatives={k: 2, every: 4, candidates: 4}'");
}

/* The joint loss: codebooks from step 11 (one epoch of warm-up), refitted every epoch: two
 * epochs and a step, so that a refit is compared. */
static void test_joint_quantization_equals_one_process(void **state)
{
    (void)state;
    check_loss("joint", "--set loss.quantization.weight=0.5 --set train.steps=23");
}

/* data.augment draws from its own generator row by row: every rank augments the whole global
 * batch, so the rows it keeps are augmented as one process augments them. */
static void test_augmented_triplet_equals_one_process(void **state)
{
    (void)state;
    check_loss_within("augment", "--set data.augment.rotate=15 --set data.augment.noise=0.1",
                      AUGMENT_TOL);
}

/* SimCLR-style pairs: two augmented views of each row through one encoder, in-batch negatives. */
static void test_augment_pairs_mnr_equals_one_process(void **state)
{
    (void)state;
    check_loss_within("mnr_augment", "--set loss.type=mnr --set data.pairs=augment "
                                     "--set data.augment.noise=0.2 --set data.augment.dropout=0.1",
                      AUGMENT_TOL);
}

/* The final codebooks' k-means over the ranks (each embeds and assigns its shard of whole
 * 1024-row blocks, the k-means++ start drawn over the ranks, the sums allreduced) on the
 * embeddings of one untrained model (lr 1e-30: no weight moves in float), so that only the
 * k-means differs from one process: the same codewords, measured bit for bit here. The 600 rows
 * are one block, all on rank 0 (the others hold none); the 3000 are three, on every rank. */
static void test_kmeans_over_ranks_equals_one_process(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
#define FROZEN "--set train.steps=2 --set train.lr=1e-30"
    char frozen[2][700];
    snprintf(frozen[0], sizeof frozen[0], FROZEN);
    snprintf(frozen[1], sizeof frozen[1], FROZEN " --set data.train=%s", queries);
    for (int set = 0; set < 2; set++) {
        char one[32];
        snprintf(one, sizeof one, "km%d_1", set);
        assert_int_equal(train(0, one, frozen[set]), 0);
        for (int np = 2; np <= 3; np++) {
            char out[32];
            snprintf(out, sizeof out, "km%d_%d", set, np);
            assert_int_equal(train(np, out, frozen[set]), 0);
            assert_true(log_has(out, "fitting PQ codebooks (M = 2, K = 16) over"));
            char what[96];
            snprintf(what, sizeof what, "codebooks of %d rows, k-means over %d ranks vs 1 process",
                     set ? N_QUERIES : N_ROWS, np);
            tu_assert_measured(what, model_rel_diff(one, out), 1e-6);
        }
    }
}

/* Early stopping decides on rank 0's validation, sent to every rank: the ranks stop at the
 * step one process stops at, with its model. */
static void test_early_stop_agrees_with_one_process(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    const char *stop = "--set train.steps=2000 --set train.eval_every=10 "
                       "--set train.early_stop_patience=2";
    assert_int_equal(train(0, "stop_1", stop), 0);
    assert_int_equal(train(2, "stop_2", stop), 0);
    assert_true(log_has("stop_1", "early stop"));
    assert_true(log_has("stop_2", "early stop"));
    /* asserts the same step count too */
    tu_assert_measured("early stop, 2 ranks vs 1 process", model_rel_diff("stop_1", "stop_2"),
                       REL_TOL);
}

/* Rank 0 alone writes the run folder: one log's worth of output, every file in place. */
static void test_rank_zero_writes_the_outputs(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    assert_int_equal(train(2, "outputs", ""), 0);
    const char *files[] = {"model.h5", "checkpoint.h5", "metrics.jsonl", "report.html"};
    for (int i = 0; i < 4; i++)
        assert_true(file_exists("outputs", files[i]));
    assert_int_equal(tu_system("test $(grep -c 'final metrics' %s/outputs.log) -eq 1", dir), 0);
}

/* The pid of one process mpirun started (a rank: mpirun's threads fork them), or 0. */
static int a_child_of(pid_t pid)
{
    char cmd[128], line[64] = "";
    snprintf(cmd, sizeof cmd, "cat /proc/%d/task/*/children 2>/dev/null", (int)pid);
    FILE *f = popen(cmd, "r");
    if (!f)
        return 0;
    if (!fgets(line, sizeof line, f))
        line[0] = 0;
    pclose(f);
    return atoi(line);
}

#define RESUME_ARGS "--set train.steps=1500 --set train.checkpoint_every=20 " \
                    "--set train.eval_every=500"

/* mpirun -np 2 training into dir/out with extra arguments in the background (exec'ed: the pid
 * is mpirun's), once its first checkpoint is written. */
static pid_t start_ranks(const char *out, const char *extra)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "exec " MPIRUN " -np 2 %s train " ARGS "--out %s/%s %s >%s/%s.log 2>&1",
             dml, config, data, data, dir, out, extra, dir, out);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    char ckpt[700];
    snprintf(ckpt, sizeof ckpt, "%s/%s/checkpoint.h5", dir, out);
    struct stat st;
    for (int i = 0; i < 3000 && stat(ckpt, &st) != 0; i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    assert_int_equal(stat(ckpt, &st), 0);
    return pid;
}

/* The final test metric key of a run folder's metrics.jsonl (its last line). */
static double final_metric(const char *folder, const char *key)
{
    char path[700], line[4096] = "", last[4096] = "", pat[80];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", dir, folder);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f))
        memcpy(last, line, sizeof last);
    fclose(f);
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *at = strstr(last, "\"final\"") ? strstr(last, pat) : NULL;
    if (!at)
        fail_msg("%s has no final %s: %s", path, key, last);
    return strtod(at + strlen(pat), NULL);
}

/* A rank killed mid-run stops the job (mpirun names it); --resume under mpirun then ends with
 * the uninterrupted run's model, to the bit (same ranks). After 1500 steps rounding has grown
 * past what weights can be compared on (SHORT_STEPS says why), so one process is compared on
 * what the model is for, its test metrics, within 0.01: equal on every kernel measured
 * (docs/testing.md). These blobs are easy, so this only catches a run that went wrong (a
 * model of 100 steps is 0.04 below on map_at_r, of 10 steps 0.28); the short runs above catch
 * the subtle errors. */
static void test_resume_after_a_rank_dies(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    assert_int_equal(train(2, "whole", RESUME_ARGS), 0);
    assert_int_equal(train(0, "whole_1", RESUME_ARGS), 0);
    pid_t pid = start_ranks("killed", RESUME_ARGS);
    int victim = a_child_of(pid);
    assert_true(victim > 0);
    kill(victim, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    assert_true(log_has("killed", "signal 9"));
    assert_false(file_exists("killed", "model.h5"));
    assert_int_equal(train(2, "killed", "--resume " RESUME_ARGS), 0);
    assert_true(log_has("killed", "resuming"));
    tu_assert_same_model(run_path("whole"), run_path("killed"));
    const char *keys[] = {"map_at_r", "precision_at_1", "pq_map_at_r"};
    for (int i = 0; i < 3; i++) {
        char what[96];
        snprintf(what, sizeof what, "%s after 1500 steps, 2 ranks vs 1 process", keys[i]);
        tu_assert_measured(what, fabs(final_metric("whole", keys[i]) -
                                      final_metric("whole_1", keys[i])), 0.01);
    }
}

/* SIGTERM to one rank (a preemption): the flag travels in the next step's allreduce, both
 * ranks stop at the same step boundary, rank 0 writes the checkpoint, and --resume ends with
 * the uninterrupted run's model. Runs after the test above, whose run it compares with. */
static void test_sigterm_on_one_rank_stops_both(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    pid_t pid = start_ranks("term", RESUME_ARGS);
    int victim = a_child_of(pid);
    assert_true(victim > 0);
    kill(victim, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 128 + SIGTERM);
    /* the same step on both: one distinct "interrupted at step N" */
    assert_int_equal(tu_system("test $(grep -o 'interrupted at step [0-9]*' %s/term.log | sort -u "
                               "| wc -l) -eq 1", dir), 0);
    assert_int_equal(tu_system("test $(grep -c 'rank [01] of 2): interrupted at step' %s/term.log)"
                               " -eq 2", dir), 0);
    assert_false(file_exists("term", "model.h5"));
    assert_int_equal(train(2, "term", "--resume " RESUME_ARGS), 0);
    tu_assert_same_model(run_path("whole"), run_path("term"));
}

/* Training rows read in blocks (data.in_memory: false) from big.h5: 1 MB of memory gives windows
 * of 8 blocks of 256 rows (2048 rows of 16 floats, an eighth of it), three an epoch. */
#define STREAMED "--set data.train=%s --set data.in_memory=false --set sampler.type=random " \
                 "--set sampler.shuffle=block --set sampler.block_rows=256 "                 \
                 "--set data.memory_limit=1MB "

static const char *streamed(const char *more)
{
    static char args[1024];
    snprintf(args, sizeof args, STREAMED "%s", big, more);
    return args;
}

/* Each rank reads only its share of every batch from the file (its windows keep only those
 * rows), and the ranks end with one process's model, across an epoch's reshuffle: 120 steps of
 * 48 rows, an epoch (113 steps) and a few of the next, so every rank plans its share of a
 * second shuffle. Measured: 3.6e-6 (2 ranks) and 4.1e-6 (3 ranks), under REL_TOL as the
 * in-memory runs are. At 240 steps the encoder weights still agree to 2e-7, but k-means on the
 * codebook sample turns that into 7e-3 on the centroids (SHORT_STEPS says why runs are kept
 * short; in memory, over every row, they agree to 1e-7 there). */
static void test_streamed_rows_equal_one_process(void **state)
{
    (void)state;
    check_loss("streamed", streamed("--set train.steps=120"));
    /* an autoencoder that also reconstructs the rows set aside: a second sampler's share in
     * each rank's plan, the labelled rows' epoch of 41 steps crossed (drop_last set: the 2000
     * rows' last 32 would be kept by one process and, not dividing by 3, dropped by 3 ranks) */
    check_loss("streamed_unlabelled",
               streamed("--set model.type=autoencoder --set loss.type=triplet "
                        "--set loss.reconstruction_weight=0.5 --set data.labels_per_class=500 "
                        "--set sampler.drop_last=true --set train.steps=50"));
    assert_true(log_has("streamed_2", "a rank (each rank keeps its share of the batches)"));
    assert_false(log_has("streamed_1", "each rank keeps its share"));
}

/* A rank killed mid-run, then --resume: the uninterrupted streamed run's model, to the bit (the
 * ranks plan their share again from the restored shuffle). */
static void test_streamed_resume_after_a_rank_dies(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    char args[1024];
    snprintf(args, sizeof args, "%s", streamed(RESUME_ARGS));
    assert_int_equal(train(2, "st_whole", args), 0);
    pid_t pid = start_ranks("st_killed", args);
    int victim = a_child_of(pid);
    assert_true(victim > 0);
    kill(victim, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    assert_false(file_exists("st_killed", "model.h5"));
    char resume[1100];
    snprintf(resume, sizeof resume, "--resume %s", args);
    assert_int_equal(train(2, "st_killed", resume), 0);
    assert_true(log_has("st_killed", "resuming"));
    tu_assert_same_model(run_path("st_whole"), run_path("st_killed"));
}

/* The MB of rows a run's cache holds (a rank's, under mpirun), from its log. */
static double rows_held_mb(const char *out)
{
    char cmd[700], line[64] = "";
    snprintf(cmd, sizeof cmd, "grep -o 'in [0-9.]* MB of rows' %s/%s.log | head -1 | cut -d' ' -f2",
             dir, out);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    if (!fgets(line, sizeof line, f))
        line[0] = 0;
    pclose(f);
    if (!line[0])
        fail_msg("%s/%s.log names no rows held", dir, out);
    return strtod(line, NULL);
}

/* A rank's rows held fall with the ranks: one process holds two windows of whole blocks (16 x
 * 256 rows x 16 floats, 0.250 MB); a rank keeps its share of each block (256 / N rows and five
 * standard deviations over) plus one such share as the scratch a block is read through.
 * Measured: 0.250, 0.192, 0.108 MB on 1, 2 and 4 ranks. */
static void test_streamed_rows_held_fall_with_ranks(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    const char *args = streamed("--set train.steps=12");
    assert_int_equal(train(0, "held_1", args), 0);
    assert_int_equal(train(2, "held_2", args), 0);
    assert_int_equal(train(4, "held_4", args), 0);
    double one = rows_held_mb("held_1"), two = rows_held_mb("held_2"),
           four = rows_held_mb("held_4");
    fprintf(stderr, "rows held: %.3f MB (1 process), %.3f (2 ranks), %.3f (4 ranks)\n", one, two,
            four);
    assert_true(fabs(one - 0.25) < 1e-3);
    assert_true(two < one && four < two);
    assert_true(four < 0.5 * one);
}

/* Every rank checks the checkpoint's record: a resume with a changed config stops all of them,
 * exit 2, each naming the key. */
static void test_resume_with_a_changed_config_stops_every_rank(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    assert_int_equal(train(2, "changed", ""), 0);
    assert_int_equal(train(2, "changed", "--resume --set model.activation=tanh"), 2);
    assert_int_equal(tu_system("test $(grep -c 'rank [01] of 2): .*model.activation was relu, "
                               "now tanh' %s/changed.log) -eq 2", dir), 0);
}

/* Rank 0 takes the run folder's lock: a folder another process holds stops every rank. */
static void test_a_locked_folder_stops_every_rank(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    char path[700], text[64];
    snprintf(path, sizeof path, "%s/locked", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/locked/.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    assert_int_equal(fcntl(fd, F_SETLK, &fl), 0);
    int n = snprintf(text, sizeof text, "%ld here\n", (long)getpid());
    assert_int_equal(pwrite(fd, text, (size_t)n, 0), n);
    assert_int_equal(train(2, "locked", ""), 2);
    snprintf(text, sizeof text, "in use by dml train (pid %ld on here)", (long)getpid());
    assert_true(log_has("locked", text));
    assert_true(log_has("locked", "rank 1 of 2): rank 0 failed"));
    assert_false(file_exists("locked", "checkpoint.h5"));
    close(fd);
}

static void test_batch_not_divisible_is_named(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    assert_int_equal(train(3, "indivisible", "--set train.batch_size=32 --set sampler.m=8"), 2);
    assert_true(log_has("indivisible", "train.batch_size: 32 rows is not divisible by the 3 "
                                       "ranks"));
    assert_false(file_exists("indivisible", "checkpoint.h5"));
    /* random batches kept each epoch's last, short one (sampler.drop_last: false): 541 rows
     * leave 13, which 3 ranks cannot share */
    assert_int_equal(train(3, "short_last", "--set sampler.type=random "
                                            "--set data.val_fraction=0.098 "
                                            "--set sampler.drop_last=false"), 2);
    assert_true(log_has("short_last", "sampler.drop_last: each epoch ends with a batch of the 13 "
                                      "rows left (541 training rows, batch_size 48), not "
                                      "divisible by the 3 ranks"));
    /* left unset, the default drops that batch (a default never makes a run fail) */
    assert_int_equal(train(3, "short_last_default", "--set sampler.type=random "
                                                    "--set data.val_fraction=0.098"), 0);
    assert_true(log_has("short_last_default", "# sampler.drop_last: true (the default keeps each "
                                              "epoch.s last batch, of the 13 rows left, which "
                                              "the 3 ranks cannot share equally)"));
}

/* A batch size left unset is fitted to the ranks (and to sampler.m's groups), said in one
 * line: the default 256 never fails on 3 ranks. */
static void test_default_batch_fits_the_ranks(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    char empty[600];
    snprintf(empty, sizeof empty, "%s/empty.yaml", dir);
    assert_int_equal(tu_system(": > %s", empty), 0);
    int rc = tu_system(MPIRUN_T " -np 3 %s train %s --set data.train=%s --set data.test=%s "
                       "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 "
                       "--set train.threads=1 --set train.steps=2 --out %s/fitted "
                       ">%s/fitted.log 2>&1", dml, empty, data, data, dir, dir);
    if (rc != 0) {
        tu_system("cat %s/fitted.log", dir);
        fail_msg("exit %d", rc);
    }
    assert_true(log_has("fitted", "# train.batch_size: 252 (the default 256 rounded down to a "
                                  "multiple of the 3 ranks and of sampler.m 4)"));
    assert_true(file_exists("fitted", "model.h5"));
}

/* mpirun's MPMD form gives each rank its own command line and folder. */
static int train_two_ways(const char *out, const char *wdir_a, const char *a, const char *wdir_b,
                          const char *b)
{
    return tu_system(MPIRUN_T " -np 1 --wdir %s %s train " ARGS "--out %s/%s %s : -np 1 --wdir %s "
                     "%s train " ARGS "--out %s/%s %s >%s/%s.log 2>&1",
                     wdir_a, dml, config, data, data, dir, out, a, wdir_b, dml, config, data,
                     data, dir, out, b, dir, out);
}

static void test_ranks_that_disagree_are_named(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    assert_int_equal(train_two_ways("config", dir, "", dir, "--set train.lr=0.01"), 2);
    assert_true(log_has("config", "config differs from rank 0"));
    assert_false(file_exists("config", "checkpoint.h5"));
    /* A rank that cannot even load its config: the others stop too, and say which. */
    assert_int_equal(train_two_ways("unloadable", dir, "", dir, "--set train.lr=fast"), 2);
    assert_true(log_has("unloadable", "rank 1 could not load the config"));
    assert_true(log_has("unloadable", "train.lr: expected a positive number"));
    /* The same path, other contents: what a node with a stale copy of the file reads. */
    assert_int_equal(tu_system("cd %s && mkdir -p a b && cp %s a/blobs.h5 && cp %s b/blobs.h5",
                               dir, data, data2), 0);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    const char *same = "--set data.train=blobs.h5";
    assert_int_equal(train_two_ways("stale", a, same, b, same), 2);
    assert_true(log_has("stale", "rank 1 read other training data than rank 0"));
}

static void test_divergence_stops_every_rank(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    /* blocking, then overlapped (the flags ride in the last bucket) */
    const char *out[] = {"diverge", "diverge_overlap"}, *extra[] = {"", OVERLAP};
    for (int i = 0; i < 2; i++) {
        char args[512];
        snprintf(args, sizeof args, "--set train.optimizer=sgd --set train.lr=1000 "
                 "--set train.steps=200 --set train.checkpoint_every=1 "
                 "--set model.output=none --set train.schedule=constant "
                 "--set loss.distance=squared_euclidean %s", extra[i]);
        assert_int_equal(train(2, out[i], args), 1);
        /* every rank stops at the same step; mpirun may end the others before they print */
        assert_true(log_has(out[i], "train (rank [01] of 2): step [0-9]*: the .* (.* rank"));
        assert_true(file_exists(out[i], "checkpoint.h5"));
        assert_false(file_exists(out[i], "model.h5"));
    }
}

/* Every byte of dataset name in file path (NULL when it is absent); *n gets the size. */
static unsigned char *dataset_bytes(const char *path, const char *name, size_t *n)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return NULL;
    unsigned char *buf = NULL;
    if (H5Lexists(f, name, H5P_DEFAULT) > 0) {
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT), sp = H5Dget_space(ds), ty = H5Dget_type(ds);
        *n = (size_t)H5Sget_simple_extent_npoints(sp) * H5Tget_size(ty);
        buf = malloc(*n + 1);
        if (buf && H5Dread(ds, ty, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            free(buf);
            buf = NULL;
        }
        H5Tclose(ty);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return buf;
}

/* 2 and 3 ranks each embed a slice (600 rows: 3 blocks of 256, one rank of 3 with the 88-row
 * tail); rank 0 writes X, codes and y with the bytes one process writes. */
static void test_sharded_encode_equals_one_process(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    assert_int_equal(train(0, "enc", ""), 0);
    const char *cmd = "%s %s encode %s/enc/model.h5 %s %s/enc_%d.h5 --pq >%s/enc_%d.log 2>&1";
    assert_int_equal(tu_system(cmd, "", dml, dir, data, dir, 1, dir, 1), 0);
    for (int np = 2; np <= 3; np++) {
        char launcher[128];
        snprintf(launcher, sizeof launcher, MPIRUN_T " -np %d", np);
        assert_int_equal(tu_system(cmd, launcher, dml, dir, data, dir, np, dir, np), 0);
        char one[600], many[600];
        snprintf(one, sizeof one, "%s/enc_1.h5", dir);
        snprintf(many, sizeof many, "%s/enc_%d.h5", dir, np);
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
}

/* The output of dml eval --json up to its timing (the last key, "seconds"), malloc'ed. */
static char *metrics_json(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    static char line[8192];
    char *text = fgets(line, sizeof line, f) ? strdup(line) : NULL;
    fclose(f);
    char *cut = text ? strstr(text, "\"seconds\"") : NULL;
    if (cut)
        *cut = 0;
    return cut ? text : NULL;
}

/* The number after "key": in a JSON line, NAN when absent. */
static double json_value(const char *json, const char *key)
{
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\": ", key);
    const char *at = strstr(json, quoted);
    return at ? strtod(at + strlen(quoted), NULL) : NAN;
}

/* json without its "key": value pair. */
static void cut_key(char *json, const char *key)
{
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\": ", key);
    char *at = strstr(json, quoted), *end = at ? strstr(at, ", ") : NULL;
    if (end)
        memmove(at, end + 2, strlen(end + 2) + 1);
}

/* A copy of json to compare (static, one of two used in turn): for a twins case without the
 * metrics read from the float ranking, whose tied twins' order is the kernel's rounding. */
static const char *ref_cut(const char *json, int twins)
{
    static const char *const float_ranked[] = {"precision_at_1", "r_precision", "map_at_r",
                                               "map_all", "knn_accuracy", "pq_recall_at_r"};
    static char copies[2][8192];
    static int turn;
    char *copy = copies[turn ^= 1];
    snprintf(copy, sizeof copies[0], "%s", json);
    for (int i = 0; twins && i < (int)(sizeof float_ranked / sizeof *float_ranked); i++)
        cut_key(copy, float_ranked[i]);
    return copy;
}

/* Each rank embeds its slice of the rows and ranks its queries among every rank's references,
 * merging the ranks' top-k lists (eval/shard.c): 2 and 3 ranks print one process's numbers.
 * 3000 queries (three search blocks) against the 600 rows and among themselves (protocol 1),
 * float and PQ, every default metric (map_all and knn_accuracy with a database; among
 * themselves, each query's top 750 are exchanged in parts of a search block); the rows with
 * tied twins (write_ties) among themselves, where 3 ranks leave rank 0 without rows, and as the
 * database; a dual encoder's pairs (each query's second view its reference: recall_at_k,
 * mrr_at_10). Rankings are exact: every metric but quantization_mse (a sum over the references,
 * added per rank then over the ranks) must print the same digits, except, with twins, those
 * read from the float ranking (below). */
static void test_sharded_eval_equals_one_process(void **state)
{
    (void)state;
    if (!have_mpirun())
        TU_SKIP("mpirun is not installed");
    assert_int_equal(train(0, "ev", ""), 0);
    assert_int_equal(train(0, "evd", "--set loss.type=mnr --set data.pairs=halves "
                                     "--set model.type=dual"), 0);
    const struct {
        const char *model, *data, *db;
    } cases[] = {{"ev", queries, data}, {"ev", queries, NULL}, {"ev", ties, NULL},
                 {"ev", queries, ties}, {"evd", queries, NULL}};
    for (int m = 0; m < (int)(sizeof cases / sizeof *cases); m++) {
        char db[600] = "", one[600];
        if (cases[m].db)
            snprintf(db, sizeof db, "--db %s", cases[m].db);
        const char *cmd = "%s %s eval %s/%s/model.h5 --data %s %s --pq --json "
                          ">%s/ev_%d_%d.json 2>%s/ev_%d_%d.log";
        assert_int_equal(tu_system(cmd, "", dml, dir, cases[m].model, cases[m].data, db, dir, m,
                                   1, dir, m, 1), 0);
        snprintf(one, sizeof one, "%s/ev_%d_1.json", dir, m);
        char *ref = metrics_json(one);
        assert_non_null(ref);
        int dual = !strcmp(cases[m].model, "evd");
        assert_non_null(strstr(ref, dual ? "pq_mrr_at_10" : "pq_map_at_r"));
        if (cases[m].db)
            assert_non_null(strstr(ref, "map_all"));
        /* Twins have one code, so their ADC scores tie: the lower row first hits 2 queries of
         * 3 (float scores tie but for rounding: 0.653 measured). */
        if (cases[m].data == ties)
            assert_true(fabs(json_value(ref, "pq_precision_at_1") - 2.0 / 3.0) < 1e-7);
        double qmse = json_value(ref, "quantization_mse");
        assert_true(qmse > 0.0);
        cut_key(ref, "quantization_mse");
        for (int np = 2; np <= 3; np++) {
            char launcher[128], many[600], what[96];
            snprintf(launcher, sizeof launcher, MPIRUN_T " -np %d", np);
            assert_int_equal(tu_system(cmd, launcher, dml, dir, cases[m].model, cases[m].data, db,
                                       dir, m, np, dir, m, np), 0);
            snprintf(many, sizeof many, "%s/ev_%d_%d.json", dir, m, np);
            char *got = metrics_json(many);
            assert_non_null(got);
            double v = json_value(got, "quantization_mse");
            snprintf(what, sizeof what, "eval case %d quantization_mse, %d ranks vs 1", m, np);
            tu_assert_measured(what, fabs(v - qmse) / qmse, 1e-6);
            cut_key(got, "quantization_mse");
            /* The twins' float scores tie but for rounding, which a kernel may do differently
             * for another GEMM shape (a rank's slice), so which twin ranks first is the
             * kernel's: under Prescott 36 of 3000 queries' top row changed. The metrics read
             * from the float ranking are left out for them; their ADC scores tie exactly (one
             * code), which is the tie-break this case is for, and stay compared. */
            int twins = cases[m].data == ties || cases[m].db == ties;
            assert_string_equal(ref_cut(ref, twins), ref_cut(got, twins));
            free(got);
        }
        free(ref);
    }
    /* Rank 0 embeds its slice alone: 3000 queries are 12 units of 256 rows. */
    /* --projector gathers the queries' embeddings on rank 0: one process's file. */
    const char *proj = "%s %s eval %s/ev/model.h5 --data %s --projector %s/proj_%d >/dev/null 2>&1";
    assert_int_equal(tu_system(proj, "", dml, dir, ties, dir, 1), 0);
    assert_int_equal(tu_system(proj, MPIRUN_T " -np 3", dml, dir, ties, dir, 3), 0);
    assert_int_equal(tu_system("cmp -s %s/proj_1/vectors.tsv %s/proj_3/vectors.tsv", dir, dir), 0);
    const char *grep = "grep -q 'embeds queries \\[0, %d) of 3000' %s/ev_1_%d.log";
    assert_int_equal(tu_system(grep, 1536, dir, 2), 0);
    assert_int_equal(tu_system(grep, 1024, dir, 3), 0);
}

/* Root, ip netns, tc and unshare, and a namespace can be made here (containers may refuse). */
static int can_make_namespaces(void)
{
    return geteuid() == 0 &&
           tu_system("command -v tc >/dev/null && command -v unshare >/dev/null && "
                     "n=dmlcprobe$$ && ip netns add $n 2>/dev/null && ip netns del $n") == 0;
}

/* build/bench_scale, next to the dml binary (make unit-test builds it). */
static const char *bench_scale(void)
{
    static char path[1100];
    snprintf(path, sizeof path, "%s", dml);
    char *slash = strrchr(path, '/');
    snprintf(slash + 1, sizeof path - (size_t)(slash + 1 - path), "bench_scale");
    return path;
}

/* Two ranks, each in a network namespace of its own with a 1 Gbit/s link to a bridge: the bytes
 * a rank sends per step (Ethernet, IP and TCP headers taken off) within 10% of docs/scale.md's
 * cost model, which bench/cluster.py --smoke checks (its table is printed). */
static void test_cluster_of_namespaces_sends_the_model_bytes(void **state)
{
    (void)state;
    if (!have_mpirun() || !can_make_namespaces())
        TU_SKIP("needs mpirun, root and ip netns (bench/cluster.sh)");
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0)
        TU_SKIP("dataset-fashion-mnist is not installed (bench_scale trains on it)");
    int rc = tu_python_run("bench/cluster.py --smoke --bench %s >%s/cluster.log 2>&1",
                           bench_scale(), dir);
    tu_system("cat %s/cluster.log", dir);
    assert_int_equal(rc, 0);
    assert_int_equal(tu_system("grep -q '^| 2 | ' %s/cluster.log", dir), 0);
}

/* bench/cluster.sh removes every namespace it made (named after its process id) when mpirun's
 * job fails, and when the script is stopped by SIGTERM in the middle of a run. */
static void test_cluster_leaves_no_namespace(void **state)
{
    (void)state;
    if (!have_mpirun() || !can_make_namespaces())
        TU_SKIP("needs mpirun, root and ip netns (bench/cluster.sh)");
    /* 90: a namespace of the run is left */
    const char *run = "sh bench/cluster.sh -n 2 -o %s -- %s & p=$!; %s wait $p; rc=$?; "
                      "ip netns list | grep -q \"^dmlc$p\" && exit 90; exit $rc";
    int failed = tu_system(run, dir, "false", "");
    assert_true(failed != 0 && failed != 90 && failed != 3);
    assert_int_equal(tu_system(run, dir, "sleep 60", "sleep 4; kill -TERM $p;"), 143);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triplet_equals_one_process),
        cmocka_unit_test(test_contrastive_equals_one_process),
        cmocka_unit_test(test_mnr_equals_one_process),
        cmocka_unit_test(test_multi_similarity_equals_one_process),
        cmocka_unit_test(test_circle_equals_one_process),
        cmocka_unit_test(test_supcon_equals_one_process),
        cmocka_unit_test(test_cosine_pair_equals_one_process),
        cmocka_unit_test(test_sharded_miners_equal_one_process),
        cmocka_unit_test(test_sharded_loss_memory_falls_with_the_ranks),
        cmocka_unit_test(test_memory_equals_one_process),
        cmocka_unit_test(test_overlapped_allreduce_equals_blocking),
        cmocka_unit_test(test_hard_negatives_equal_one_process),
        cmocka_unit_test(test_joint_quantization_equals_one_process),
        cmocka_unit_test(test_augmented_triplet_equals_one_process),
        cmocka_unit_test(test_augment_pairs_mnr_equals_one_process),
        cmocka_unit_test(test_kmeans_over_ranks_equals_one_process),
        cmocka_unit_test(test_early_stop_agrees_with_one_process),
        cmocka_unit_test(test_rank_zero_writes_the_outputs),
        cmocka_unit_test(test_resume_after_a_rank_dies),
        cmocka_unit_test(test_sigterm_on_one_rank_stops_both),
        cmocka_unit_test(test_streamed_rows_equal_one_process),
        cmocka_unit_test(test_streamed_resume_after_a_rank_dies),
        cmocka_unit_test(test_streamed_rows_held_fall_with_ranks),
        cmocka_unit_test(test_resume_with_a_changed_config_stops_every_rank),
        cmocka_unit_test(test_a_locked_folder_stops_every_rank),
        cmocka_unit_test(test_batch_not_divisible_is_named),
        cmocka_unit_test(test_default_batch_fits_the_ranks),
        cmocka_unit_test(test_ranks_that_disagree_are_named),
        cmocka_unit_test(test_divergence_stops_every_rank),
        cmocka_unit_test(test_sharded_encode_equals_one_process),
        cmocka_unit_test(test_sharded_eval_equals_one_process),
        cmocka_unit_test(test_cluster_of_namespaces_sends_the_model_bytes),
        cmocka_unit_test(test_cluster_leaves_no_namespace),
    };
    const char *only = getenv("DML_TEST_FILTER"); /* e.g. "*sharded*": the slow suite's subset */
    if (only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, setup, teardown);
}
