/* The one entry both training front ends go through: the public dml_train (train/api.c) and
 * the dml train command (cli/train.c). A config (a file, or text) and its overrides, rows in
 * memory or the config's files, where the run goes, how it logs, reports and stops, and the
 * ranks it runs on: the config loaded and checked, the rows borrowed, then dml_train_run. */
#ifndef DML_TRAIN_CALL_H
#define DML_TRAIN_CALL_H

#include "train/trainer.h"

typedef struct dml_train_request {
    /* A config file (its errors "PATH:LINE:COL: ..."), or NULL: config_text, YAML (NULL or ""
     * keeps every default; its errors "<config>:LINE:COL: ..."). */
    const char *config_path, *config_text;
    const char *const *sets; /* [n_sets] overrides "key.path=value", applied in order */
    int n_sets;
    const dml_train_data *data; /* NULL: the config's files */
    const char *out_dir;        /* NULL: runs/<config name> */
    int no_folder;              /* nonzero: no run folder (out_dir ignored, resume refused) */
    int resume;
    FILE *log;                  /* progress and results (stderr when NULL) */
    volatile sig_atomic_t *stop;                                  /* as dml_train_opts's */
    int (*progress)(void *ctx, const dml_train_event *ev); /* as dml_train_opts's */
    void *progress_ctx;
    /* NULL: one process. Else the ranks of dml_train_opts.comm, and first_failure(comm,
     * failed), collective: the lowest rank whose failed is nonzero, or -1. Every rank stops
     * when one could not load the config. */
    const dml_comm *comm;
    int (*first_failure)(const dml_comm *comm, int failed);
} dml_train_request;

/* Trains as req says. model NULL: the model is not kept (the run folder has it); else on
 * success *model is the trained model (dml_model_free), untouched on failure. */
dml_status dml_train_call(const dml_train_request *req, dml_model **model, dml_error *err);

#endif
