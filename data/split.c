/* Validation splits and k-labels-per-class subsets, stratified and seeded. */
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* rows grouped by label: order[] holds rows[] sorted by class, start[c]..start[c+1] class c.
 * Unlabelled data is one class. Rows keep their given order inside a class. */
static int group_by_class(const dml_dataset *ds, const int32_t *rows, int n, int32_t **order,
                          int32_t **start, int *n_classes)
{
    int k = ds->y ? ds->n_classes : 1;
    *order = malloc((size_t)(n ? n : 1) * sizeof **order);
    *start = calloc((size_t)k + 1, sizeof **start);
    if (!*order || !*start)
        return 0;
    for (int i = 0; i < n; i++)
        (*start)[(ds->y ? ds->y[rows[i]] : 0) + 1]++;
    for (int c = 0; c < k; c++)
        (*start)[c + 1] += (*start)[c];
    int32_t *fill = malloc((size_t)k * sizeof *fill);
    if (!fill)
        return 0;
    memcpy(fill, *start, (size_t)k * sizeof *fill);
    for (int i = 0; i < n; i++)
        (*order)[fill[ds->y ? ds->y[rows[i]] : 0]++] = rows[i];
    free(fill);
    *n_classes = k;
    return 1;
}

/* Splits rows into (first, second), taking take(class size) rows of each class into first
 * after a seeded shuffle of that class. */
static dml_status split_per_class(const dml_dataset *ds, const int32_t *rows, int n, dml_rng *rng,
                                  int per_class, float frac, int32_t **first, int *n_first,
                                  int32_t **second, int *n_second, dml_error *err)
{
    int32_t *order = NULL, *start = NULL;
    int k = 0;
    *first = malloc((size_t)(n ? n : 1) * sizeof **first);
    *second = malloc((size_t)(n ? n : 1) * sizeof **second);
    if (!group_by_class(ds, rows, n, &order, &start, &k) || !*first || !*second) {
        free(order);
        free(start);
        free(*first);
        free(*second);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for a split");
    }
    *n_first = *n_second = 0;
    for (int c = 0; c < k; c++) {
        int size = start[c + 1] - start[c];
        int take = per_class > 0 ? (per_class < size ? per_class : size)
                                 : (int)((double)frac * size + 0.5);
        dml_rng_shuffle(rng, order + start[c], size);
        for (int i = 0; i < size; i++) {
            int32_t r = order[start[c] + i];
            if (i < take)
                (*first)[(*n_first)++] = r;
            else
                (*second)[(*n_second)++] = r;
        }
    }
    qsort(*first, (size_t)*n_first, sizeof **first, cmp_i32);
    qsort(*second, (size_t)*n_second, sizeof **second, cmp_i32);
    free(order);
    free(start);
    return DML_OK;
}

dml_status dml_split_validation(const dml_dataset *ds, float frac, dml_rng *rng, int32_t **train,
                                int *n_train, int32_t **val, int *n_val, dml_error *err)
{
    int32_t *all = malloc((size_t)(ds->n ? ds->n : 1) * sizeof *all);
    if (!all)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for a split");
    for (int i = 0; i < ds->n; i++)
        all[i] = i;
    dml_status st = split_per_class(ds, all, ds->n, rng, 0, frac, val, n_val, train, n_train, err);
    free(all);
    return st;
}

dml_status dml_split_labels_per_class(const dml_dataset *ds, const int32_t *rows, int n, int k,
                                      dml_rng *rng, int32_t **labelled, int *n_labelled,
                                      int32_t **rest, int *n_rest, dml_error *err)
{
    if (!ds->y)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "labels_per_class needs labelled data, and this set has no labels");
    return split_per_class(ds, rows, n, rng, k, 0.0f, labelled, n_labelled, rest, n_rest, err);
}
