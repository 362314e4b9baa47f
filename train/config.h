/* A training run's config: config.md's YAML schema as a typed struct with every key's default,
 * validated as a whole before anything runs or is written. */
#ifndef DML_TRAIN_CONFIG_H
#define DML_TRAIN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "losses/loss_table.h"
#include "nn/nn.h"
#include "optim/optim.h"

#define DML_CONFIG_MAX_HIDDEN 16
#define DML_CONFIG_MAX_METRICS 16
#define DML_CONFIG_MAX_KEYS 128 /* more than the schema's keys and sections together */
#define DML_CONFIG_PATH 1024

/* String choices. Where a lower layer has the same list (dml_norm_kind, dml_net_type,
 * dml_distance, dml_miner, dml_sampler_kind, dml_optim_kind, dml_schedule_kind) the config uses
 * that enum (dml_init_scheme too); train/config.c asserts the orders match its choice tables. */
/* augment: two augmented views of each row, a positive pair (SimCLR's self-supervision) */
/* data.in_memory: auto reads the training rows whole when they fit data.memory_limit */
typedef enum { DML_IN_MEMORY_AUTO, DML_IN_MEMORY_TRUE, DML_IN_MEMORY_FALSE } dml_in_memory;
/* sampler.shuffle: the whole pool each epoch, or block-random (data/sampler.h) */
typedef enum { DML_SHUFFLE_FULL, DML_SHUFFLE_BLOCK } dml_shuffle;
typedef enum {
    DML_PAIRS_NONE,
    DML_PAIRS_SAME_CLASS,
    DML_PAIRS_HALVES,
    DML_PAIRS_FILE,
    DML_PAIRS_AUGMENT
} dml_pairs;
typedef enum { DML_CFG_ACT_RELU, DML_CFG_ACT_TANH, DML_CFG_ACT_GELU, DML_CFG_ACT_LEAKY_RELU } dml_cfg_act;
typedef enum { DML_CFG_OUT_L2, DML_CFG_OUT_TANH, DML_CFG_OUT_NONE } dml_cfg_output;
typedef enum { DML_RECON_MSE, DML_RECON_BCE } dml_recon_kind;

/* "epoch" (0), a positive number of steps, or for validation and checkpoints "never" (also
 * written 0): a benchmark or a quick run can turn them off; the end of training still does both. */
typedef int dml_every;
#define DML_EVERY_EPOCH 0
#define DML_EVERY_NEVER (-1)

/* Where a key was given: 1-based line and column of its value (of the key, for a section);
 * both 0 when it came from a --set override. */
typedef struct dml_config_key {
    char path[48]; /* "train.lr" */
    int line, col;
} dml_config_key;

typedef struct dml_config {
    char path[DML_CONFIG_PATH]; /* the file it came from */
    char name[128];             /* default: the file name without .yaml; runs/<name> */
    int64_t seed;
    struct {
        char train[DML_CONFIG_PATH], test[DML_CONFIG_PATH]; /* data specs; test "" = none */
        float val_fraction;
        int labels_per_class; /* 0 = keep every label */
        bool unlabelled;
        dml_norm_kind normalize;
        dml_pairs pairs;
        dml_augment augment; /* every training batch's rows; all zero = off */
        dml_in_memory in_memory;
        int memory_limit_mb; /* the training rows' budget: auto streams above it */
    } data;
    struct {
        dml_net_type type;
        int hidden[DML_CONFIG_MAX_HIDDEN]; /* [n_hidden] widths */
        int n_hidden;
        int dim;
        dml_cfg_act activation;
        dml_cfg_output output;
        dml_init_scheme init_scheme; /* how fresh weights are drawn (nn.h) */
        char init[DML_CONFIG_PATH];  /* "" = fresh weights */
        int freeze;                 /* the first N encoder layers keep their weights */
        int head[DML_CONFIG_MAX_HIDDEN]; /* [n_head] projection head widths: the loss's only */
        int n_head;
    } model;
    struct {
        const dml_loss_row *row;      /* loss.type */
        float p[DML_LOSS_MAX_PARAMS]; /* loss.<key>: row's parameters, in its order */
        /* the decoder's term: loss.type reconstruction's, and loss.reconstruction_weight's */
        dml_recon_kind reconstruction;
        float reconstruction_weight; /* > 0: reconstruct the unlabelled rows too (autoencoder) */
        struct {
            float weight; /* 0 = off */
            int warmup_epochs;
            dml_every codebook_every;
            bool tanh; /* quantize tanh(z) rather than z */
        } quantization;
        struct {
            int size;       /* cross-batch memory: the last size embeddings; 0 = off */
            int start_step; /* the step from which the loss uses them */
        } memory;
        struct { /* mnr on two views: negatives mined from the training rows */
            int k;                 /* extra negatives per anchor and step; 0 = off */
            dml_every every;       /* steps between minings (0: an epoch) */
            float relative_margin; /* keep cosines <= (1 - this) x the positive's */
            int candidates;        /* the nearest rows each anchor's pool is filtered from */
        } hard_negatives;
    } loss;
    struct {
        dml_sampler_kind type;
        int m;
        bool drop_last; /* random batches: drop each epoch's last, partial batch */
        dml_shuffle shuffle;
        int block_rows; /* block-random: rows a block */
    } sampler;
    struct {
        int batch_size, epochs;
        int64_t steps; /* > 0 overrides epochs */
        dml_optim_kind optimizer;
        float lr, weight_decay, momentum;
        dml_schedule_kind schedule;
        int warmup_steps;
        float clip_grad_norm; /* 0 = off */
        float allreduce_bucket_mb; /* under mpirun: overlap's gradient bucket size; 0 = off */
        int chunk_size;       /* GradCache: mnr's batch embedded in chunks of this many rows; 0 = off */
        dml_every eval_every, checkpoint_every;
        int early_stop_patience; /* 0 = off */
        int threads;             /* 0 = all cores */
    } train;
    struct {
        int m, k, iters; /* k a power of two */
    } pq;
    struct {
        char metrics[DML_CONFIG_MAX_METRICS][32]; /* [n_metrics] names of metrics.md */
        int n_metrics;
        bool pq;
        int knn_k;
    } eval;
    dml_config_key keys[DML_CONFIG_MAX_KEYS]; /* [n_keys] the keys given, for later errors */
    int n_keys;
} dml_config;

