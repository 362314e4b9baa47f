/* Samplers: which rows make each batch. Seeded, allocation-free after init, and with a state
 * that a checkpoint saves and restores exactly. */
#ifndef DML_DATA_SAMPLER_H
#define DML_DATA_SAMPLER_H

#include <stdint.h>
#include "data/dataset.h"

typedef enum dml_sampler_kind {
    DML_SAMPLER_RANDOM,      /* a shuffled pass over the rows per epoch */
    DML_SAMPLER_M_PER_CLASS, /* batch/m classes x m rows each */
    DML_SAMPLER_SAME_CLASS   /* pairs: anchor + another row of its class */
} dml_sampler_kind;

typedef struct dml_sampler {
    dml_sampler_kind kind;
    int batch, m;
    int n;                /* rows in the pool */
    int32_t *rows;        /* [n]: the pool, in a shuffled order (random, same_class anchors) */
    int n_classes;        /* classes present in the pool */
    int32_t *class_start; /* [n_classes + 1] into by_class */
    int32_t *by_class;    /* [n]: pool rows grouped by class */
    int32_t *class_of;    /* [n]: class index (into class_start) of rows[i]'s label */
    int32_t *classes;     /* [n_classes]: shuffled class order (m_per_class) */
    int pos, class_pos;   /* next unused entry of rows / classes */
    int64_t epoch;
    dml_rng rng;
} dml_sampler;

/* rows[n]: the pool of dataset rows (copied); labels from ds->y (needed unless random). */
dml_status dml_sampler_init(dml_sampler *s, dml_sampler_kind kind, const dml_dataset *ds,
                            const int32_t *rows, int n, int batch, int m, uint64_t seed,
                            dml_error *err);
void dml_sampler_free(dml_sampler *s);
/* The next batch of rows into idx[batch] (random, m_per_class), or anchors into idx and their
 * positives into pos (same_class; pos may be NULL otherwise). */
void dml_sampler_next(dml_sampler *s, int32_t *idx, int32_t *pos);
/* Batches per epoch: n / batch (at least 1). */
long dml_sampler_steps_per_epoch(const dml_sampler *s);
/* Exact state as int64 values (a checkpoint entry). */
size_t dml_sampler_state_size(const dml_sampler *s);
void dml_sampler_state_save(const dml_sampler *s, int64_t *state);
void dml_sampler_state_load(dml_sampler *s, const int64_t *state);

#endif
