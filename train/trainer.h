/* train/: the trainer. A validated config (train/config.h) in, a trained model and its run
 * folder out: set-up, the step, validation, checkpoints, and the run's outputs (model.h5
 * through serve/, metrics.jsonl, report.html). The run's internals are in train/run.h. */
#ifndef DML_TRAIN_TRAINER_H
#define DML_TRAIN_TRAINER_H

#include <signal.h>
#include <stdio.h>

#include "train/comm.h"
#include "train/config.h"

/* What a progress callback is told: a step done, or (validated) that step's validation. */
typedef struct dml_train_event {
    long step, total_steps;
    float loss, lr;  /* the step's loss, and the learning rate it used */
    int validated;   /* 1: a validation, with its metrics (NaN when nothing labelled) */
    double map_at_r, precision_at_1;
} dml_train_event;

struct dml_model_file;

typedef struct dml_train_opts {
    const char *out_dir; /* default: runs/<config name> */
    int resume;          /* continue from out_dir/checkpoint.h5 */
    FILE *log;           /* progress and results (stderr when NULL) */
    /* NULL, or a flag a signal handler sets: once nonzero, the loop writes checkpoint.h5 and
     * metrics.jsonl at the next step boundary and returns DML_ERR_INTERRUPTED (--resume then
     * continues exactly where it stopped). With comm, every rank stops together, and the flag
     * of a rank that got no signal is set to the (largest) value another rank's got. */
    volatile sig_atomic_t *stop;
    /* NULL: one process. Else synchronous data-parallel training over comm->size ranks
     * (docs/scale.md): every rank is given the same config and data, rank 0 alone writes the
     * run folder, and every rank ends with the model one process would train (within float
     * rounding). comm must outlive the run. */
    const dml_comm *comm;
    /* NULL, or training (test) rows already in memory, used instead of data.train (data.test):
     * the run takes them over (it normalises them in place and frees them) and leaves *train
     * (*test) empty. */
    dml_dataset *train, *test;
    /* NULL, or validation rows in memory (with train), taken over as train is: they replace
     * the share data.val_fraction holds out, which the caller sets to 0. */
    dml_dataset *val;
    /* Nonzero: no run folder at all (out_dir ignored, resume refused): nothing is locked or
     * written. */
    int no_folder;
    /* NULL, or (dml_train_run) where the trained model is moved when the run succeeds: it
     * then owns it (dml_model_file_free). */
    struct dml_model_file *model;
    /* NULL, or called after every step and every validation; a nonzero return asks the run to
     * stop at the next step boundary, as *stop does. */
    int (*progress)(void *ctx, const dml_train_event *ev);
    void *progress_ctx;
} dml_train_opts;

/* Reads the data, trains, evaluates, and writes model.h5, checkpoint.h5, metrics.jsonl and
 * report.html into the run folder: dml_run_open, dml_run_train (and dml_run_take_model into
 * opts->model) and dml_run_close in turn. Bad
 * data is DML_ERR_DATA (or DML_ERR_CONFIG naming the config key) before anything is written;
 * NaN or Inf stops the run with DML_ERR_DIVERGED and leaves the last good checkpoint in place. */
dml_status dml_train_run(const dml_config *cfg, const dml_train_opts *opts, dml_error *err);

/* The same in its parts, for a caller that drives the steps itself (bench/, tests/). The run's
 * fields are in train/run.h. */
typedef struct dml_run dml_run;

/* Sets a run up: the data read, split and normalised, the model built (model.init loaded), the
 * optimizer, samplers and step buffers ready; the RNG consumed as dml_train_run consumes it.
 * Writes nothing; the run keeps its own copy of cfg (its data-fitted defaults filled in,
 * train/run_defaults.c), and opts->log must outlive it. On error *out is NULL. */
dml_status dml_run_open(const dml_config *cfg, const dml_train_opts *opts, dml_run **out,
                        dml_error *err);

/* One optimisation step: a batch, the loss and its gradients, clipping, the optimizer update at
 * the schedule's rate. *loss and *grad_norm (either may be NULL) get the step's values.
 * DML_ERR_DIVERGED (no update made) when either is NaN or Inf; DML_ERR_NOMEM when the step
 * outgrows its arena. */
dml_status dml_run_step(dml_run *r, float *loss, float *grad_norm, dml_error *err);

/* The training loop to its end (from opts->resume's checkpoint when asked), with validation,
 * early stopping, codebook updates and checkpoints, then the final evaluation and outputs. */
dml_status dml_run_train(dml_run *r, dml_error *err);

/* After dml_run_train: the trained model (its net, input normalisation, codebooks, effective
 * config and final metrics) moved into *mf, which then owns it (dml_model_file_free); the run
 * keeps nothing of it. DML_ERR_NOMEM leaves the run as it was and *mf empty. */
dml_status dml_run_take_model(dml_run *r, struct dml_model_file *mf, dml_error *err);

void dml_run_close(dml_run *r);

#endif
