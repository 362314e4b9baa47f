/* Validation splits (stratified) and k labelled rows per class, seeded. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

typedef struct share {
    int c;
    double rest; /* fractional part of frac * n_c */
} share;

static int by_rest(const void *a, const void *b)
{
    const share *x = a, *y = b;
    if (x->rest != y->rest)
        return x->rest < y->rest ? 1 : -1;
    return (x->c > y->c) - (x->c < y->c);
}

static int by_value(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* quota[c] = floor(frac * n_c), then one more for the classes with the largest remainders
 * until the total is round(frac * n). */
static int val_quotas(const int32_t *start, int k, float frac, int32_t *quota)
{
    share *s = malloc((size_t)k * sizeof *s);
    if (!s)
        return 0;
    int n = start[k], total = (int)floor((double)frac * n + 0.5), given = 0, m = 0;
    for (int c = 0; c < k; c++) {
        int size = start[c + 1] - start[c];
        double want = (double)frac * size;
        quota[c] = (int)floor(want);
        given += quota[c];
        if (quota[c] < size)
            s[m++] = (share){c, want - quota[c]};
    }
    qsort(s, (size_t)m, sizeof *s, by_rest);
    for (int i = 0; i < m && given < total; i++, given++)
        quota[s[i].c]++;
    free(s);
    return 1;
}

dml_status dml_split_make(dml_split *s, const dml_dataset *ds, const dml_split_spec *spec,
                          dml_rng *rng, dml_error *err)
{
    memset(s, 0, sizeof *s);
    float frac = spec->val_fraction;
    int per_class = spec->labels_per_class;
    if (!(frac >= 0.0f && frac < 1.0f))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "val_fraction %g: expected a number in [0, 1)", frac);
    if (per_class < 0 || (per_class > 0 && spec->unlabelled))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "labels_per_class %d: expected 0, or a positive number with labels",
                             per_class);
    if (per_class > 0 && !ds->y)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "labels_per_class needs labels, and this data set has none");
    int labelled = ds->y && !spec->unlabelled;
    int k = labelled ? ds->n_classes : 1, n = ds->n;
    size_t cap = n > 0 ? (size_t)n : 1;
    int32_t *order = malloc(cap * sizeof *order);
    int32_t *start = calloc((size_t)k + 1, sizeof *start);
    int32_t *quota = malloc((size_t)k * sizeof *quota);
    s->train = malloc(cap * sizeof *s->train);
    s->val = malloc(cap * sizeof *s->val);
    s->unlabelled = malloc(cap * sizeof *s->unlabelled);
    dml_status st = DML_OK;
    if (!order || !start || !quota || !s->train || !s->val || !s->unlabelled) {
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for a split");
        goto done;
    }
    /* Rows grouped by class (a counting sort; row order inside a class). */
    for (int i = 0; i < n; i++)
        start[(labelled ? ds->y[i] : 0) + 1]++;
    for (int c = 0; c < k; c++)
        start[c + 1] += start[c];
    memcpy(quota, start, (size_t)k * sizeof *quota); /* fill pointers for now */
    for (int i = 0; i < n; i++)
        order[quota[labelled ? ds->y[i] : 0]++] = i;
    if (!val_quotas(start, k, frac, quota)) {
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for a split");
        goto done;
    }
    for (int c = 0; c < k; c++) {
        int32_t *rows = order + start[c];
        int size = start[c + 1] - start[c];
        dml_rng_shuffle(rng, rows, size);
        for (int i = 0; i < size; i++) {
            if (i < quota[c])
                s->val[s->n_val++] = rows[i];
            else if (per_class == 0 || i - quota[c] < per_class)
                s->train[s->n_train++] = rows[i];
            else
                s->unlabelled[s->n_unlabelled++] = rows[i];
        }
    }
    qsort(s->train, (size_t)s->n_train, sizeof *s->train, by_value);
    qsort(s->val, (size_t)s->n_val, sizeof *s->val, by_value);
    qsort(s->unlabelled, (size_t)s->n_unlabelled, sizeof *s->unlabelled, by_value);
    if (s->n_train == 0)
        st = dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                           "val_fraction %g of %d rows leaves no training row", frac, n);
    else if (frac > 0.0f && s->n_val == 0)
        st = dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                           "val_fraction %g of %d rows holds out no row", frac, n);
done:
    free(order);
    free(start);
    free(quota);
    if (st != DML_OK)
        dml_split_free(s);
    return st;
}

void dml_split_free(dml_split *s)
{
    free(s->train);
    free(s->val);
    free(s->unlabelled);
    memset(s, 0, sizeof *s);
}
