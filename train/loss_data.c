/* The rows each loss needs to learn anything: a loss whose batches hold no positive pair or no
 * negative is exactly 0, with a zero gradient, at every step (losses/losses.h), and would
 * otherwise "train" an untouched model and report success. */
#include "train/loss_data.h"

#include <stdlib.h>

int dml_loss_uses_pairs(const dml_config *c)
{
    unsigned needs = c->loss.row->needs;
    return (needs & DML_LOSS_NEEDS_PAIRS) ||
           ((needs & DML_LOSS_NEEDS_LABELS_OR_PAIRS) && c->data.pairs != DML_PAIRS_NONE);
}

int dml_loss_needs_labels(const dml_config *c)
{
    unsigned needs = c->loss.row->needs;
    return (needs & DML_LOSS_NEEDS_LABELS) ||
           (dml_loss_uses_pairs(c) && c->data.pairs == DML_PAIRS_SAME_CLASS) ||
           ((needs & DML_LOSS_NEEDS_LABELS_OR_PAIRS) && c->data.pairs == DML_PAIRS_NONE);
}

int dml_loss_reads_labels(const dml_config *c)
{
    return dml_loss_needs_labels(c) || (c->loss.row->needs & DML_LOSS_NEEDS_LABELS_OR_PAIRS);
}

/* What a loss needs, counted over the training rows; zero: nothing. */
typedef struct need {
    const char *name;
    int classes;        /* distinct labels */
    int paired_classes; /* labels with two rows or more (a positive pair) */
    int rows;           /* rows (pairs for mnr on halves, file or augment pairs) */
    const char *why;
} need;

static need need_of(const dml_config *c)
{
    const dml_loss_row *row = c->loss.row;
    if (dml_loss_needs_labels(c) && !dml_loss_uses_pairs(c))
        return (need){row->name, 2, 1, 0,
                      "it pulls a class's rows together and pushes other classes' rows away"};
    if (dml_loss_uses_pairs(c) && c->data.pairs == DML_PAIRS_SAME_CLASS)
        /* masked: a negative is another class's pair */
        return (need){row->name, 2, dml_config_loss_param(c, "mask_same_label", 0) ? 2 : 1, 0,
                      "its pairs are two rows of a class, and the batch's pairs of other "
                      "classes are their negatives"};
    if (dml_loss_uses_pairs(c))
        return (need){row->name, 0, 0, 2,
                      "each anchor's negatives are the batch's other positives"};
    return (need){row->name, 0, 0, 1, "it reconstructs rows"}; /* reconstruction: any row */
}

int dml_count_labels(const dml_dataset *ds, const int32_t *rows, int n, int *paired, int *one)
{
    int *count = calloc((size_t)(ds->n_classes > 0 ? ds->n_classes : 1), sizeof *count);
    if (!count)
        return -1;
    int classes = 0;
    *paired = 0;
    *one = -1;
    for (int i = 0; i < n; i++) {
        int y = ds->y[rows ? rows[i] : i];
        classes += count[y] == 0;
        *paired += count[y] == 1;
        count[y]++;
        *one = y;
    }
    free(count);
    return classes;
}

dml_status dml_check_test_labels(const dml_config *c, const dml_dataset *test, dml_error *err)
{
    if (!test->y || test->n == 0)
        return DML_OK;
    int paired, one;
    int classes = dml_count_labels(test, NULL, test->n, &paired, &one);
    if (classes < 0)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory");
    if (classes == 1)
        return dml_error_set(err, DML_ERR_DATA, c->data.test, 0, 0,
                             "the %d test rows hold one label (%d), so every label metric of the "
                             "final evaluation (map_at_r, knn_accuracy, ...) would be 1.0 whatever "
                             "the model: expected test rows of two labels or more",
                             test->n, one);
    if (paired == 0)
        return dml_error_set(err, DML_ERR_DATA, c->data.test, 0, 0,
                             "no test row shares its label with another (%d rows, %d labels), so "
                             "the final evaluation could score no query by the label metrics "
                             "(map_at_r, precision_at_1, ...): expected two test rows or more of "
                             "a label", test->n, classes);
    return DML_OK;
}

dml_status dml_loss_check_rows(const dml_config *c, const dml_dataset *train, const int32_t *rows,
                               int n, dml_error *err)
{
    need nd = need_of(c);
    if (n < nd.rows)
        return dml_error_set(err, DML_ERR_DATA, c->data.train, 0, 0,
                             "loss.type %s needs at least %d training %s (%s); there %s %d", nd.name,
                             nd.rows, c->data.pairs != DML_PAIRS_NONE ? "pairs" : "rows", nd.why,
                             n == 1 ? "is" : "are", n);
    if (nd.classes == 0 || !train->y)
        return DML_OK;
    int paired, one;
    int classes = dml_count_labels(train, rows, n, &paired, &one);
    if (classes < 0)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory");
    if (classes >= nd.classes && paired >= nd.paired_classes)
        return DML_OK;
    char held[96];
    if (classes == 1)
        snprintf(held, sizeof held, "one class (label %d)", one);
    else
        snprintf(held, sizeof held, "%d classes, %d of them with two rows or more", classes,
                 paired);
    return dml_error_set(err, DML_ERR_DATA, c->data.train, 0, 0,
                         "loss.type %s cannot learn from these rows: it needs at least %d classes, "
                         "%d of them with two rows or more (%s), and the %d training rows hold %s",
                         nd.name, nd.classes, nd.paired_classes, nd.why, n, held);
}
