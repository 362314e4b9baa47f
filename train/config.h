/* A training run's config: config.md's YAML schema as a typed struct, with every key's
 * default, validated as a whole before anything runs or is written. */
#ifndef DML_TRAIN_CONFIG_H
#define DML_TRAIN_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "data/data.h"

#define DML_CONFIG_MAX_HIDDEN 16
#define DML_CONFIG_MAX_METRICS 16
#define DML_CONFIG_MAX_KEYS 96
#define DML_CONFIG_PATH 1024

/* String choices are enums whose order matches the choice tables in train/config.c. */
typedef enum { DML_PAIRS_NONE, DML_PAIRS_SAME_CLASS, DML_PAIRS_HALVES, DML_PAIRS_FILE } dml_pairs;
typedef enum { DML_CFG_ACT_RELU, DML_CFG_ACT_TANH, DML_CFG_ACT_GELU, DML_CFG_ACT_LEAKY_RELU } dml_cfg_act;
typedef enum { DML_CFG_OUT_L2, DML_CFG_OUT_TANH, DML_CFG_OUT_NONE } dml_cfg_output;
typedef enum {
    DML_LOSS_CONTRASTIVE,
    DML_LOSS_TRIPLET,
    DML_LOSS_MNR,
    DML_LOSS_COSINE_PAIR,
    DML_LOSS_RECONSTRUCTION
} dml_loss_type;
typedef enum { DML_CFG_REDUCE_AUTO, DML_CFG_REDUCE_MEAN, DML_CFG_REDUCE_MEAN_NONZERO } dml_cfg_reduction;
typedef enum { DML_RECON_MSE, DML_RECON_BCE } dml_recon_kind;
typedef enum { DML_CFG_SAMPLER_RANDOM, DML_CFG_SAMPLER_M_PER_CLASS } dml_cfg_sampler;

/* "epoch" or a positive number of steps: 0 means every epoch. */
typedef int dml_every;

typedef struct dml_config_key {
    char path[48]; /* "train.lr" */
    int line, col; /* where its value is (1-based) */
    char file[DML_CONFIG_PATH];
} dml_config_key;

typedef struct dml_config {
    char path[DML_CONFIG_PATH]; /* the file it came from */
    char name[128];
    int64_t seed;
    struct {
        char train[DML_CONFIG_PATH], test[DML_CONFIG_PATH];
        float val_fraction;
        int labels_per_class;
        int unlabelled;
        int normalize; /* dml_norm_kind */
        int pairs;     /* dml_pairs */
    } data;
    struct {
        int type; /* dml_net_type */
        int hidden[DML_CONFIG_MAX_HIDDEN];
        int n_hidden;
        int dim;
        int activation; /* dml_cfg_act */
        int output;     /* dml_cfg_output */
        char init[DML_CONFIG_PATH];
        int freeze;
    } model;
    struct {
        int type;     /* dml_loss_type */
        int distance; /* dml_distance */
        float margin;
        int miner; /* dml_miner */
        int soft;
        int reduction; /* dml_cfg_reduction */
        float pos_margin, neg_margin;
        int power;
        float scale;
        int symmetric;
        int mask_same_label;
        int reconstruction; /* dml_recon_kind */
        float reconstruction_weight;
        struct {
            float weight;
            int warmup_epochs;
            dml_every codebook_every;
        } quantization;
    } loss;
    struct {
        int type; /* dml_cfg_sampler */
        int m;
    } sampler;
    struct {
        int batch_size, epochs;
        int64_t steps;
        int optimizer; /* dml_optim_kind */
        float lr, weight_decay, momentum;
        int schedule; /* dml_schedule_kind */
        int warmup_steps;
        float clip_grad_norm;
        dml_every eval_every, checkpoint_every;
        int early_stop_patience;
        int threads;
    } train;
    struct {
        int m, k, iters;
    } pq;
    struct {
        char metrics[DML_CONFIG_MAX_METRICS][32];
        int n_metrics;
        int pq;
        int knn_k;
    } eval;
    dml_config_key keys[DML_CONFIG_MAX_KEYS]; /* where each key given was, for later errors */
    int n_keys;
} dml_config;

/* Every default of config.md. */
void dml_config_defaults(dml_config *cfg);

/* Reads path, applies sets[i] ("key.path=value", the value parsed as YAML) in order, fills
 * defaults, validates. Errors are DML_ERR_CONFIG with file:line:column and the key path. */
dml_status dml_config_load(const char *path, int n_sets, char *const *sets, dml_config *cfg,
                           dml_error *err);

/* An error about a key found later (once the data are read), located where the key was given
 * (or at the config file when it was a default). */
dml_status dml_config_error(const dml_config *cfg, const char *key_path, dml_error *err,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The effective config as YAML, in config.md's order, defaults filled in. */
void dml_config_print(const dml_config *cfg, FILE *f);
/* The same as a malloc'ed string (stored in model.h5); NULL when out of memory. */
char *dml_config_to_yaml(const dml_config *cfg);

#endif
