/* The state of one training run, shared by the trainer's files (train/ only). */
#ifndef DML_TRAIN_RUN_H
#define DML_TRAIN_RUN_H

#include <signal.h>

#include "data/data.h"
#include "data/normalize.h"
#include "data/progress.h"
#include "data/split.h"
#include "eval/eval.h"
#include "losses/losses.h"
#include "optim/optim.h"
#include "losses/loss_table.h"
#include "train/comm.h"
#include "train/config.h"
#include "train/trainer.h"

#define DML_MAX_PARAMS 192 /* four MLPs (three towers, the head) of up to 17 layers, 2 each */
#define DML_MAX_VALIDATIONS 4096

/* One validation: the step and its metrics (for metrics.jsonl and the report). */
typedef struct dml_validation {
    long step;
    double map_at_r, precision_at_1;
    dml_spread spread; /* of the validation embeddings: the collapse diagnostics */
} dml_validation;

/* loss.memory (train/run_memory.c): the last `size` embeddings of earlier batches. Slots fill in
 * order and then wrap, so the first n are the ones in use (their order does not matter to a
 * loss). */
typedef struct dml_memory {
    int size, dim;
    int n, head;       /* slots in use; the next slot written */
    float *x;          /* [size, dim] */
    int32_t *y;        /* [size] their labels (0 when unlabelled) */
    const float *held; /* [n_held, dim] the step's embeddings (in the arena) until pushed */
    const int32_t *held_y;
    int n_held;
} dml_memory;

dml_status dml_memory_init(dml_memory *m, int size, int dim, dml_error *err);
void dml_memory_free(dml_memory *m);
/* Arena bytes a step needs beyond the loss without memory. */
size_t dml_memory_arena_bytes(int size, int dim, int batch);
/* The rows in use as a leaf without gradient [n, dim]; NULL while empty. */
dml_tensor *dml_memory_refs(const dml_memory *m, dml_graph *g);
/* Notes the step's embeddings z[b, dim] and labels (y may be NULL) for dml_memory_push. */
void dml_memory_hold(dml_memory *m, const float *z, const int32_t *y, int b);
/* Writes the held rows into the ring, oldest slots first once it is full. */
void dml_memory_push(dml_memory *m);

/* train/run_class_params.c: a loss row's learned per-class rows (class_rows > 0: proxies, class
 * centres), trained like the network's weights and kept in checkpoint.h5, never exported. */
typedef struct dml_class_params {
    float *data, *grad; /* [n_classes * rows, dim]; NULL when the loss learns none */
    int n_classes, rows, dim;
    int param;           /* their view's index in r->params and the optimizer's */
    float lr_multiplier; /* their learning rate over train.lr: the row's lr_multiplier */
} dml_class_params;

/* loss.hard_negatives (train/run_hard_negatives.c): each training row's pool of mined
 * negatives, and a step's draw from the batch anchors' pools. k 0: off. */
typedef struct dml_hard_negatives {
    int k, pool;    /* negatives drawn per anchor; the pool's capacity (candidates) */
    int period;     /* steps between minings */
    int n_rows;     /* the training set's rows (the arrays' index) */
    int32_t *cand;  /* [n_rows, pool] dataset rows, nearest first */
    int32_t *count; /* [n_rows] candidates in each pool (0 for rows never mined) */
    int32_t *rows;  /* [batch, k] the step's negatives: dataset rows */
    float *x;       /* [batch * k, d_in_b] their positive views */
    float *gc_z, *gc_g; /* [batch * k, dim] their embeddings and gradients (GradCache) */
} dml_hard_negatives;

/* The anchor's pool from its search results found[n] (positions in the searched rows, -1 past
 * the end) and their cosine[n], nearest first: the first `pool` of them that are not `self`
 * (its own positive) and score at most (1 - margin) * positive. Returns how many. */
int dml_hard_negatives_filter(const int32_t *found, const float *cosine, int n, int self,
                              float positive, float margin, int pool, int32_t *out);


/* train/run_stream.c: the samplers' shuffles a rank's rows were planned from (under mpirun). */
typedef struct dml_run_plan_key {
    dml_rng snap, snap_unl; /* sampler.snap, sampler_unl.snap (zero until it has drawn) */
    int unl_drawn;
} dml_run_plan_key;

/* train/run_lock.c: the run folder's lock, DIR/.lock (fd -1 when not held). */
typedef struct dml_run_lock {
    int fd;
    char path[1100];
} dml_run_lock;

/* Takes dir's lock for this process, or fails with DML_ERR_USAGE naming the holder's pid and
 * host. A lock its holder left without releasing (the process is gone) is taken over, said in
 * one line of log. On a file system without locks: a warning in log, DML_OK, nothing held. */
