/* dml_train (include/dml.h): training from memory. The same config and rows give the model
 * dml train gives, bit for bit; config text errors carry line:col; overrides apply; labels out
 * of range are refused; the caller's arrays are never written; the callback sees every step
 * and validation; a stop request ends the run with DML_ERR_INTERRUPTED and a checkpoint that
 * dml train --resume continues; the model returned encodes as the model.h5 saved from it;
 * dml_evaluate's metrics are dml eval --json's (a metric list, pairs of a dual encoder), and it
 * refuses what dml eval refuses. */
#include "tests/testutil.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dml.h"

#define N_ROWS 600
#define WIDTH 16
#define CLASSES 4
#define STEPS 20

static char dir[256], data[512];
static float *x;    /* [N_ROWS, WIDTH] the blobs of data, as read */
static int64_t *y;  /* [N_ROWS] */

/* The config of every run here: demo.yaml's keys, small, on the blobs file. */
static const char CONFIG[] = "name: api\n"
                             "seed: 42\n"
                             "data:\n"
                             "  val_fraction: 0.1\n"
                             "model:\n"
                             "  hidden: [32]\n"
                             "  dim: 8\n"
                             "loss:\n"
                             "  type: triplet\n"
                             "sampler:\n"
                             "  m: 8\n"
                             "train:\n"
                             "  batch_size: 32\n"
                             "  threads: 1\n"
                             "  schedule: constant\n"
                             "  eval_every: 5\n"
                             "pq:\n"
                             "  m: 2\n"
                             "  k: 16\n";

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir);
    snprintf(data, sizeof data, "%s/blobs.h5", dir);
    tu_write_blobs(data, N_ROWS, WIDTH, CLASSES);
    x = malloc(sizeof(float) * N_ROWS * WIDTH);
    y = malloc(sizeof(int64_t) * N_ROWS);
    hid_t f = H5Fopen(data, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dx = H5Dopen2(f, "X", H5P_DEFAULT), dy = H5Dopen2(f, "y", H5P_DEFAULT);
    assert_true(x && y && dx >= 0 && dy >= 0);
    assert_true(H5Dread(dx, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) >= 0);
    assert_true(H5Dread(dy, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y) >= 0);
    H5Dclose(dx);
    H5Dclose(dy);
    H5Fclose(f);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tu_system("rm -rf '%s'", dir);
    free(x);
    free(y);
    return 0;
}

/* A call's status, its message printed when it is not the one expected. */
#define assert_status(call, want)                                                              \
    do {                                                                                       \
        dml_status got_ = (call);                                                              \
        if (got_ != (want))                                                                    \
            print_message("%s: %s\n", dml_status_name(got_), msg);                             \
        assert_int_equal(got_, (want));                                                        \
    } while (0)

static dml_train_data blobs(void)
{
    dml_train_data d = {.x = x, .n = N_ROWS, .d = WIDTH, .y = y};
    return d;
}

/* The config text with data.train naming the blobs file (the CLI reads it; the API's arrays
 * take its place), into buf. */
static const char *config_on_file(char *buf, size_t n)
{
    snprintf(buf, n, "%s", CONFIG);
    char *at = strstr(buf, "  val_fraction");
    assert_non_null(at);
    char tail[sizeof CONFIG];
    snprintf(tail, sizeof tail, "%s", at);
    snprintf(at, n - (size_t)(at - buf), "  train: %s\n%s", data, tail);
    return buf;
}

/* dml train on the same config and file, 20 steps, into dir/out. */
static int cli_train(const char *out, const char *extra)
{
    char path[600];
    snprintf(path, sizeof path, "%s/api.yaml", dir);
    FILE *f = fopen(path, "w");
    char text[4096];
    assert_non_null(f);
    fputs(config_on_file(text, sizeof text), f);
    fclose(f);
    return tu_system("%s train %s --out %s/%s --set train.steps=%d %s >%s/%s.log 2>&1",
                     tu_dml_path(), path, dir, out, STEPS, extra, dir, out);
}

