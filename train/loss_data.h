/* What each loss.type needs of the rows it trains on, in one place: whether it reads labels, and
 * how many classes, classes with a positive pair, or pairs its batches need so that the loss
 * has something to learn (a loss without a positive or a negative is 0 at every step). */
#ifndef DML_TRAIN_LOSS_DATA_H
#define DML_TRAIN_LOSS_DATA_H

#include <stdint.h>

#include "data/dataset.h"
#include "train/config.h"

/* 1 when the configured loss reads the training rows' labels: every metric loss but mnr on
 * halves, file or augment pairs; reconstruction never. */
int dml_loss_needs_labels(const dml_config *c);

/* Checks that the loss can learn from rows[n] of train (the rows it samples, after the split):
 * label losses need two classes, one of them with two rows (same_class mnr masking its label:
 * two such classes); mnr on other pairs needs two pairs. DML_ERR_DATA naming data.train and
 * what is missing. Labels are assumed present when the loss needs them (checked before). */
dml_status dml_loss_check_rows(const dml_config *c, const dml_dataset *train, const int32_t *rows,
                               int n, dml_error *err);

#endif
