/* Splits (validation hold-out, k labels per class, unlabelled mode) and input normalisation:
 * deterministic for a seed, stratified counts, a partition of the rows, fitted on the
 * training rows only. */
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

/* n rows of width 2 (row i = (i, -i)); class c has sizes[c] rows, labels interleaved. */
static void make_data(dml_dataset *ds, const int *sizes, int k)
{
    int n = 0, left[16];
    for (int c = 0; c < k; c++)
        n += left[c] = sizes[c];
    dml_error err = {0};
    assert_int_equal(dml_dataset_alloc(ds, n, 2, 1, &err), DML_OK);
    for (int i = 0, c = 0; i < n; c = (c + 1) % k) {
        if (!left[c])
            continue;
        left[c]--;
        ds->y[i] = c;
        ds->x[2 * i] = (float)i;
        ds->x[2 * i + 1] = -(float)i;
        i++;
    }
    ds->n_classes = k;
    snprintf(ds->source, sizeof ds->source, "mem.h5");
}

static void split(dml_split *s, const dml_dataset *ds, float frac, int per_class, int unlabelled,
                  uint64_t seed)
{
    dml_split_spec spec = {frac, per_class, unlabelled};
    dml_rng rng;
    dml_rng_seed(&rng, seed);
    dml_error err = {0};
    assert_int_equal(dml_split_make(s, ds, &spec, &rng, &err), DML_OK);
}

/* train, val and unlabelled are sorted, disjoint and cover every row. */
static void check_partition(const dml_split *s, int n)
{
    char *seen = calloc((size_t)n, 1);
    const int32_t *sets[3] = {s->train, s->val, s->unlabelled};
    const int sizes[3] = {s->n_train, s->n_val, s->n_unlabelled};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < sizes[k]; i++) {
            assert_true(sets[k][i] >= 0 && sets[k][i] < n);
            assert_false(seen[sets[k][i]]);
            seen[sets[k][i]] = 1;
            if (i > 0)
                assert_true(sets[k][i - 1] < sets[k][i]);
        }
    assert_int_equal(sizes[0] + sizes[1] + sizes[2], n);
    free(seen);
}

static void count_classes(const dml_dataset *ds, const int32_t *rows, int n, int *count, int k)
{
    memset(count, 0, (size_t)k * sizeof *count);
    for (int i = 0; i < n; i++)
        count[ds->y[rows[i]]]++;
}

static int same_rows(const int32_t *a, int na, const int32_t *b, int nb)
{
    return na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0;
}

static void test_validation_stratified_and_seeded(void **state)
{
    (void)state;
    const int sizes[4] = {40, 30, 20, 10};
    dml_dataset ds;
    make_data(&ds, sizes, 4);
    dml_split a, b, c;
    split(&a, &ds, 0.1f, 0, 0, 7);
    split(&b, &ds, 0.1f, 0, 0, 7);
    split(&c, &ds, 0.1f, 0, 0, 8);
    check_partition(&a, 100);
    assert_int_equal(a.n_val, 10);
    assert_int_equal(a.n_unlabelled, 0);
    int count[4];
    count_classes(&ds, a.val, a.n_val, count, 4);
    assert_int_equal(count[0], 4);
    assert_int_equal(count[1], 3);
    assert_int_equal(count[2], 2);
    assert_int_equal(count[3], 1);
    assert_true(same_rows(a.val, a.n_val, b.val, b.n_val));
    assert_true(same_rows(a.train, a.n_train, b.train, b.n_train));
    assert_false(same_rows(a.val, a.n_val, c.val, c.n_val));
    dml_split_free(&a);
    dml_split_free(&b);
    dml_split_free(&c);
    dml_dataset_free(&ds);
}

static void test_validation_largest_remainders(void **state)
{
    (void)state;
    /* 0.1 of 5 is 0.5 for each class; round(0.1 * 15) = 2 rows go to classes 0 and 1. */
    const int sizes[3] = {5, 5, 5};
    dml_dataset ds;
    make_data(&ds, sizes, 3);
    dml_split s;
    split(&s, &ds, 0.1f, 0, 0, 1);
    int count[3];
    count_classes(&ds, s.val, s.n_val, count, 3);
    assert_int_equal(count[0], 1);
    assert_int_equal(count[1], 1);
    assert_int_equal(count[2], 0);
    dml_split_free(&s);
    /* 0.3 of (7, 2, 1): 2.1, 0.6, 0.3 -> floors 2, 0, 0, total round(3.0) = 3: class 1 adds one. */
    const int uneven[3] = {7, 2, 1};
    dml_dataset_free(&ds);
    make_data(&ds, uneven, 3);
    split(&s, &ds, 0.3f, 0, 0, 1);
    count_classes(&ds, s.val, s.n_val, count, 3);
    assert_int_equal(count[0], 2);
    assert_int_equal(count[1], 1);
    assert_int_equal(count[2], 0);
    check_partition(&s, 10);
    dml_split_free(&s);
    dml_dataset_free(&ds);
}

