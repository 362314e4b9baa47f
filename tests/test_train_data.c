/* What the training rows must hold for the configured loss to learn anything, checked through
 * the dml CLI before a run folder is written: label losses on one class, on classes of one row
 * each, mnr on a single pair; and the rows that do suffice still train. Validation on one label
 * says why it has no distance across labels. Training on bytes and testing on floats of the
 * same images warns, and the model records the scale it expects. */
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define WIDTH 8

static char dir[256];

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_system("rm -rf '%s'", dir);
    return 0;
}

/* DIR/name.csv: n rows of WIDTH Gaussian values around their label's centre, then the label,
 * label(i) for row i. */
static void write_csv(const char *name, int n, int (*label)(int))
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s.csv", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    float x[WIDTH];
    for (int i = 0; i < n; i++) {
        tu_fill_normal(x, WIDTH, 1.0f, (uint64_t)i + 1);
        for (int j = 0; j < WIDTH; j++)
            fprintf(f, "%.4f,", x[j] + 3.0f * (float)label(i));
        fprintf(f, "%d\n", label(i));
    }
    fclose(f);
}

static int one_class(int i)
{
    (void)i;
    return 3;
}

static int own_class(int i)
{
    return i;
}

static int two_classes(int i)
{
    return i % 2;
}

/* dml train on DIR/data.csv (test set too) with the extra arguments; the log in DIR/out.log. */
static int train(const char *out, const char *data, const char *extra)
{
    return tu_system("%s train configs/demo.yaml --out %s/%s --set data.train=%s/%s.csv "
                     "--set data.test=%s/%s.csv --set model.hidden=[16] --set model.dim=8 "
                     "--set pq.m=2 --set pq.k=4 --set train.threads=1 --set train.steps=3 "
                     "--set sampler.m=4 --set train.batch_size=8 %s >%s/%s.log 2>&1",
                     tu_dml_path(), dir, out, dir, data, dir, data, extra, dir, out);
}

static int log_has(const char *out, const char *text)
{
    return tu_system("grep -q -- '%s' %s/%s.log", text, dir, out) == 0;
}

static int folder_exists(const char *out)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", dir, out);
    struct stat st;
    return stat(path, &st) == 0;
}

/* exit 2 naming the data file and the message, nothing written */
static void assert_refused(const char *out, const char *data, const char *extra,
                           const char *message)
{
    int rc = train(out, data, extra);
    char file[400];
    snprintf(file, sizeof file, "%s/%s.csv: loss.type", dir, data);
    if (rc != 2 || !log_has(out, file) || !log_has(out, message)) {
        tu_system("cat %s/%s.log", dir, out);
        fail_msg("%s %s: exit %d, expected 2 and \"%s\"", data, extra, rc, message);
    }
    assert_false(folder_exists(out));
}

static void test_label_losses_need_two_classes_and_a_pair(void **state)
{
    (void)state;
    write_csv("one", 60, one_class);
    write_csv("own", 60, own_class);
    const char *losses[] = {"contrastive", "triplet", "cosine_pair"};
    for (int i = 0; i < 3; i++) {
        char extra[100], out[40];
        snprintf(extra, sizeof extra, "--set loss.type=%s", losses[i]);
        snprintf(out, sizeof out, "one_%s", losses[i]);
        assert_refused(out, "one", extra, "and the 54 training rows hold one class (label 3)");
        snprintf(out, sizeof out, "own_%s", losses[i]);
        assert_refused(out, "own", extra, "hold 54 classes, 0 of them with two rows or more");
    }
    /* the joint quantization loss adds to a label loss: the same rule */
    assert_refused("one_joint", "one", "--set loss.quantization.weight=0.1",
                   "loss.type triplet cannot learn from these rows: it needs at least 2 classes, "
                   "1 of them with two rows or more");
}

static void test_mnr_needs_pairs_of_two_classes_or_two_pairs(void **state)
{
    (void)state;
    write_csv("one", 60, one_class);
    write_csv("single", 1, one_class);
    const char *mnr = "--set loss.type=mnr --set sampler.type=random --set data.val_fraction=0";
    char extra[300];
    snprintf(extra, sizeof extra, "%s --set data.pairs=same_class", mnr);
    assert_refused("mnr_same", "one", extra, "needs at least 2 classes, 2 of them with two rows");
    snprintf(extra, sizeof extra, "%s --set data.pairs=halves", mnr);
    assert_refused("mnr_halves", "single", extra,
                   "loss.type mnr needs at least 2 training pairs (each anchor");
}

/* Enough: two classes of many rows train, and reconstruction needs no labels at all. */
static void test_rows_that_suffice_train(void **state)
{
    (void)state;
    write_csv("two", 60, two_classes);
    write_csv("one", 60, one_class);
    assert_int_equal(train("two", "two", ""), 0);
    char extra[600];
    snprintf(extra, sizeof extra, "--set loss.type=reconstruction --set model.type=autoencoder "
             "--set sampler.type=random --set data.test=%s/two.csv", dir);
    assert_int_equal(train("recon", "one", extra), 0);
}

/* A labelled test set of one label (every label metric 1.0 whatever the model), or of labels
 * no two rows share (no query to score), is refused before training, naming data.test. */