static const char *const SET_STEPS[] = {"train.steps=20"};

static void test_same_model_as_the_cli(void **state)
{
    (void)state;
    assert_int_equal(cli_train("cli", ""), 0);
    char text[4096], msg[512], out[600];
    dml_train_data d = blobs();
    dml_train_options o = {0};
    snprintf(out, sizeof out, "%s/api", dir);
    o.out_dir = out;
    dml_model *m;
    assert_status(dml_train(config_on_file(text, sizeof text), SET_STEPS, 1, &d, &o, &m, msg,
                               sizeof msg),
                     DML_OK);
    char cli[600];
    snprintf(cli, sizeof cli, "%s/cli", dir);
    tu_assert_same_model(cli, out); /* the run folder's model.h5 */
    /* and the model handle encodes as the CLI's model.h5 opened from disk */
    char path[700];
    snprintf(path, sizeof path, "%s/model.h5", cli);
    dml_model *disk;
    assert_int_equal(dml_model_open(path, &disk, msg, sizeof msg), DML_OK);
    float a[N_ROWS * 8], b[N_ROWS * 8];
    assert_int_equal(dml_model_dim_out(m), 8);
    assert_int_equal(dml_model_encode(m, x, N_ROWS, a), DML_OK);
    assert_int_equal(dml_model_encode(disk, x, N_ROWS, b), DML_OK);
    assert_memory_equal(a, b, sizeof a);
    assert_non_null(dml_model_pq(m));
    /* saved, and opened again: the same encoder */
    snprintf(path, sizeof path, "%s/saved.h5", dir);
    assert_int_equal(dml_model_save(m, path, msg, sizeof msg), DML_OK);
    dml_model *saved;
    assert_int_equal(dml_model_open(path, &saved, msg, sizeof msg), DML_OK);
    assert_int_equal(dml_model_encode(saved, x, N_ROWS, b), DML_OK);
    assert_memory_equal(a, b, sizeof a);
    dml_model_free(saved);
    dml_model_free(disk);
    dml_model_free(m);
}

static void test_config_errors_carry_line_and_column(void **state)
{
    (void)state;
    char msg[512];
    dml_model *m = (dml_model *)1;
    dml_train_data d = blobs();
    assert_status(dml_train("model:\n  dim: fast\n", NULL, 0, &d, NULL, &m, msg, sizeof msg),
                     DML_ERR_CONFIG);
    assert_null(m);
    assert_non_null(strstr(msg, "<config>:2:8: model.dim"));
    assert_status(dml_train("model: [\n", NULL, 0, &d, NULL, &m, msg, sizeof msg),
                     DML_ERR_CONFIG);
    assert_non_null(strstr(msg, "<config>:"));
    assert_non_null(strstr(msg, "YAML syntax error"));
    /* an override as --set takes it, and its errors as --set's */
    const char *const bad[] = {"model.dim=-3"};
    assert_status(dml_train(NULL, bad, 1, &d, NULL, &m, msg, sizeof msg), DML_ERR_CONFIG);
    assert_non_null(strstr(msg, "--set"));
    assert_non_null(strstr(msg, "model.dim"));
}

/* Counts the callback's calls; stops after stop_at steps when nonzero. */
typedef struct seen {
    long steps, validations, last_step, stop_at;
    int bad;
} seen;

static int on_progress(void *ctx, const dml_train_progress *p)
{
    seen *s = ctx;
    if (p->n_metrics == 0) {
        s->bad |= p->step != s->last_step + 1 || p->total_steps != STEPS || !isfinite(p->loss) ||
                  !(p->lr > 0.0f);
        s->steps++;
        s->last_step = p->step;
    } else {
        s->bad |= p->n_metrics != 2 || strcmp(p->metric_names[0], "map_at_r") != 0 ||
                  !(p->metric_values[0] >= 0.0 && p->metric_values[0] <= 1.0);
        s->validations++;
    }
    return s->stop_at && p->step >= s->stop_at;
}

