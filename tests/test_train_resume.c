/* --resume through the dml CLI: which config changes it takes (extending the run) and which it
 * refuses (anything that changes what is trained or how, the training data included). */
#include "tests/testutil.h"

#include <stdio.h>
#include <string.h>

#define N_ROWS 600
#define WIDTH 16
#define CLASSES 4 /* Gaussian blobs */

static char dir[256], data[512], other[512];

/* Four Gaussian classes in 16-d, and five in a file of the same shape. */
static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/blobs.h5", dir);
    snprintf(other, sizeof other, "%s/other.h5", dir);
    tu_write_blobs(data, N_ROWS, WIDTH, CLASSES);
    tu_write_blobs(other, N_ROWS, WIDTH, CLASSES + 1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_system("rm -rf '%s'", dir);
    return 0;
}

/* dml train on the blobs into dir/out, 20 constant-rate steps and the extra arguments, its
 * output in dir/log.log; returns the exit code. */
static int train(const char *out, const char *log, const char *extra)
{
    return tu_system("%s train configs/demo.yaml --out %s/%s --set data.train=%s --set data.test=%s "
                     "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 "
                     "--set sampler.m=8 --set train.batch_size=32 --set train.threads=1 "
                     "--set train.schedule=constant --set train.steps=20 %s >%s/%s.log 2>&1",
                     tu_dml_path(), dir, out, data, data, extra, dir, log);
}

static int log_has(const char *log, const char *text)
{
    return tu_system("grep -q -- '%s' %s/%s.log", text, dir, log) == 0;
}

/* train.steps may grow on resume: the run goes on from its checkpoint and, at a constant rate,
 * ends with the model of a run that was given the longer length from the start. */
static void test_resume_extends_the_steps(void **state)
{
    (void)state;
    assert_int_equal(train("long", "long", "--set train.steps=40"), 0);
    assert_int_equal(train("extended", "extended", ""), 0);
    assert_int_equal(train("extended", "extended_more", "--resume --set train.steps=40"), 0);
    assert_true(log_has("extended_more", "resuming .* at step 20 of 40"));
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/long", dir);
    snprintf(b, sizeof b, "%s/extended", dir);
    tu_assert_same_model(a, b);
    /* fewer steps than the checkpoint has done: refused, nothing trained */
    assert_int_equal(train("extended", "shortened", "--resume --set train.steps=10"), 2);
    assert_true(log_has("shortened", "checkpoint.h5: the checkpoint is at step 40, past the 10"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_extends_the_steps),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