dml_status dml_run_lock_take(dml_run_lock *l, const char *dir, FILE *log, dml_error *err);
/* Removes the lock file and drops the lock; nothing when none is held. */
void dml_run_lock_release(dml_run_lock *l);

/* train/run_overlap.c: the gradient buckets (none when train.allreduce_bucket_mb is 0). Bucket
 * k holds the parameters [bound[k + 1], bound[k]), in descending order at flat[off[k]..]. */
typedef struct dml_run_overlap {
    int n_buckets;
    int *bound;       /* [n_params + 1] */
    size_t *off;      /* [n_params + 1] */
    int *ready;       /* [n_buckets]: this step's tape index after which the bucket is final */
    int *first_use;   /* [n_params]: this step's first tape node reading each parameter */
    int next;         /* the next bucket to start */
    double ss;        /* this rank's squared gradient norm over the buckets copied */
} dml_run_overlap;

typedef struct dml_run {
    const dml_config *cfg;  /* &cfg_fitted */
    dml_config cfg_fitted;  /* the run's config: the caller's, the data's defaults filled in */
    char out_dir[1024];
    dml_run_lock lock; /* out_dir's, held by rank 0 while dml_run_train writes it */
    FILE *log;
    int resume; /* dml_run_train continues from out_dir/checkpoint.h5 */
    volatile sig_atomic_t *stop; /* dml_train_opts.stop */
    int stop_asked;              /* the progress callback asked to stop */
    int no_folder;               /* dml_train_opts.no_folder: nothing written */
    int given_train, given_test; /* train (test) came in memory through dml_train_opts */
    dml_dataset val_rows;        /* dml_train_opts.val until appended to train (n 0: none) */
    int (*progress)(void *ctx, const dml_train_event *ev);
    void *progress_ctx;
    char *final_json;            /* the final metrics as JSON (dml_run_finish), for the model */

    /* data-parallel training (train/run_comm.c): NULL for one process */
    const dml_comm *comm;
    int lo, n_local;  /* this rank's rows [lo, lo + n_local) of every global batch */
    /* the loss's share when it is sharded (train/train_step.c): this rank's anchors */
    dml_loss_shard loss_shard;
    size_t loss_bytes; /* the most arena bytes a step's metric loss took (logged at the end) */
    float *flat;      /* [n_grad + 2 size]: the summed gradients, then per-rank flags */
    size_t n_grad;    /* trainable floats */
    int stop_any;     /* the largest stop flag of any rank (as of the last step's reduction) */
    dml_run_overlap ovl;

    /* data, normalised in place */
    dml_dataset train, test; /* test.n == 0 when data.test is empty */
    int streamed;            /* train's rows stay in the file (train/run_stream.c): */
    dml_rows rows;           /* the file, */
    dml_row_cache cache;     /* the blocks held, train.cache */
    int32_t *plan_rows;      /* streamed under mpirun: this rank's rows of the shuffles, */
    dml_run_plan_key plan_key; /* the shuffles they were planned from, */
    int planned;             /* set once the first plan is made */
    uint64_t data_hash; /* of the training rows as read (dml_run_data_hash), before normalising */
    dml_split split;
    dml_input_norm norm, norm_b; /* norm_b: the second view of file pairs */
    dml_input_scale scale, scale_b; /* the training rows' values, for model.h5 */
    int d_in, d_in_b;            /* encoder input widths (halves split the row) */

    /* model and optimisation */
    dml_net net;
    /* model.head: the projection MLP between the encoder's output and the training loss (none:
     * n_layers 0). Trained and checkpointed, never exported. */
    dml_mlp head;
    int dim_loss; /* the width of what the loss sees: the head's output, else model.dim */
    dml_class_params cls; /* the loss's learned per-class rows (Proxy Anchor's proxies) */
    dml_param_view params[DML_MAX_PARAMS];
    int n_params;
    dml_optim optim;
    dml_schedule schedule;
    dml_pq pq;                /* codebooks: learned jointly or fitted at the end */
    int pq_ready;             /* the joint loss's codebooks have been initialised */
    int pq_final;             /* the final codebooks are fitted (by every rank, before finish) */
    float *best;              /* [n_floats] parameters at the best validation (early stopping) */
    size_t n_floats;

    /* the step */
    dml_sampler sampler, sampler_unl; /* sampler_unl: unlabelled rows for reconstruction */
    dml_graph graph;
    int batch;
    int32_t *idx, *pos, *idx_unl, *labels; /* [batch] */
    float *xa, *xb, *xu; /* [2 batch, d_in] (pairs through one encoder), [batch, d_in_b], [batch, d_in] */
    dml_rng rng;
    /* data.augment: its own generator, so that batches are the same with or without it */
    int augment_on;
    float *aug_scratch; /* [batch, d_in] */
    dml_rng rng_aug;
    dml_memory mem; /* loss.memory; mem.size == 0 when off */
    dml_hard_negatives hn; /* loss.hard_negatives; hn.k == 0 when off */
    struct {
        float *za, *zp, *ga, *gp; /* [batch, dim] embeddings and their gradients (GradCache) */
    } gc;

    /* progress */
    long step, total_steps, steps_per_epoch;
    double best_score;
    int evals_without_gain;
    dml_validation val[DML_MAX_VALIDATIONS];
    int n_val;
    float *loss_curve; /* [total_steps] */
} dml_run;

