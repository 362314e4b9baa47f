/* The run folder through the dml CLI. --resume: which config changes it takes (extending the
 * run) and which it refuses (anything that changes what is trained or how, the training data
 * included). The folder's lock: a folder another live process holds is refused naming its pid,
 * a lock a dead process left is taken over, and every way a run ends releases its own. */
#include "tests/testutil.h"

#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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

/* Each change of what is trained or how is refused, exit 2 (nothing written), the message
 * naming the key with its old and new values; several changes are all named in one message. */
static void test_resume_refuses_a_changed_config(void **state)
{
    (void)state;
    assert_int_equal(train("base", "base", ""), 0);
    static const struct {
        const char *set, *says;
    } cases[] = {
        {"model.activation=tanh", "model.activation was relu, now tanh"},
        {"model.output=none", "model.output was l2, now none"},
        {"loss.type=contrastive", "loss.type was triplet, now contrastive"},
        {"loss.miner=hard", "loss.miner was all, now hard"},
        {"train.optimizer=sgd", "train.optimizer was adam, now sgd"},
        {"data.normalize=standardize", "data.normalize was unit, now standardize"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char extra[200];
        snprintf(extra, sizeof extra, "--resume --set %s", cases[i].set);
        assert_int_equal(train("base", "changed", extra), 2);
        assert_true(log_has("changed", "base/checkpoint.h5: --resume with a changed config: "));
        assert_true(log_has("changed", cases[i].says));
    }
    assert_int_equal(train("base", "two", "--resume --set model.activation=gelu "
                                          "--set train.optimizer=sgd"), 2);
    assert_true(log_has("two", "model.activation was relu, now gelu; train.optimizer was adam, "
                               "now sgd"));
}

/* Other rows of the same shape under data.train are refused naming it; the same rows under
 * another path (a moved file) resume. */
static void test_resume_refuses_other_training_rows(void **state)
{
    (void)state;
    assert_int_equal(train("rows", "rows", ""), 0);
    char extra[1200];
    snprintf(extra, sizeof extra, "--resume --set data.train=%s --set data.test=%s", other, other);
    assert_int_equal(train("rows", "other_rows", extra), 2);
    assert_true(log_has("other_rows", "data.train was \"[^\"]*blobs.h5\", now \"[^\"]*other.h5\" "
                                      "(other rows)"));
    char moved[600];
    snprintf(moved, sizeof moved, "%s/moved.h5", dir);
    assert_int_equal(tu_system("cp %s %s", data, moved), 0);
    snprintf(extra, sizeof extra, "--resume --set data.train=%s --set data.test=%s", moved, data);
    assert_int_equal(train("rows", "moved", extra), 0);
}

/* The keys a resume may change: the learning rate, when to validate and save, the run's name,
 * the final evaluation. */
static void test_resume_takes_the_keys_that_may_change(void **state)
{
    (void)state;
    assert_int_equal(train("free", "free", ""), 0);
    assert_int_equal(train("free", "free_again",
                           "--resume --set train.lr=0.0005 --set train.eval_every=5 "
                           "--set train.checkpoint_every=5 --set name=renamed "
                           "--set train.early_stop_patience=3 --set eval.knn_k=3 "
                           "--set train.steps=30"), 0);
    assert_true(log_has("free_again", "resuming .* at step 20 of 30"));
}

/* A checkpoint written before the run's record (format_version 1) still resumes, with a
 * warning that nothing could be checked. */
static void test_resume_from_a_checkpoint_without_its_record(void **state)
{
    (void)state;
    assert_int_equal(train("old", "old", ""), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/old/checkpoint.h5", dir);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "run", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    assert_int_equal(train("old", "old_again", "--resume --set model.activation=tanh"), 0);
    assert_true(log_has("old_again", "warning: an older checkpoint, without its run.s config"));
}

static int exists(const char *folder, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s/%s", dir, folder, name);
    struct stat st;
    return stat(path, &st) == 0;
}

/* Writes dir/folder/.lock naming pid on this host; returns its descriptor, with the lock held
 * when hold is 1 (as a live dml train holds it). */
static int write_lock(const char *folder, long pid, int hold)
{
    char path[700], host[256] = "", text[300];
    snprintf(path, sizeof path, "%s/%s", dir, folder);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/.lock", dir, folder);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    assert_true(!hold || fcntl(fd, F_SETLK, &fl) == 0);
    gethostname(host, sizeof host - 1);
    int n = snprintf(text, sizeof text, "%ld %s\n", pid, host);
    assert_int_equal(pwrite(fd, text, (size_t)n, 0), n);
    return fd;
}

/* A folder a live run holds is refused before anything is written, exit 2, naming the pid;
 * once it lets go the run goes ahead and releases the lock at its end. */
static void test_a_held_folder_is_refused_naming_its_holder(void **state)
{
    (void)state;
    int fd = write_lock("held", (long)getpid(), 1);
    assert_int_equal(train("held", "held", ""), 2);
    char says[200];
    snprintf(says, sizeof says, "held: in use by dml train (pid %ld on ", (long)getpid());
    assert_true(log_has("held", says));
    assert_false(exists("held", "checkpoint.h5"));
    close(fd); /* the holder ends */
    assert_int_equal(train("held", "held_after", ""), 0);
    assert_true(exists("held", "model.h5"));
    assert_false(exists("held", ".lock"));
}

/* A lock left by a process that is gone (kill -9 leaves its file behind) is taken over, said in
 * one line naming that pid. */
static void test_a_dead_holders_lock_is_taken_over(void **state)
{
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0)
        _exit(0);
    assert_int_equal(waitpid(child, NULL, 0), child); /* reaped: its pid names no process */
    close(write_lock("stale", (long)child, 0));
    assert_int_equal(train("stale", "stale", ""), 0);
    char says[200];
    snprintf(says, sizeof says, "stale: taking over the lock of dml train (pid %ld on ",
             (long)child);
    assert_true(log_has("stale", says));
    assert_true(exists("stale", "model.h5"));
    assert_false(exists("stale", ".lock"));
}

/* Two trainings into one folder: the second is refused naming the first's pid; the first,
 * interrupted, writes its checkpoint and lets go of the folder. */
static void test_a_running_training_holds_its_folder_until_interrupted(void **state)
{
    (void)state;
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "exec %s train configs/demo.yaml --out %s/busy --set data.train=%s --set data.test=%s "
             "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 "
             "--set sampler.m=8 --set train.batch_size=32 --set train.threads=1 "
             "--set train.steps=1000000 --set train.checkpoint_every=1000000 >%s/busy.log 2>&1",
             tu_dml_path(), dir, data, data, dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    /* up to 120 s (a loaded machine) for the first run to be past its lock */
    for (int i = 0; i < 12000 && !log_has("busy", "effective config"); i++)
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    assert_true(log_has("busy", "effective config"));
    assert_int_equal(train("busy", "busy_second", ""), 2);
    char says[200];
    snprintf(says, sizeof says, "busy: in use by dml train (pid %ld on ", (long)pid);
    assert_true(log_has("busy_second", says));
    kill(pid, SIGINT);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 128 + SIGINT);
    assert_true(exists("busy", "checkpoint.h5"));
    assert_false(exists("busy", ".lock"));
}

/* A run that fails after taking the lock (a refused resume) releases it too. */
static void test_a_failed_run_releases_its_lock(void **state)
{
    (void)state;
    assert_int_equal(train("failed", "failed", ""), 0);
    assert_int_equal(train("failed", "failed_resume", "--resume --set model.activation=tanh"), 2);
    assert_true(log_has("failed_resume", "model.activation was relu, now tanh"));
    assert_false(exists("failed", ".lock"));
    assert_false(log_has("failed_resume", "taking over"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_extends_the_steps),
        cmocka_unit_test(test_resume_refuses_a_changed_config),
        cmocka_unit_test(test_resume_refuses_other_training_rows),
        cmocka_unit_test(test_resume_takes_the_keys_that_may_change),
        cmocka_unit_test(test_resume_from_a_checkpoint_without_its_record),
        cmocka_unit_test(test_a_held_folder_is_refused_naming_its_holder),
        cmocka_unit_test(test_a_dead_holders_lock_is_taken_over),
        cmocka_unit_test(test_a_running_training_holds_its_folder_until_interrupted),
        cmocka_unit_test(test_a_failed_run_releases_its_lock),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