static void test_overrides_and_callback(void **state)
{
    (void)state;
    char msg[512];
    dml_train_data d = blobs();
    seen s = {0};
    dml_train_options o = {.callback = on_progress, .callback_ctx = &s};
    dml_model *m;
    /* no run folder: nothing written, the model in memory */
    assert_status(dml_train(CONFIG, SET_STEPS, 1, &d, &o, &m, msg, sizeof msg), DML_OK);
    assert_int_equal(s.steps, STEPS);
    assert_int_equal(s.validations, STEPS / 5);
    assert_false(s.bad);
    dml_model_free(m);
    const char *const sets[] = {"train.steps=20", "model.dim=4", "pq.m=1"};
    assert_status(dml_train(CONFIG, sets, 3, &d, NULL, &m, msg, sizeof msg), DML_OK);
    assert_int_equal(dml_model_dim_out(m), 4);
    dml_model_free(m);
}

static void test_bad_labels_are_refused(void **state)
{
    (void)state;
    char msg[512];
    int64_t *bad = malloc(sizeof(int64_t) * N_ROWS);
    memcpy(bad, y, sizeof(int64_t) * N_ROWS);
    bad[7] = -1;
    dml_train_data d = blobs();
    d.y = bad;
    dml_model *m;
    assert_status(dml_train(CONFIG, SET_STEPS, 1, &d, NULL, &m, msg, sizeof msg), DML_ERR_DATA);
    assert_string_equal(msg, "<x>: label -1 of row 7 (0-based): expected 0..1000000");
    bad[7] = 1000001;
    assert_status(dml_train(CONFIG, SET_STEPS, 1, &d, NULL, &m, msg, sizeof msg), DML_ERR_DATA);
    assert_non_null(strstr(msg, "label 1000001 of row 7"));
    free(bad);
}

/* standardize copies the rows before normalising them; other runs read them in place. */
static void test_caller_arrays_are_untouched(void **state)
{
    (void)state;
    char msg[512];
    float *before = malloc(sizeof(float) * N_ROWS * WIDTH);
    memcpy(before, x, sizeof(float) * N_ROWS * WIDTH);
    dml_train_data d = blobs();
    d.x_test = x;
    d.n_test = N_ROWS;
    d.y_test = y;
    const char *const sets[] = {"train.steps=20", "data.normalize=standardize"};
    dml_model *m;
    assert_status(dml_train(CONFIG, sets, 2, &d, NULL, &m, msg, sizeof msg), DML_OK);
    assert_memory_equal(before, x, sizeof(float) * N_ROWS * WIDTH);
    dml_model_free(m);
    /* rows read where they are (no normalisation writes them), and replaced by their halves */
    const char *const halves[] = {"train.steps=5", "data.pairs=halves", "loss.type=mnr"};
    assert_status(dml_train(CONFIG, halves, 3, &d, NULL, &m, msg, sizeof msg), DML_OK);
    assert_memory_equal(before, x, sizeof(float) * N_ROWS * WIDTH);
    assert_int_equal(dml_model_dim_in(m), WIDTH / 2);
    dml_model_free(m);
    free(before);
}

/* Validation rows given apart: the callback sees their validations; data.val_fraction set as
 * well is refused at its position; rows of another width are refused naming x_val. */
static void test_validation_rows(void **state)
{
    (void)state;
    char msg[512];
    const char *no_fraction = strstr(CONFIG, "model:"); /* CONFIG without data.val_fraction */
    char text[sizeof CONFIG];
    snprintf(text, sizeof text, "name: api\nseed: 42\n%s", no_fraction);
    dml_train_data d = blobs();
    d.n = 500;
    d.x_val = x + 500 * WIDTH;
    d.n_val = 100;
    d.y_val = y + 500;
    seen s = {0};
    dml_train_options o = {.callback = on_progress, .callback_ctx = &s};
    dml_model *m;
    assert_status(dml_train(text, SET_STEPS, 1, &d, &o, &m, msg, sizeof msg), DML_OK);
    assert_int_equal(s.validations, STEPS / 5);
    assert_false(s.bad);
    dml_model_free(m);
    assert_status(dml_train(CONFIG, SET_STEPS, 1, &d, NULL, &m, msg, sizeof msg), DML_ERR_CONFIG);
    assert_string_equal(msg, "<config>:4:17: data.val_fraction: the validation rows are given "
                             "(x_val): leave it unset");
    d.y_val = NULL;
    assert_status(dml_train(text, SET_STEPS, 1, &d, NULL, &m, msg, sizeof msg), DML_ERR_DATA);
    assert_non_null(strstr(msg, "<x_val>: validation rows without labels"));
}

