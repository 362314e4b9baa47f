/* The loss table's rows (one line per loss, each defined in its own losses/NAME.c) and the
 * look-ups over them. */
#include "losses/loss_table.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

extern const dml_loss_row dml_loss_row_contrastive, dml_loss_row_triplet, dml_loss_row_mnr,
    dml_loss_row_cosine_pair, dml_loss_row_reconstruction, dml_loss_row_multi_similarity,
    dml_loss_row_circle, dml_loss_row_supcon,
    dml_loss_row_proxy_anchor, dml_loss_row_arcface, dml_loss_row_cosface;

/* The order is loss.type's list in messages and docs: new rows go last. */
const dml_loss_row *const dml_loss_rows[] = {
    &dml_loss_row_contrastive, &dml_loss_row_triplet,        &dml_loss_row_mnr,
    &dml_loss_row_cosine_pair, &dml_loss_row_reconstruction,
    &dml_loss_row_multi_similarity, &dml_loss_row_circle,       &dml_loss_row_supcon,
    &dml_loss_row_proxy_anchor,     &dml_loss_row_arcface,      &dml_loss_row_cosface,
};

const int dml_loss_row_count = (int)(sizeof dml_loss_rows / sizeof dml_loss_rows[0]);

_Static_assert(sizeof dml_loss_rows / sizeof dml_loss_rows[0] == 11,
               "a row added to dml_loss_rows: update this count, docs/config.md and its tests");

const char *const dml_distance_names[] = {[DML_DIST_EUCLIDEAN] = "euclidean",
                                          [DML_DIST_SQUARED_EUCLIDEAN] = "squared_euclidean",
                                          [DML_DIST_COSINE] = "cosine", NULL};
const char *const dml_miner_names[] = {[DML_MINER_ALL] = "all", [DML_MINER_HARD] = "hard",
                                       [DML_MINER_SEMIHARD] = "semihard", NULL};
const char *const dml_reduction_names[] = {[DML_REDUCE_MEAN] = "mean",
                                           [DML_REDUCE_MEAN_NONZERO] = "mean_nonzero", NULL};

const dml_loss_row *dml_loss_find(const char *name)
{
    for (int i = 0; i < dml_loss_row_count; i++)
        if (!strcmp(dml_loss_rows[i]->name, name))
            return dml_loss_rows[i];
    return NULL;
}

int dml_loss_param_index(const dml_loss_row *row, const char *key)
{
    for (int i = 0; i < row->n_params; i++)
        if (!strcmp(row->params[i].key, key))
            return i;
    return -1;
}

void dml_loss_defaults(const dml_loss_row *row, float *p)
{
    for (int i = 0; i < row->n_params; i++)
        p[i] = row->params[i].def;
}

static int n_choices(const dml_loss_param *param)
{
    int n = 0;
    while (param->choices[n])
        n++;
    return n;
}

int dml_loss_param_ok(const dml_loss_param *param, double v)
{
    if (!isfinite(v))
        return 0;
    switch (param->kind) {
    case DML_LP_FLOAT:
        return v >= param->min && v <= param->max && !(param->open_min && v == param->min);
    case DML_LP_INT: return v == floor(v) && v >= param->min && v <= param->max;
    case DML_LP_FLAG: return v == 0 || v == 1;
    case DML_LP_CHOICE: return v == floor(v) && v >= 0 && v < n_choices(param);
    }
    return 0;
}

void dml_loss_param_expect(const dml_loss_param *param, char *out, size_t size)
{
    double lo = param->min, hi = param->max;
    switch (param->kind) {
    case DML_LP_FLOAT:
        if (isinf(hi) && param->open_min && lo == 0)
            snprintf(out, size, "a positive number");
        else if (isinf(hi))
            snprintf(out, size, "a number %s %g", param->open_min ? ">" : ">=", lo);
        else
            snprintf(out, size, "a number in %c%g, %g]", param->open_min ? '(' : '[', lo, hi);
        return;
    case DML_LP_INT:
        if (hi == lo + 1)
            snprintf(out, size, "%g or %g", lo, hi);
        else
            snprintf(out, size, "an integer in %g..%g", lo, hi);
        return;
    case DML_LP_FLAG: snprintf(out, size, "true or false"); return;
    case DML_LP_CHOICE: {
        size_t used = (size_t)snprintf(out, size, "one of ");
        for (int i = 0; param->choices[i] && used < size; i++)
            used += (size_t)snprintf(out + used, size - used, "%s%s", i ? " | " : "",
                                     param->choices[i]);
        return;
    }
    }
}
