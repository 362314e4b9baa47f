/* The table of loss types: one row per loss, with everything the rest of dml needs to know about
 * it. The config parser reads its name and parameters from here, the trainer asks it what data it
 * needs and what it combines with, the step builds the loss through it, and tests and docs walk
 * it. Adding a loss is one file in losses/ (its ops and its row) and one line in
 * losses/loss_table.c. */
#ifndef DML_LOSS_TABLE_H
#define DML_LOSS_TABLE_H

#include "losses/losses.h"

#define DML_LOSS_MAX_PARAMS 8

/* A loss parameter, set in a config as loss.<key>. Every value is held as a float: integers,
 * flags (0/1) and choices (the index into choices) are exact in one. */
typedef enum { DML_LP_FLOAT, DML_LP_INT, DML_LP_FLAG, DML_LP_CHOICE } dml_loss_param_kind;

typedef struct dml_loss_param {
    const char *key; /* "margin": the config key loss.margin */
    dml_loss_param_kind kind;
    float def, min, max;        /* default and inclusive range (FLOAT, INT) */
    int open_min;               /* 1: min itself is excluded ("a positive number") */
    const char *const *choices; /* CHOICE: the names, NULL-terminated; the value is the index */
    const char *doc;            /* one line for docs/config.md and --help */
} dml_loss_param;

/* What data a loss needs (dml_loss_row.needs). */
enum {
    DML_LOSS_NEEDS_LABELS = 1u << 0, /* a class label per row */
    DML_LOSS_NEEDS_PAIRS = 1u << 1,  /* anchor and positive views (data.pairs) */
    /* labels, or two views of each row (data.pairs), or both: the build gets zp only with
     * pairs and labels only with labels (supcon: unlabelled views are SimCLR's NT-Xent) */
    DML_LOSS_NEEDS_LABELS_OR_PAIRS = 1u << 2,
};

/* What a loss combines with (dml_loss_row.combines); the config check refuses the rest. */
enum {
    DML_LOSS_WITH_MEMORY = 1u << 0,       /* loss.memory: a cross-batch memory of references */
    DML_LOSS_WITH_GRADCACHE = 1u << 1,    /* train.chunk_size */
    DML_LOSS_WITH_QUANTIZATION = 1u << 2, /* loss.quantization (the joint loss) */
    DML_LOSS_WITH_HEAD = 1u << 3,         /* model.head: a projection head before the loss */
    DML_LOSS_WITH_MPI = 1u << 4,          /* mpirun: ranks whose model equals one process's */
    DML_LOSS_WITH_HARD_NEGATIVES = 1u << 5, /* loss.hard_negatives: mined from the corpus */
    /* the build honours dml_loss_input.shard: under mpirun each rank computes its own anchors'
     * terms (docs/scale.md, "The sharded loss") */
    DML_LOSS_WITH_SHARDING = 1u << 6,
};

/* One step's inputs to a loss's build function. Everything is the global batch (gathered over
 * ranks by the caller); with shard (rows with DML_LOSS_WITH_SHARDING, under mpirun) the loss
 * is this rank's anchors' share, the gradient of the gathered rows summed back by the caller. */
typedef struct dml_loss_input {
    dml_graph *g;
    dml_tensor *z;  /* [B, D] the batch's embeddings; with NEEDS_PAIRS the anchors */
    dml_tensor *zp; /* [B, D] the positives (NEEDS_PAIRS), else NULL */
    /* [K, D] extra references (a cross-batch memory, hard negatives), or NULL; their labels
     * (NULL: unlabelled, none is dropped as a positive) */
    dml_tensor *refs;
    const int32_t *labels;     /* [B] or NULL (pair losses on unlabelled pairs) */
    const int32_t *ref_labels; /* [K] or NULL */
    const float *p;            /* the row's parameters, in the row's order */
    /* Learned per-class parameters (rows with class_rows > 0): [n_classes * class_rows, D],
     * class c's rows at c * class_rows, updated by the optimizer like weights. NULL otherwise. */
    dml_tensor *class_params;
    int n_classes;
    const dml_loss_shard *shard; /* NULL: every row of z an anchor (one process) */
} dml_loss_input;

