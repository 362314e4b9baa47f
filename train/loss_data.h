/* What each loss.type needs of the rows it trains on, in one place: whether it reads labels, and
 * how many classes, classes with a positive pair, or pairs its batches need so that the loss
 * has something to learn (a loss without a positive or a negative is 0 at every step); and what
 * the test rows need for the final metrics to measure anything. */
#ifndef DML_TRAIN_LOSS_DATA_H
#define DML_TRAIN_LOSS_DATA_H

#include <stdint.h>

#include "data/dataset.h"
#include "train/config.h"

/* 1 when the configured loss reads the training rows' labels, from its row's needs: a label
 * loss, or a pair loss on same_class pairs (made from the labels); reconstruction never. The one
 * place this is decided. */
int dml_loss_needs_labels(const dml_config *c);
/* 1 when the loss trains on pair batches: a pair loss, or one that takes labels or pairs
 * (supcon) with data.pairs set. */
int dml_loss_uses_pairs(const dml_config *c);
/* 1 when the loss is given the batch's labels where the rows have them: those it needs, and a
 * loss that takes labels or pairs reads them beside its pairs (supcon's views of a class). */
int dml_loss_reads_labels(const dml_config *c);

/* Checks that the loss can learn from rows[n] of train (the rows it samples, after the split):
 * label losses need two classes, one of them with two rows (same_class mnr masking its label:
 * two such classes); mnr on other pairs needs two pairs. DML_ERR_DATA naming data.train and
 * what is missing. Labels are assumed present when the loss needs them (checked before). */
dml_status dml_loss_check_rows(const dml_config *c, const dml_dataset *train, const int32_t *rows,
                               int n, dml_error *err);

/* Distinct labels among rows[n] of ds (rows NULL: the first n), -1 when out of memory; *paired
 * gets how many have two rows or more, *one the last label seen. ds must have labels. */
int dml_count_labels(const dml_dataset *ds, const int32_t *rows, int n, int *paired, int *one);

/* The labelled test rows the final evaluation scores by protocol 1 (each against the others):
 * one label, or no label with two rows, would make every label metric 1.0 or leave none to
 * report, whatever the model. DML_ERR_DATA naming data.test; unlabelled test rows pass. */
dml_status dml_check_test_labels(const dml_config *c, const dml_dataset *test, dml_error *err);

#endif