/* A second view (data.pairs: file, two towers): x_b trains encoder_b, which encodes. */
static void test_second_view(void **state)
{
    (void)state;
    char msg[512];
    enum { D_B = 6 };
    float *x_b = malloc(sizeof(float) * N_ROWS * D_B);
    for (int i = 0; i < N_ROWS; i++)
        for (int j = 0; j < D_B; j++)
            x_b[i * D_B + j] = x[i * WIDTH + j] * 0.5f;
    dml_train_data d = {.x = x, .n = N_ROWS, .d = WIDTH, .x_b = x_b, .d_b = D_B};
    const char *const sets[] = {"train.steps=10", "data.pairs=file", "model.type=dual",
                                "loss.type=mnr", "data.val_fraction=0"};
    dml_model *m;
    assert_status(dml_train("model: {hidden: [16], dim: 8}\npq: {m: 2, k: 16}\n", sets, 5, &d,
                            NULL, &m, msg, sizeof msg),
                  DML_OK);
    assert_int_equal(dml_model_dim_in(m), WIDTH);
    assert_int_equal(dml_model_dim_in_b(m), D_B);
    float out[4 * 8];
    assert_int_equal(dml_model_encode_b(m, x_b, 4, out), DML_OK);
    dml_model_free(m);
    free(x_b);
}

/* A stop asked by the callback at step 8: DML_ERR_INTERRUPTED, checkpoint.h5 at step 8, and
 * dml train --resume ends with the model of an uninterrupted run. */
static void test_stop_and_resume(void **state)
{
    (void)state;
    char text[4096], msg[512], out[600];
    dml_train_data d = blobs();
    seen s = {.stop_at = 8};
    snprintf(out, sizeof out, "%s/stopped", dir);
    dml_train_options o = {.out_dir = out, .callback = on_progress, .callback_ctx = &s};
    dml_model *m;
    assert_status(dml_train(config_on_file(text, sizeof text), SET_STEPS, 1, &d, &o, &m, msg,
                               sizeof msg),
                     DML_ERR_INTERRUPTED);
    assert_null(m);
    assert_non_null(strstr(msg, "interrupted at step 8 of 20"));
    assert_int_equal(tu_system("test -f %s/checkpoint.h5", out), 0);
    /* the flag, from the start: nothing trained, a clean stop */
    volatile int stop = 1;
    dml_train_options o2 = {.stop = &stop};
    assert_status(dml_train(CONFIG, SET_STEPS, 1, &d, &o2, &m, msg, sizeof msg),
                     DML_ERR_INTERRUPTED);
    assert_non_null(strstr(msg, "interrupted at step 0 of 20"));
    assert_int_equal(cli_train("stopped", "--resume"), 0);
    if (tu_system("test -d %s/cli", dir) != 0)
        assert_int_equal(cli_train("cli", ""), 0);
    char cli[600];
    snprintf(cli, sizeof cli, "%s/cli", dir);
    tu_assert_same_model(cli, out);
}

/* dml_evaluate's metrics on d (pq, metrics) against dml eval --json's on the same model and
 * rows (extra: its arguments beyond the model and the data). */
