/* The trainer: a validated config in, a trained model (and its run folder) out. */
#ifndef DML_TRAIN_TRAINER_H
#define DML_TRAIN_TRAINER_H

#include <stdio.h>

#include "train/config.h"

typedef struct dml_train_opts {
    const char *out_dir; /* default: runs/<config name> */
    int resume;          /* continue from out_dir/checkpoint.h5 */
    FILE *log;           /* progress and results (stderr when NULL) */
} dml_train_opts;

/* Reads the data, trains, evaluates, and writes model.h5, checkpoint.h5, metrics.jsonl and
 * report.html into the run folder. Bad data is DML_ERR_DATA (or DML_ERR_CONFIG naming the
 * config key) before anything is written; NaN or Inf stops the run with DML_ERR_DIVERGED and
 * leaves the last good checkpoint in place. */
dml_status dml_train_run(const dml_config *cfg, const dml_train_opts *opts, dml_error *err);

#endif