/* train/run_class_params.c (dml_class_params above) */
/* After the model is built (r->dim_loss set): allocated for the training labels' classes and
 * drawn, their view appended to r->params, when the loss row (parameters p) has class rows. */
dml_status dml_run_class_params_open(dml_run *r, const dml_loss_row *row, const float *p,
                                     dml_error *err);
/* After the optimizer is set up: their learning-rate scale. */
void dml_run_class_params_lr(dml_run *r);
/* Before the ranks' gradients are summed: only rank 0's gradient for them counts. */
void dml_run_class_params_own(dml_run *r);
/* A leaf over them for the step's loss (with their gradient buffer); NULL when none. */
dml_tensor *dml_run_class_params_leaf(const dml_run *r, dml_graph *g);
void dml_run_class_params_free(dml_class_params *cp);

/* train/run_defaults.c: batch_size, sampler.m and pq.k fitted to the training rows where the
 * config left them at their defaults, each change noted in the log. DML_ERR_NOMEM when out of
 * memory. */
dml_status dml_run_fit_defaults(dml_run *r, dml_error *err);
/* loss.type reconstruction for an autoencoder whose training rows have no labels, when the
 * config left the loss unset (noted in the log); the config is then checked again. */
dml_status dml_run_fit_loss(dml_run *r, dml_error *err);

/* train/run_given.c: r->val_rows appended to r->train after the split, and made the split's
 * validation rows (replacing any it held out); r->val_rows is then empty. DML_ERR_DATA when
 * their widths or labelling differ from the training rows'. */
dml_status dml_run_append_validation(dml_run *r, dml_error *err);

/* train/run_stream.c: training rows larger than memory. */
/* Opens data.train whole, or (data.in_memory false, or auto over data.memory_limit) for
 * reading in blocks: r->streamed, r->train with labels and no rows. */
dml_status dml_run_open_train(dml_run *r, dml_error *err);
/* Streamed: refuses what needs every row at hand, fits the sampler (random, block shuffle;
 * each change logged) and sizes the cache. Nothing when not streamed. */
dml_status dml_run_stream_fit(dml_run *r, dml_error *err);
/* Blocks a block-random window holds: an eighth of data.memory_limit of rows. */
int dml_run_window_blocks(const dml_run *r);
/* Streamed under mpirun, after each draw of the sampler: when it has shuffled since the last
 * call, tells the cache this rank's rows of the new shuffle (the blocks then keep only those),
 * with the unlabelled rows' sampler's share (loss.reconstruction_weight) once it has drawn. */
void dml_run_stream_plan(dml_run *r);
/* Streamed: blocks are normalised with r->norm as they are loaded. */
void dml_run_stream_normalise(dml_run *r);
/* Validation rows used: split.n_val, capped when streamed. */
int dml_run_validation_rows(const dml_run *r);
/* The rows the final codebooks are fitted on (malloc'ed): every training row, or when
 * streamed a seeded sample of at most 256 per centroid in file order. */
int32_t *dml_run_codebook_rows(dml_run *r, int *n);

/* train/run_scale.c: r->scale (and scale_b) from the training rows before they are normalised,
 * and a warning in the log when the test rows look like another scale. */
dml_status dml_run_measure_scale(dml_run *r, dml_error *err);

/* train/train_step.c: one optimisation step's loss on the tape. */
dml_tensor *dml_run_loss(dml_run *r, dml_graph *g);
/* train.chunk_size > 0: the MNR step by GradCache (the loss's value in *loss_value, the
 * parameter gradients accumulated); the memory's held rows are pushed by the caller. The tape
 * is left holding the last chunk. */
dml_status dml_run_gradcache_step(dml_run *r, float *loss_value);
/* Rows per forward pass of dml_run_embed: a rank's shard of the codebook rows is whole blocks,
 * so its embeddings are the bits one process computes. */