static void same_as_cli_eval(dml_model *m, const char *model, const char *extra,
                             const dml_eval_data *d, int pq, const char *metrics)
{
    char msg[512], json[8192] = "";
    assert_int_equal(tu_system("%s eval %s --data %s %s --json >%s/eval.json 2>%s/eval.log",
                               tu_dml_path(), model, data, extra, dir, dir),
                     0);
    char path[600];
    snprintf(path, sizeof path, "%s/eval.json", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t len = fread(json, 1, sizeof json - 1, f);
    json[len] = '\0';
    fclose(f);
    dml_metrics *mt;
    assert_status(dml_evaluate(m, d, pq, metrics, &mt, msg, sizeof msg), DML_OK);
    int keys = 0;
    for (const char *at = json; (at = strstr(at, "\": ")); at++)
        keys++;
    assert_int_equal(dml_metrics_count(mt), keys - 5); /* then n_queries ... seconds */
    assert_true(dml_metrics_count(mt) > 0);
    for (int i = 0; i < dml_metrics_count(mt); i++) {
        char want[128];
        double v = dml_metrics_value(mt, i);
        if (isfinite(v))
            snprintf(want, sizeof want, "\"%s\": %.8g,", dml_metrics_name(mt, i), v);
        else
            snprintf(want, sizeof want, "\"%s\": null,", dml_metrics_name(mt, i));
        if (!strstr(json, want))
            fail_msg("%s not in dml eval's %s", want, json);
        assert_true(dml_metrics_get(mt, dml_metrics_name(mt, i)) == v || !isfinite(v));
    }
    assert_true(isnan(dml_metrics_get(mt, "no_such_metric")));
    dml_metrics_free(mt);
}

/* dml train's model (dir/cli, trained when not yet there), its path in path[n], opened. */
static dml_model *cli_model(char *path, size_t n)
{
    char msg[512];
    if (tu_system("test -d %s/cli", dir) != 0)
        assert_int_equal(cli_train("cli", ""), 0);
    snprintf(path, n, "%s/cli/model.h5", dir);
    dml_model *m;
    assert_status(dml_model_open(path, &m, msg, sizeof msg), DML_OK);
    return m;
}

static void test_evaluate_equals_dml_eval(void **state)
{
    (void)state;
    char path[600], msg[512];
    dml_model *m = cli_model(path, sizeof path);
    dml_eval_data d = {.x = x, .n = N_ROWS, .d = WIDTH, .y = y};
    same_as_cli_eval(m, path, "", &d, 0, NULL);
    same_as_cli_eval(m, path, "--metrics precision_at_1,,map_at_r", &d, 0,
                     "precision_at_1,,map_at_r");
    char extra[600];
    snprintf(extra, sizeof extra, "--db %s --pq", data);
    d.x_db = x;
    d.n_db = N_ROWS;
    d.y_db = y;
    same_as_cli_eval(m, path, extra, &d, 1, NULL);
    /* a database label out of range is refused, naming its rows (as dml_train names <x>) */
    int64_t *bad = malloc(sizeof(int64_t) * N_ROWS);
    memcpy(bad, y, sizeof(int64_t) * N_ROWS);
    bad[3] = 2000000;
    d.y_db = bad;
    dml_metrics *mt = (dml_metrics *)1;
    assert_status(dml_evaluate(m, &d, 0, NULL, &mt, msg, sizeof msg), DML_ERR_DATA);
    assert_null(mt);
    assert_string_equal(msg, "<x_db>: label 2000000 of row 3 (0-based): expected 0..1000000");
    free(bad);
    dml_model_free(m);
}

/* Label metrics that measure nothing are refused as dml eval refuses them, not NaN or 1.0; a
 * metric the data cannot give is refused naming it; rows of another width name the array. */
static void test_evaluate_refuses_what_dml_eval_refuses(void **state)
{
    (void)state;
    char path[600], msg[512];
    dml_model *m = cli_model(path, sizeof path);
    int64_t *labels = malloc(sizeof(int64_t) * N_ROWS);
    for (int i = 0; i < N_ROWS; i++)
        labels[i] = 0;
    dml_eval_data d = {.x = x, .n = N_ROWS, .d = WIDTH, .y = labels};
    dml_metrics *mt = (dml_metrics *)1;
    assert_status(dml_evaluate(m, &d, 0, NULL, &mt, msg, sizeof msg), DML_ERR_DATA);
    assert_null(mt);
    assert_string_equal(msg, "<x>: every query row has the same label, so every label metric "
                             "(map_at_r, knn_accuracy, ...) would be 1.0 whatever the model: "
                             "expected rows of two labels or more");
    for (int i = 0; i < N_ROWS; i++)
        labels[i] = i;
    assert_status(dml_evaluate(m, &d, 0, NULL, &mt, msg, sizeof msg), DML_ERR_DATA);
    assert_non_null(strstr(msg, "<x>: no row shares its label with another (600 rows"));
    d.y = y;
    assert_status(dml_evaluate(m, &d, 0, "map_at_r,recall_at_k", &mt, msg, sizeof msg),
                  DML_ERR_USAGE);
    assert_non_null(strstr(msg, "recall_at_k"));
    d.d = WIDTH - 1;
    assert_status(dml_evaluate(m, &d, 0, NULL, &mt, msg, sizeof msg), DML_ERR_DATA);
    assert_string_equal(msg, "<x>: rows have 15 features, but the model's encoder takes 16");
    free(labels);
    dml_model_free(m);
}

/* A dual encoder is scored on pairs as dml eval scores a file of one view (each row's halves):
 * recall_at_k and mrr_at_10, the same whether x's halves or x and x_b are given. */
static void test_evaluate_pairs(void **state)
{
    (void)state;
    char msg[512], path[600];
    const char *const halves[] = {"train.steps=5", "data.pairs=halves", "loss.type=mnr",
                                  "model.type=dual"};
    dml_model *m;
    dml_train_data td = blobs();
    assert_status(dml_train(CONFIG, halves, 4, &td, NULL, &m, msg, sizeof msg), DML_OK);
    snprintf(path, sizeof path, "%s/dual.h5", dir);
    assert_status(dml_model_save(m, path, msg, sizeof msg), DML_OK);
    dml_eval_data d = {.x = x, .n = N_ROWS, .d = WIDTH, .y = y};
    same_as_cli_eval(m, path, "", &d, 0, NULL);
    enum { H = WIDTH / 2 };
    float *a = malloc(sizeof(float) * N_ROWS * H), *b = malloc(sizeof(float) * N_ROWS * H);
    for (int i = 0; i < N_ROWS; i++) {
        memcpy(a + i * H, x + i * WIDTH, sizeof(float) * H);
        memcpy(b + i * H, x + i * WIDTH + H, sizeof(float) * H);
    }
    dml_eval_data two = {.x = a, .n = N_ROWS, .d = H, .y = y, .x_b = b, .d_b = H};
    same_as_cli_eval(m, path, "--metrics recall_at_k,mrr_at_10", &two, 0, "recall_at_k,mrr_at_10");
    dml_metrics *mt = (dml_metrics *)1;
    two.x_db = a;
    two.n_db = N_ROWS;
    assert_status(dml_evaluate(m, &two, 0, NULL, &mt, msg, sizeof msg), DML_ERR_USAGE);
    assert_null(mt);
    assert_non_null(strstr(msg, "<x_db>: a dual encoder's references"));
    free(a);
    free(b);
    dml_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_model_as_the_cli),
        cmocka_unit_test(test_config_errors_carry_line_and_column),
        cmocka_unit_test(test_overrides_and_callback),
        cmocka_unit_test(test_bad_labels_are_refused),
        cmocka_unit_test(test_caller_arrays_are_untouched),
        cmocka_unit_test(test_validation_rows),
        cmocka_unit_test(test_second_view),
        cmocka_unit_test(test_stop_and_resume),
        cmocka_unit_test(test_evaluate_equals_dml_eval),
        cmocka_unit_test(test_evaluate_refuses_what_dml_eval_refuses),
        cmocka_unit_test(test_evaluate_pairs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