static void test_labels_per_class(void **state)
{
    (void)state;
    const int sizes[4] = {40, 30, 20, 2};
    dml_dataset ds;
    make_data(&ds, sizes, 4);
    dml_split a, b, c;
    split(&a, &ds, 0.1f, 3, 0, 11);
    split(&b, &ds, 0.1f, 3, 0, 11);
    split(&c, &ds, 0.1f, 3, 0, 12);
    check_partition(&a, 92);
    int count[4];
    count_classes(&ds, a.train, a.n_train, count, 4);
    assert_int_equal(count[0], 3);
    assert_int_equal(count[1], 3);
    assert_int_equal(count[2], 3);
    assert_int_equal(count[3], 2); /* the class had 2 rows, both kept (none went to val) */
    assert_int_equal(a.n_train, 11);
    assert_int_equal(a.n_val, 9);
    assert_int_equal(a.n_unlabelled, 92 - 11 - 9);
    assert_true(same_rows(a.train, a.n_train, b.train, b.n_train));
    assert_true(same_rows(a.unlabelled, a.n_unlabelled, b.unlabelled, b.n_unlabelled));
    assert_false(same_rows(a.train, a.n_train, c.train, c.n_train));
    /* Without a validation split, every row is labelled-kept or unlabelled. */
    dml_split d;
    split(&d, &ds, 0.0f, 5, 0, 11);
    check_partition(&d, 92);
    assert_int_equal(d.n_val, 0);
    assert_int_equal(d.n_train, 5 + 5 + 5 + 2);
    dml_split_free(&a);
    dml_split_free(&b);
    dml_split_free(&c);
    dml_split_free(&d);
    dml_dataset_free(&ds);
}

static void test_unlabelled_mode(void **state)
{
    (void)state;
    const int sizes[2] = {99, 1};
    dml_dataset ds;
    make_data(&ds, sizes, 2);
    dml_split s, t;
    split(&s, &ds, 0.25f, 0, 1, 3); /* labels ignored: 25 of 100, whatever the classes */
    check_partition(&s, 100);
    assert_int_equal(s.n_val, 25);
    assert_int_equal(s.n_train, 75);
    split(&t, &ds, 0.25f, 0, 1, 4);
    assert_false(same_rows(s.val, s.n_val, t.val, t.n_val));
    dml_split_free(&s);
    dml_split_free(&t);
    /* A data set without labels splits the same way. */
    free(ds.y);
    ds.y = NULL;
    ds.n_classes = 0;
    split(&s, &ds, 0.25f, 0, 0, 3);
    assert_int_equal(s.n_val, 25);
    dml_split_free(&s);
    dml_split_spec spec = {0.1f, 2, 0};
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    dml_error err = {0};
    assert_int_equal(dml_split_make(&s, &ds, &spec, &rng, &err), DML_ERR_DATA);
    assert_string_equal(err.file, "mem.h5");
    assert_non_null(strstr(err.msg, "labels_per_class needs labels"));
    assert_null(s.train);
    dml_dataset_free(&ds);
}

static void test_split_errors(void **state)
{
    (void)state;
    const int sizes[2] = {50, 50};
    dml_dataset ds;
    make_data(&ds, sizes, 2);
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    dml_error err = {0};
    dml_split s;
    const dml_split_spec bad[3] = {{1.0f, 0, 0}, {-0.1f, 0, 0}, {0.1f, 3, 1}};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dml_split_make(&s, &ds, &bad[i], &rng, &err), DML_ERR_USAGE);
        assert_null(s.train);
    }
    dml_split_spec tiny = {0.001f, 0, 0};
    assert_int_equal(dml_split_make(&s, &ds, &tiny, &rng, &err), DML_ERR_DATA);
    assert_non_null(strstr(err.msg, "val_fraction 0.001 of 100 rows holds out no row"));
    dml_dataset_free(&ds);
}

/* ---- normalisation ---- */

