/* Validation rows given apart from the training rows (dml_train_opts.val, dml_train's x_val):
 * appended after the training rows once the split is made, and made the split's validation
 * rows, so that validation, model selection and early stopping run as on a held-out share. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

/* Copies n rows of width d from src into dst at row at (nothing when src is NULL). */
static void put_rows(float *dst, const float *src, int at, int n, int d)
{
    if (src)
        memcpy(dst + (size_t)at * d, src, (size_t)n * d * sizeof(float));
}

dml_status dml_run_append_validation(dml_run *r, dml_error *err)
{
    dml_dataset *t = &r->train, *v = &r->val_rows;
    if (v->d != t->d || !t->x_b != !v->x_b || (t->x_b && v->d_b != t->d_b))
        return dml_error_set(err, DML_ERR_DATA, v->source, 0, 0,
                             "validation rows of width %d (second view %d), but the training "
                             "rows have width %d (second view %d)",
                             v->d, v->x_b ? v->d_b : 0, t->d, t->x_b ? t->d_b : 0);
    if (!t->y != !v->y)
        return dml_error_set(err, DML_ERR_DATA, v->source, 0, 0,
                             "validation rows %s labels, but the training rows %s: both or "
                             "neither", v->y ? "with" : "without", t->y ? "have them" : "do not");
    if (v->n > INT_MAX - t->n)
        return dml_error_set(err, DML_ERR_DATA, v->source, 0, 0,
                             "%d validation and %d training rows: more than 2^31 in all", v->n,
                             t->n);
    dml_dataset all;
    dml_status st = dml_dataset_alloc(&all, t->n + v->n, t->d, t->y != NULL, err);
    int32_t *val = st == DML_OK ? malloc((size_t)v->n * sizeof *val) : NULL;
    if (st == DML_OK && t->x_b && !(all.x_b = malloc((size_t)all.n * t->d_b * sizeof(float))))
        st = DML_ERR_NOMEM;
    if (st == DML_OK && !val)
        st = DML_ERR_NOMEM;
    if (st != DML_OK) {
        free(val);
        dml_dataset_free(&all);
        return dml_error_set(err, DML_ERR_NOMEM, v->source, 0, 0,
                             "out of memory for %d validation rows", v->n);
    }
    put_rows(all.x, t->x, 0, t->n, t->d);
    put_rows(all.x, v->x, t->n, v->n, t->d);
    put_rows(all.x_b, t->x_b, 0, t->n, t->d_b);
    put_rows(all.x_b, v->x_b, t->n, v->n, t->d_b);
    if (t->y) {
        memcpy(all.y, t->y, (size_t)t->n * sizeof *all.y);
        memcpy(all.y + t->n, v->y, (size_t)v->n * sizeof *all.y);
    }
    all.d_b = t->d_b;
    all.n_classes = t->n_classes > v->n_classes ? t->n_classes : v->n_classes;
    all.from_bytes = t->from_bytes;
    all.from_bytes_b = t->from_bytes_b;
    all.value_type = t->value_type;
    all.value_type_b = t->value_type_b;
    memcpy(all.source, t->source, sizeof all.source);
    for (int i = 0; i < v->n; i++)
        val[i] = t->n + i;
    free(r->split.val);
    r->split.val = val;
    r->split.n_val = v->n;
    dml_dataset_free(t);
    dml_dataset_free(v);
    *t = all;
    return DML_OK;
}