static void test_a_test_set_that_measures_nothing_is_refused(void **state)
{
    (void)state;
    write_csv("two", 60, two_classes);
    write_csv("one", 60, one_class);
    write_csv("own", 60, own_class);
    const char *sets[2] = {"one", "own"};
    const char *says[2] = {"one.csv: the 60 test rows hold one label (3), so every label metric",
                           "own.csv: no test row shares its label with another (60 rows, 60 "
                           "labels)"};
    for (int i = 0; i < 2; i++) {
        char extra[400];
        snprintf(extra, sizeof extra, "--set data.test=%s/%s.csv", dir, sets[i]);
        assert_int_equal(train(sets[i], "two", extra), 2);
        assert_true(log_has(sets[i], says[i]));
        assert_false(folder_exists(sets[i]));
    }
}

/* DIR/name.npy (and name.labels.npy, int32): a .npy of n rows of WIDTH values, descr "|u1"
 * (bytes) or "<f4". */
static void write_npy(const char *name, const char *descr, const void *data, size_t bytes, int n,
                      int width)
{
    char path[400], header[128];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    int len = width ? snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, "
                               "'shape': (%d, %d), }", descr, n, width)
                    : snprintf(header, sizeof header, "{'descr': '%s', 'fortran_order': False, "
                               "'shape': (%d,), }", descr, n);
    while ((10 + len + 1) % 64)
        header[len++] = ' ';
    header[len++] = '\n';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)len, 0};
    fwrite(pre, 1, 10, f);
    fwrite(header, 1, (size_t)len, f);
    fwrite(data, 1, bytes, f);
    fclose(f);
}

/* The same 200 images of 4 classes as bytes (0..255) and as floats (bytes / 255). */
static void write_images(void)
{
    enum { N = 200 };
    static uint8_t bytes[N * WIDTH];
    static float floats[N * WIDTH];
    static int32_t labels[N];
    float noise[WIDTH];
    for (int i = 0; i < N; i++) {
        labels[i] = i % 4;
        tu_fill_normal(noise, WIDTH, 20.0f, (uint64_t)i + 7);
        for (int j = 0; j < WIDTH; j++) {
            float v = 60.0f * (float)((labels[i] + j) % 4) + 40.0f + noise[j];
            bytes[i * WIDTH + j] = (uint8_t)(i == 0 ? (j ? 255 : 0) : v < 0 ? 0 : v > 255 ? 255 : v);
            floats[i * WIDTH + j] = bytes[i * WIDTH + j] / 255.0f;
        }
    }
    write_npy("bytes", "|u1", bytes, sizeof bytes, N, WIDTH);
    write_npy("bytes.labels", "<i4", labels, sizeof labels, N, 0);
    write_npy("floats", "<f4", floats, sizeof floats, N, WIDTH);
    write_npy("floats.labels", "<i4", labels, sizeof labels, N, 0);
}

/* dml train on DIR/train.npy, tested on DIR/test.npy. */
static int train_npy(const char *out, const char *train_set, const char *test_set)
{
    return tu_system("%s train configs/demo.yaml --out %s/%s --set data.train=%s/%s.npy "
                     "--set data.test=%s/%s.npy --set model.hidden=[16] --set model.dim=8 "
                     "--set pq.m=2 --set pq.k=4 --set train.threads=1 --set train.steps=3 "
                     "--set sampler.m=4 --set train.batch_size=8 >%s/%s.log 2>&1",
                     tu_dml_path(), dir, out, dir, train_set, dir, test_set, dir, out);
}

/* Bytes to train, floats of the same images to test: one warning naming both files, their
 * types and ranges; the model says what it expects. The same scale on both sides: no warning. */
static void test_scale_mismatch_warns(void **state)
{
    (void)state;
    write_images();
    assert_int_equal(train_npy("mixed", "bytes", "floats"), 0);
    char line[800];
    snprintf(line, sizeof line, "^warning: %s/floats.npy holds float32 values in \\[0, 1\\], but "
             "the training rows (%s/bytes.npy) held uint8 values in \\[0, 255\\]: the encoder "
             "would see inputs of another scale", dir, dir);
    if (!log_has("mixed", line)) {
        tu_system("cat %s/mixed.log", dir);
        fail_msg("no warning line \"%s\"", line);
    }
    assert_int_equal(tu_system("test $(grep -c warning %s/mixed.log) = 1", dir), 0);
    assert_int_equal(tu_system("%s info %s/mixed/model.h5 >%s/info.log", tu_dml_path(), dir, dir), 0);
    assert_true(log_has("info", "input_norm   unit (x / 255; expects raw uint8 values 0..255)"));
    assert_int_equal(train_npy("same", "bytes", "bytes"), 0);
    assert_false(log_has("same", "warning"));
    assert_int_equal(train_npy("floats", "floats", "floats"), 0);
    assert_false(log_has("floats", "warning"));
    assert_int_equal(tu_system("%s info %s/floats/model.h5 >%s/info.log", tu_dml_path(), dir, dir), 0);
    assert_true(log_has("info", "input_norm   unit (the identity; expects float32 values 0..1)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_losses_need_two_classes_and_a_pair),
        cmocka_unit_test(test_mnr_needs_pairs_of_two_classes_or_two_pairs),
        cmocka_unit_test(test_rows_that_suffice_train),
        cmocka_unit_test(test_a_test_set_that_measures_nothing_is_refused),
        cmocka_unit_test(test_scale_mismatch_warns),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
