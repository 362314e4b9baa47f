/* I/O faults on the way to every file dml writes, injected in turn (tests/fault_preload.c, as
 * SQLite's tests inject them): each write, fsync, close and rename on the path to checkpoint.h5,
 * metrics.jsonl, model.h5, report.html, a FAISS index and an ONNX model fails once, one run per
 * failure. Each run must exit 1 with a message naming the file and the reason, leave no
 * temporary file behind, and leave the previous files complete and loadable. */
#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"
#include "tests/testutil.h"

static char dir[256], data[400];

static const char *const KINDS[] = {"write", "fsync", "close", "rename"};
/* a full disk for writes, a failing device for the rest */
static const int ERRNOS[] = {ENOSPC, EIO, EIO, EIO};

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/blobs.h5", dir);
    tu_write_blobs(data, 300, 8, 3);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_system("rm -rf '%s'", dir);
    return 0;
}

/* The command's exit code with the injector preloaded: call kind fails at its nth time on the
 * paths under dir/run (nth 0: only counted, into dir/counts). The run folder's lock file is
 * left alone: it holds no output (its pid is for messages), and its close when the run ends
 * has nothing left to lose. */
static int run_faulty(const char *command, const char *kind, int nth, int err_no)
{
    return tu_system("env LD_PRELOAD=%s ASAN_OPTIONS=verify_asan_link_order=0 "
                     "FAULT_MATCH=%s/run/ FAULT_SKIP=/.lock FAULT_CALL=%s FAULT_NTH=%d "
                     "FAULT_ERRNO=%d "
                     "FAULT_COUNTS=%s/counts %s >%s/log 2>&1",
                     tu_fault_lib_path(), dir, kind, nth, err_no, dir, command, dir);
}

static long count_of(const char *kind)
{
    char path[300], name[16];
    snprintf(path, sizeof path, "%s/counts", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    long n, found = -1;
    while (fscanf(f, "%15s %ld", name, &n) == 2)
        if (!strcmp(name, kind))
            found = n;
    fclose(f);
    return found;
}

static int log_has(const char *text)
{
    return tu_system("grep -qF -- '%s' %s/log", text, dir) == 0;
}

/* Nothing named .*.tmp.* is left in dir/run. */
static void assert_no_temporary(void)
{
    char path[300];
    snprintf(path, sizeof path, "%s/run", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp."))
            fail_msg("left behind: %s", e->d_name);
    closedir(d);
}

static void assert_model_loads(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "%s/run/%s", dir, name);
    dml_model_file mf;
    dml_error err = {0};
    if (dml_model_file_read(path, &mf, &err) != DML_OK)
        fail_msg("%s does not load: %s", path, err.msg);
    dml_model_file_free(&mf);
}

static void assert_h5_opens(const char *name)
{
    char path[300];
    snprintf(path, sizeof path, "%s/run/%s", dir, name);
    hid_t f;
    H5E_BEGIN_TRY { f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); } H5E_END_TRY;
    if (f < 0)
        fail_msg("%s does not open", path);
    H5Fclose(f);
}

/* The files of dir/good, the previous run, copied to dir/run before each faulty one. */
static void restore(void)
{
    assert_int_equal(tu_system("rm -rf %s/run && cp -a %s/good %s/run", dir, dir, dir), 0);
}

/* Every call of every kind fails in turn; check(kind) verifies what is left. Returns the number
 * of failures injected. */
static int inject_all(const char *label, const char *command, void (*check)(void))
{
    restore();
    assert_int_equal(run_faulty(command, "none", 0, 0), 0);
    long counts[4];
    for (int k = 0; k < 4; k++) {
        counts[k] = count_of(KINDS[k]);
        assert_true(counts[k] > 0); /* the injector sees the files being written */
    }
    int injected = 0;
    char where[320];
    snprintf(where, sizeof where, "%s/run/", dir);
    for (int k = 0; k < 4; k++)
        for (int nth = 1; nth <= counts[k]; nth++) {
            restore();
            int rc = run_faulty(command, KINDS[k], nth, ERRNOS[k]);
            if (rc != 1 || !log_has(where) || !log_has(strerror(ERRNOS[k]))) {
                tu_system("cat %s/log", dir);
                fail_msg("%s number %d failed: exit %d; expected 1 and a message naming the "
                         "file and \"%s\"", KINDS[k], nth, rc, strerror(ERRNOS[k]));
            }
            assert_no_temporary();
            check();
            injected++;
        }
    print_message("  %s: %d failures injected (%ld writes, %ld fsyncs, %ld closes, %ld renames), "
                  "every one survived\n", label, injected, counts[0], counts[1], counts[2],
                  counts[3]);
    return injected;
}

static char train_cmd[2000];

static void check_training(void)
{
    assert_model_loads("model.h5");
    assert_h5_opens("checkpoint.h5");
}

static void test_training_outputs(void **state)
{
    (void)state;
    snprintf(train_cmd, sizeof train_cmd,
             "%s train configs/demo.yaml --out %s/run --set data.train=%s --set data.test=%s "
             "--set model.hidden=[16] --set model.dim=4 --set pq.m=2 --set pq.k=16 "
             "--set sampler.m=8 --set train.batch_size=24 --set train.threads=1 "
             "--set train.steps=12 --set train.eval_every=6 --set train.checkpoint_every=6",
             tu_dml_path(), dir, data, data);
    assert_int_equal(tu_system("%s >%s/log 2>&1 && mv %s/run %s/good", train_cmd, dir, dir, dir), 0);
    inject_all("training (checkpoint.h5, metrics.jsonl, model.h5, report.html)", train_cmd,
               check_training);
}

static char export_cmd[2000];

/* The previous index and ONNX model are there whole: byte for byte the files of dir/good (the
 * export writes the same bytes again, so a torn file would differ). */
static void check_exports(void)
{
    assert_int_equal(tu_system("cmp -s %s/good/x.index %s/run/x.index && "
                               "cmp -s %s/good/x.onnx %s/run/x.onnx", dir, dir, dir, dir), 0);
}

static void test_export_outputs(void **state)
{
    (void)state;
    snprintf(export_cmd, sizeof export_cmd,
             "%s export %s/good/model.h5 --faiss %s/run/x.index --db %s --onnx %s/run/x.onnx",
             tu_dml_path(), dir, dir, data, dir);
    assert_int_equal(tu_system("mkdir -p %s/run && %s >%s/log 2>&1 && cp %s/run/x.* %s/good/",
                               dir, export_cmd, dir, dir, dir), 0);
    inject_all("export (FAISS index, ONNX model)", export_cmd, check_exports);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_training_outputs),
        cmocka_unit_test(test_export_outputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
