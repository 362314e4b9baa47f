/* The run folder's lock through the dml CLI: a folder another live process holds is refused
 * naming its pid, a lock a dead process left is taken over, and every way a run ends releases
 * its own. */
#include "tests/testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[256], data[512];

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/blobs.h5", dir);
    tu_write_blobs(data, 600, 16, 4);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_system("rm -rf '%s'", dir);
    return 0;
}

/* dml train on the blobs into dir/out, 20 steps and the extra arguments, its output in
 * dir/log.log; returns the exit code. */
static int train(const char *out, const char *log, const char *extra)
{
    return tu_system("%s train configs/demo.yaml --out %s/%s --set data.train=%s --set data.test=%s "
                     "--set model.hidden=[32] --set model.dim=8 --set pq.m=2 --set pq.k=16 "
                     "--set sampler.m=8 --set train.batch_size=32 --set train.threads=1 "
                     "--set train.steps=20 %s >%s/%s.log 2>&1",
                     tu_dml_path(), dir, out, data, data, extra, dir, log);
}

static int log_has(const char *log, const char *text)
{
    return tu_system("grep -q -- '%s' %s/%s.log", text, dir, log) == 0;
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
        cmocka_unit_test(test_a_held_folder_is_refused_naming_its_holder),
        cmocka_unit_test(test_a_dead_holders_lock_is_taken_over),
        cmocka_unit_test(test_a_running_training_holds_its_folder_until_interrupted),
        cmocka_unit_test(test_a_failed_run_releases_its_lock),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