static void test_standardize_on_training_rows(void **state)
{
    (void)state;
    dml_dataset ds;
    dml_error err = {0};
    assert_int_equal(dml_dataset_alloc(&ds, 5, 3, 0, &err), DML_OK);
    /* Rows 0..3 train: feature 0 = 1,2,3,4 (mean 2.5, std sqrt(1.25)); feature 1 constant 7;
     * feature 2 = 0,0,10,10 (mean 5, std 5). Row 4 is held out, with wild values. */
    const float x[15] = {1, 7, 0, 2, 7, 0, 3, 7, 10, 4, 7, 10, 1000, -1000, 1000};
    memcpy(ds.x, x, sizeof x);
    const int32_t train[4] = {0, 1, 2, 3};
    dml_input_norm norm;
    assert_int_equal(dml_input_norm_fit(&norm, DML_NORM_STANDARDIZE, &ds, 0, train, 4, &err),
                     DML_OK);
    assert_int_equal(norm.d, 3);
    assert_float_equal(norm.mean[0], 2.5, 1e-6);
    assert_float_equal(norm.std[0], sqrt(1.25), 1e-6);
    assert_float_equal(norm.mean[1], 7.0, 1e-6);
    assert_float_equal(norm.std[1], 1.0, 0.0); /* constant: std 1, not 1e-6 */
    assert_float_equal(norm.mean[2], 5.0, 1e-6);
    assert_float_equal(norm.std[2], 5.0, 1e-6);
    dml_input_norm_apply(&norm, ds.x, 5);
    assert_float_equal(ds.x[0], -1.5 / sqrt(1.25), 1e-6);
    assert_float_equal(ds.x[1], 0.0, 0.0);
    assert_float_equal(ds.x[8], 1.0, 1e-6);
    assert_float_equal(ds.x[13], -1007.0, 1e-3); /* row 4, feature 1: (x - 7) / 1 */
    dml_input_norm_free(&norm);
    assert_null(norm.mean);
    /* All rows (rows = NULL) would include row 4. */
    memcpy(ds.x, x, sizeof x);
    assert_int_equal(dml_input_norm_fit(&norm, DML_NORM_STANDARDIZE, &ds, 0, NULL, 0, &err),
                     DML_OK);
    assert_float_equal(norm.mean[0], (1 + 2 + 3 + 4 + 1000) / 5.0, 1e-4);
    dml_input_norm_free(&norm);
    dml_dataset_free(&ds);
}

static void test_unit_and_none(void **state)
{
    (void)state;
    dml_dataset ds;
    dml_error err = {0};
    assert_int_equal(dml_dataset_alloc(&ds, 2, 2, 0, &err), DML_OK);
    const float x[4] = {0, 51, 255, 102};
    memcpy(ds.x, x, sizeof x);
    dml_input_norm norm;
    /* Float data: unit is the identity. */
    assert_int_equal(dml_input_norm_fit(&norm, DML_NORM_UNIT, &ds, 0, NULL, 0, &err), DML_OK);
    assert_int_equal(norm.d, 0);
    dml_input_norm_apply(&norm, ds.x, 2);
    assert_memory_equal(ds.x, x, sizeof x);
    /* Bytes: mean 0, std 255. */
    ds.from_bytes = 1;
    assert_int_equal(dml_input_norm_fit(&norm, DML_NORM_UNIT, &ds, 0, NULL, 0, &err), DML_OK);
    assert_int_equal(norm.d, 2);
    assert_true(norm.mean[1] == 0.0f && norm.std[1] == 255.0f);
    dml_input_norm_apply(&norm, ds.x, 2);
    assert_float_equal(ds.x[1], 0.2, 1e-7);
    assert_float_equal(ds.x[2], 1.0, 0.0);
    dml_input_norm_free(&norm);
    assert_int_equal(dml_input_norm_fit(&norm, DML_NORM_NONE, &ds, 0, NULL, 0, &err), DML_OK);
    assert_int_equal(norm.d, 0);
    assert_null(norm.mean);
    /* The second view has its own fit. */
    dml_dataset two;
    assert_int_equal(dml_dataset_halves(&ds, &two, &err), DML_OK);
    two.from_bytes_b = 0;
    assert_int_equal(dml_input_norm_fit(&norm, DML_NORM_UNIT, &two, 1, NULL, 0, &err), DML_OK);
    assert_int_equal(norm.d, 0);
    assert_int_equal(dml_input_norm_fit(&norm, DML_NORM_STANDARDIZE, &two, 1, NULL, 0, &err),
                     DML_OK);
    assert_int_equal(norm.d, 1);
    assert_float_equal(norm.mean[0], (0.2 + 0.4) / 2, 1e-6);
    dml_input_norm_free(&norm);
    dml_dataset_free(&two);
    dml_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation_stratified_and_seeded),
        cmocka_unit_test(test_validation_largest_remainders),
        cmocka_unit_test(test_labels_per_class),
        cmocka_unit_test(test_unlabelled_mode),
        cmocka_unit_test(test_split_errors),
        cmocka_unit_test(test_standardize_on_training_rows),
        cmocka_unit_test(test_unit_and_none),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
