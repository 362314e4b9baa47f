/* Which rows of the training set train, validate, or stay unlabelled: sorted index arrays into
 * one dataset, deterministic for the rng's state. */
#ifndef DML_DATA_SPLIT_H
#define DML_DATA_SPLIT_H

#include <stdint.h>

#include "data/dataset.h"
#include "data/rng.h"

/* config data.val_fraction, data.labels_per_class, data.unlabelled */
typedef struct dml_split_spec {
    float val_fraction;   /* in [0, 1) */
    int labels_per_class; /* > 0: keep only this many labelled training rows per class */
    int unlabelled;       /* 1: labels are ignored (no stratification, no labels_per_class) */
} dml_split_spec;

typedef struct dml_split {
    int n_train, n_val, n_unlabelled;
    int32_t *train;      /* [n_train] rows the training loss sees (with labels unless unlabelled) */
    int32_t *val;        /* [n_val] held-out rows */
    int32_t *unlabelled; /* [n_unlabelled] training rows whose labels labels_per_class set aside
                          * (a fine-tuning recipe trains a reconstruction loss on them) */
} dml_split;

/* 1. Holds out round(val_fraction * n) rows for validation. With labels (and not unlabelled)
 *    it is stratified: class c gives floor or ceil of val_fraction * n_c rows, the extra ones
 *    going to the classes with the largest remainders (ties: lower class id).
 * 2. labels_per_class k > 0: of each class's remaining rows, k chosen at random stay in train
 *    (all of them when the class has k or fewer); the others go to unlabelled.
 * Each class's rows are shuffled with rng in class order, so the result depends only on the
 * dataset and the rng's state. Errors: a val_fraction outside [0, 1) or labels_per_class with
 * unlabelled data (DML_ERR_USAGE); a split that leaves no training row, or no validation row
 * when val_fraction > 0 (DML_ERR_DATA, naming the dataset). */
dml_status dml_split_make(dml_split *s, const dml_dataset *ds, const dml_split_spec *spec,
                          dml_rng *rng, dml_error *err);
void dml_split_free(dml_split *s);

#endif
