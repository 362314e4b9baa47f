/* What the training rows must hold for the configured loss to learn anything, checked through
 * the dml CLI before a run folder is written: label losses on one class, on classes of one row
 * each, mnr on a single pair; and the rows that do suffice still train. Validation on one label
 * says why it has no distance across labels. */
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
    assert_int_equal(train("recon", "one", "--set loss.type=reconstruction "
                                           "--set model.type=autoencoder --set sampler.type=random"),
                     0);
}

/* Validation on a test set of one label has no pair across labels: the log says so, where it
 * printed "nan". */
static void test_validation_on_one_label_says_so(void **state)
{
    (void)state;
    write_csv("two", 60, two_classes);
    write_csv("one", 60, one_class);
    assert_int_equal(tu_system("%s train configs/demo.yaml --out %s/oneval --set data.train=%s/two.csv "
                               "--set data.test=%s/one.csv --set data.val_fraction=0 "
                               "--set model.hidden=[16] --set model.dim=8 --set pq.m=2 "
                               "--set pq.k=4 --set train.threads=1 --set train.steps=2 "
                               "--set sampler.m=4 --set train.batch_size=8 >%s/oneval.log 2>&1",
                               tu_dml_path(), dir, dir, dir, dir),
                     0);
    assert_true(log_has("oneval", "distance same/other label [0-9.]*/- (one label: no pair across "
                                  "labels)"));
    assert_false(log_has("oneval", "nan"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_label_losses_need_two_classes_and_a_pair),
        cmocka_unit_test(test_mnr_needs_pairs_of_two_classes_or_two_pairs),
        cmocka_unit_test(test_rows_that_suffice_train),
        cmocka_unit_test(test_validation_on_one_label_says_so),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