/* Every default of config.md (name "" and the loss's fitted defaults: both are settled by the
 * load). */
void dml_config_defaults(dml_config *cfg);

/* Reads the YAML file at path, applies sets[i] ("key.path=value", the value parsed as YAML, so
 * "model.hidden=[256,128]" and "loss.quantization={weight: 0.1}" work) in order, fills the
 * defaults that depend on other keys, and validates. Errors are DML_ERR_CONFIG (DML_ERR_NOMEM
 * when out of memory) with "file:line:column: key.path: expected ..., got "..."" in *err; the
 * "file" of an override is "--set", without a position. */
dml_status dml_config_load(const char *path, int n_sets, char *const *sets, dml_config *cfg,
                           dml_error *err);

/* The same from text[len] in memory, path naming it in messages ("<config>:3:5: ...") and
 * giving the config its default name as a file's would. */
dml_status dml_config_load_text(const char *text, size_t len, const char *path, int n_sets,
                                char *const *sets, dml_config *cfg, dml_error *err);

/* The combinations of keys that cannot work, known from the config alone (pq.m must divide
 * model.dim, mnr needs pairs, ...); dml_config_load runs it last. */
dml_status dml_config_check(const dml_config *cfg, dml_error *err);

/* Where key_path ("train.lr", or a section such as "loss") was given: 1 with its 1-based
 * line and column (both 0 for a --set override), or 0 when it keeps its default (line = col = 0). */
int dml_config_where(const dml_config *cfg, const char *key_path, int *line, int *col);

/* An error about a key found later (once the data are read): DML_ERR_CONFIG at the key's
 * position ("cfg.yaml:12:3: pq.k: <message>"; "--set: pq.k: ..." for an override; "cfg.yaml:
 * pq.k: ..." for a default). fmt's arguments may point into *err. Returns DML_ERR_CONFIG. */
dml_status dml_config_error(const dml_config *cfg, const char *key_path, dml_error *err,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Makes row the loss: its parameters at their defaults, but for those the config gave that
 * row has too (same key and kind), kept; the given keys it lacks are forgotten. Then the
 * defaults that depend on other parameters (row->fit_defaults). For --set loss.type, and a
 * loss.type the trainer fits to the data. */
void dml_config_set_loss(dml_config *cfg, const dml_loss_row *row);

/* Parameter key's value in the config's loss (def when its row has no such parameter). */
float dml_config_loss_param(const dml_config *cfg, const char *key, float def);

/* The effective config as YAML, in config.md's order and sections, defaults filled in. Loading
 * it again gives the same config. */
void dml_config_print(const dml_config *cfg, FILE *f);
/* The same flat, one "key.path: value" line per key (YAML's quoting, no line breaks in a
 * value), in the same order: two configs compared key by key (train/run_resume.c). */
void dml_config_print_keys(const dml_config *cfg, FILE *f);
/* dml_config_print as a malloc'ed string (stored in model.h5); NULL when out of memory. */
char *dml_config_to_yaml(const dml_config *cfg);

#endif