typedef struct dml_loss_row {
    const char *name; /* loss.type */
    const char *doc;  /* one line: the loss and its paper */
    unsigned needs;
    unsigned combines;
    const dml_loss_param *params;
    int n_params;
    /* Learned per-class rows (proxies, class centres): how many per class (the value of the
     * parameter named class_rows_key when set, e.g. "sub_centers", else class_rows); 0: none. */
    int class_rows;
    const char *class_rows_key;
    /* Their initial values, N(0, class_rows_std^2) each, as PML draws them: 0 means kaiming's
     * sqrt(2 / rows) (ProxyAnchorLoss), 1 is torch.nn.init.normal_ (ArcFace's and CosFace's
     * weights). The scale matters: Adam moves every coordinate by about the learning rate, so
     * a row's direction turns faster the shorter the row. */
    float class_rows_std;
    /* The row's ops, for the gradient checks tests/test_losses.c walks. */
    const dml_op_def *const *ops;
    int n_ops;
    /* The loss node ([1,1]) from a step's inputs; NULL for reconstruction, which the trainer
     * composes from the decoder itself. */
    dml_tensor *(*build)(const dml_loss_input *in);
    /* Defaults that depend on other parameters: fills p[i] for each i with !given[i] from the
     * rest (batch-all triplet's reduction mean_nonzero); NULL: every default is the param's def. */
    void (*fit_defaults)(float *p, const int *given);
} dml_loss_row;

extern const dml_loss_row *const dml_loss_rows[];
extern const int dml_loss_row_count;

/* The row named name, or NULL. */
const dml_loss_row *dml_loss_find(const char *name);
/* The index of the parameter key in row, or -1. */
int dml_loss_param_index(const dml_loss_row *row, const char *key);
/* p[i] = row's params' def (fit_defaults not applied). */
void dml_loss_defaults(const dml_loss_row *row, float *p);
/* Whether v is a value of param (in range; an integer for INT, FLAG and CHOICE). */
int dml_loss_param_ok(const dml_loss_param *param, double v);
/* What param's values are, for errors and docs: "a number >= 0", "1 or 2", "true or false",
 * "one of all | hard | semihard". */
void dml_loss_param_expect(const dml_loss_param *param, char *out, size_t size);

/* x's rows [shard->lo, shard->lo + shard->n) as a tensor whose gradient lands in x's (x itself
 * without a shard): a rank's anchors of the gathered batch. */
dml_tensor *dml_loss_shard_rows(dml_graph *g, dml_tensor *x, const dml_loss_shard *shard);
/* The distances of in's batch z (its shard's anchors, with in->shard) to its references, the
 * batch itself then in->refs when given: D [B, B + K] ([n, B + K] with in->shard); *ref_labels
 * gets their labels [B + K] (arena memory; in->ref_labels NULL: -1,
 * no reference a positive). For the losses over a distance matrix with a cross-batch memory. */
dml_tensor *dml_distance_refs(const dml_loss_input *in, dml_distance dist,
                              const int32_t **ref_labels);
/* The same for the losses over cosine similarities: S [B, B + K] (dml_cosine_sim_refs; [n, B + K]
 * with in->shard) and the references' labels as above. */
dml_tensor *dml_similarity_refs(const dml_loss_input *in, const int32_t **ref_labels);

/* Parameters several rows share. */
#define DML_LOSS_PARAM_DISTANCE                                                                    \
    {"distance", DML_LP_CHOICE, DML_DIST_EUCLIDEAN, 0, 0, 0, dml_distance_names,                \
     "euclidean, squared_euclidean or cosine (1 - cos); cosine models are searched by inner "    \
     "product"}
#define DML_LOSS_PARAM_REDUCTION(def, doc)                                                         \
    {"reduction", DML_LP_CHOICE, def, 0, 0, 0, dml_reduction_names, doc}

/* The names of the shared choices, indexed by losses.h's enums, NULL-terminated. */
extern const char *const dml_distance_names[];
extern const char *const dml_miner_names[];
extern const char *const dml_reduction_names[];

#endif