#define DML_RUN_EMBED_BLOCK 1024
/* Embeds rows x[n, d] with one tower, in blocks of DML_RUN_EMBED_BLOCK, into out[n, dim]. */
void dml_run_embed(dml_graph *g, const dml_mlp *m, const float *x, int n, float *out);
/* The same in blocks of block rows. */
void dml_run_embed_blocks(dml_graph *g, const dml_mlp *m, const float *x, int n, int block,
                          float *out);
/* Embeddings [n, dim] (malloc'ed; NULL when out of memory) of rows[n] of ds (every row when
 * rows is NULL): the anchor tower, or (second) the positive tower on the second view. */
float *dml_run_embed_rows(dml_run *r, const dml_dataset *ds, const int32_t *rows, int n, int second);

/* train/run_hard_negatives.c */
/* Sizes r->hn for the run (after the model and the sampler). Refuses streamed rows. */
dml_status dml_hard_negatives_init(dml_run *r, dml_error *err);
void dml_hard_negatives_free(dml_hard_negatives *h);
/* Arena bytes a step needs for the extra negatives. */
size_t dml_hard_negatives_arena_bytes(const dml_run *r);
/* Mines every pool again when r->step is a positive multiple of the period (under mpirun on
 * rank 0, which sends the pools to the others); else nothing. */
dml_status dml_hard_negatives_mine(dml_run *r, dml_error *err);
/* Draws k negatives for each of the batch's b anchors (r->idx) into r->hn.rows and their
 * positive views into r->hn.x. Returns b * k, or 0 before the first mining. */
int dml_hard_negatives_pick(dml_run *r, int b);

/* train/run_comm.c: data-parallel training (nothing is called when r->comm is NULL). */
/* A hash of a dataset's shape, rows and labels (in memory; a streamed one's shape and labels):
 * what tells two training files apart, between ranks and between a checkpoint and a resume. */
uint64_t dml_run_data_hash(const dml_dataset *ds);
/* Checks that every rank set up the same run: st (this rank's set-up status), the config
 * and the training data (r->data_hash) compared by hash with rank 0's, the batch divisible by
 * the ranks.
 * Allocates the gradient buffer. Every rank returns the same verdict. */
dml_status dml_run_comm_open(dml_run *r, dml_status st, dml_error *err);
/* Sums the parameter gradients over the ranks (one allreduce of one flat buffer, or the
 * overlapped buckets' wait), with each
 * rank's "non-finite gradient" and "asked to stop" flags. Returns the lowest rank whose own
 * gradient norm was NaN or Inf, or -1. */
int dml_run_comm_reduce(dml_run *r);
/* This rank's flags into flat[n_grad..]; returns their count (2 size). */
size_t dml_run_comm_flags(dml_run *r, int finite);

/* train/run_overlap.c: the buckets made (at dml_run_comm_open) and freed; begin (after the
 * forward, before dml_backward) arms backward's hook; finish (in dml_run_comm_reduce) starts
 * the buckets left, waits for all and copies the sums back into the gradients. */
dml_status dml_run_overlap_open(dml_run *r, dml_error *err);
void dml_run_overlap_free(dml_run_overlap *o);
void dml_run_overlap_begin(dml_run *r);
void dml_run_overlap_finish(dml_run *r);
/* Rank 0's status (and its result, data[bytes], when given) on every rank: what rank 0 alone
 * did (validation, writing files), agreed so that all ranks go on or stop together. */
dml_status dml_run_comm_agree(dml_run *r, dml_status st, void *data, size_t bytes,
                              dml_error *err);
/* st when every rank's st is DML_OK or this rank's own failure; else an error naming a rank
 * that failed (what every rank did itself: reading the checkpoint). */
dml_status dml_run_comm_all(dml_run *r, dml_status st, const char *what, dml_error *err);
int dml_run_is_root(const dml_run *r);

/* train/run_state.c: checkpoint.h5 of a run. */
dml_status dml_run_checkpoint_save(dml_run *r, dml_error *err);
/* Refuses (train/run_resume.c) a checkpoint of another run before reading its state. */
dml_status dml_run_checkpoint_load(dml_run *r, dml_error *err);

/* train/run_resume.c: what a checkpoint's run was, and whether --resume continues it. */
/* The run's record (malloc'ed; NULL when out of memory): the training data's hash and the
 * effective config (its data-fitted defaults in), one "key: value" line each. */
char *dml_run_record(const dml_run *r);
/* DML_OK when the run r would train is the one the record saved (a checkpoint at path) was
 * made by, up to the keys a resume may change; else DML_ERR_CONFIG naming every changed key
 * with its old and new values. */
dml_status dml_run_record_check(const dml_run *r, const char *saved, const char *path,
                                dml_error *err);

#endif
