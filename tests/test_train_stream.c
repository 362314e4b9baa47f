/* Training on rows read from the file in blocks (data.in_memory: false): the same model as
 * training on the rows in memory with the same block-random order, resume after a kill, the
 * refusals, and a bad value met mid-training. Through the dml CLI, on Gaussian blobs. */
#include "tests/testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define N_ROWS 3000
#define WIDTH 64
#define CLASSES 4

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

/* 1 MB of memory: windows of 1 MB / 8 / (64 rows x 64 floats) = 8 blocks of 64 rows, against
 * the file's 47 blocks, so an epoch goes through six windows. */
#define ARGS(file)                                                                                 \
    "%s train configs/demo.yaml --out %s/%s --set data.train=%s --set data.test=%s "               \
    "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 "                        \
    "--set sampler.type=random --set sampler.shuffle=block --set sampler.block_rows=64 "           \
    "--set data.memory_limit=1MB --set data.normalize=standardize "                                \
    "--set train.batch_size=32 --set train.threads=1 --set train.steps=300 "                       \
    "--set train.checkpoint_every=20 --set train.eval_every=100 %s >%s/%s.log 2>&1"

static int train(const char *out, const char *extra)
{
    return tu_system(ARGS(file), tu_dml_path(), dir, out, data, data, extra, dir, out);
}

static int log_has(const char *out, const char *text)
{
    return tu_system("grep -q -- '%s' %s/%s.log", text, dir, out) == 0;
}

/* The model of dir/a and dir/b: the same to the bit. */
static void assert_same_model(const char *folder_a, const char *folder_b)
{
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/%s", dir, folder_a);
    snprintf(b, sizeof b, "%s/%s", dir, folder_b);
    tu_assert_same_model(a, b);
}

static void test_streamed_equals_in_memory(void **state)
{
    (void)state;
    assert_int_equal(train("memory", "--set data.in_memory=true"), 0);
    assert_int_equal(train("streamed", "--set data.in_memory=false"), 0);
    assert_true(log_has("streamed", "are read in blocks of 64"));
    assert_false(log_has("memory", "are read in blocks"));
    assert_same_model("memory", "streamed");
    /* auto: 3000 x 64 floats (0.7 MB) fit 1 MB, and are read whole */
    assert_int_equal(train("auto", ""), 0);
    assert_false(log_has("auto", "are read in blocks"));
    assert_same_model("memory", "auto");
}

/* SIGKILLed after a checkpoint and resumed: the uninterrupted streamed run's model. */
static void test_streamed_resume_after_kill(void **state)
{
    (void)state;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "exec " ARGS(file), tu_dml_path(), dir, "killed", data, data,
             "--set data.in_memory=false --set train.steps=3000", dir, "killed");
    assert_int_equal(train("whole", "--set data.in_memory=false --set train.steps=3000"), 0);
    char run_dir[700];
    snprintf(run_dir, sizeof run_dir, "%s/killed", dir);
    tu_kill_after_checkpoint(cmd, run_dir);
    assert_int_equal(train("killed", "--resume --set data.in_memory=false --set train.steps=3000"), 0);
    assert_same_model("whole", "killed");
}

static void test_refusals(void **state)
{
    (void)state;
    assert_int_equal(train("refused_mpc", "--set data.in_memory=false --set sampler.type=m_per_class "
                                          "--set sampler.m=8"), 2);
    assert_true(log_has("refused_mpc", "sampler.type"));
    assert_true(log_has("refused_mpc", "need sampler.type: random"));
    assert_int_equal(train("refused_full", "--set data.in_memory=false --set sampler.shuffle=full"),
                     2);
    assert_true(log_has("refused_full", "need sampler.shuffle: block"));
    assert_int_equal(train("refused_q", "--set data.in_memory=false "
                                        "--set loss.quantization.weight=0.1"), 2);
    assert_true(log_has("refused_q", "the joint quantization loss"));
    /* halves splits rows in memory (this crashed before it was refused) */
    assert_int_equal(train("refused_halves", "--set data.in_memory=false --set loss.type=mnr "
                                             "--set data.pairs=halves"),
                     2);
    assert_true(log_has("refused_halves", "halves splits rows held in memory"));
    char csv[600];
    snprintf(csv, sizeof csv, "%s/rows.csv", dir);
    FILE *f = fopen(csv, "w");
    assert_non_null(f);
    for (int i = 0; i < 64; i++)
        fprintf(f, "%d,%d,%d\n", i, i % 7, i % 2);
    fclose(f);
    assert_int_equal(tu_system("%s train configs/demo.yaml --out %s/csv --set data.train=%s "
                               "--set data.test= --set data.in_memory=false >%s/csv.log 2>&1",
                               tu_dml_path(), dir, csv, dir), 2);
    assert_true(log_has("csv", "false needs rows read in ranges"));
}

/* A NaN deep in the file is found when its block is first read, mid-training: exit 2 naming the
 * file and the row, no model written. */
static void test_bad_value_mid_training(void **state)
{
    (void)state;
    char path[600];
    snprintf(path, sizeof path, "%s/nan.h5", dir);
    tu_write_blobs(path, N_ROWS, WIDTH, CLASSES);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(file, "X", H5P_DEFAULT), space = H5Dget_space(ds);
    hsize_t at[2] = {2900, 5}, one[2] = {1, 1};
    hid_t mem = H5Screate_simple(2, one, NULL);
    float nan = NAN;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, at, NULL, one, NULL);
    assert_true(H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, &nan) >= 0);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(file);
    assert_int_equal(tu_system("%s train configs/demo.yaml --out %s/nan --set data.train=%s "
                               "--set data.test= --set data.in_memory=false "
                               "--set data.memory_limit=1MB --set sampler.block_rows=64 "
                               "--set data.val_fraction=0 --set train.batch_size=32 --set sampler.type=random "
                               "--set train.steps=200 --set model.dim=8 --set pq.k=16 "
                               "--set pq.m=2 >%s/nan.log 2>&1",
                               tu_dml_path(), dir, path, dir), 2);
    assert_true(log_has("nan", "data row 2900, column 5 (0-based) is NaN"));
    assert_true(log_has("nan", "nan.h5"));
    char model[700];
    snprintf(model, sizeof model, "%s/nan/model.h5", dir);
    struct stat st;
    assert_int_not_equal(stat(model, &st), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamed_equals_in_memory),
        cmocka_unit_test(test_streamed_resume_after_kill),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_bad_value_mid_training),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
