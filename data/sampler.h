/* Samplers: which rows make each batch. Seeded, allocation-free after init, and with a state
 * that a checkpoint saves and restores exactly (a resumed run draws the same batches). */
#ifndef DML_DATA_SAMPLER_H
#define DML_DATA_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "data/dataset.h"
#include "data/rng.h"

/* config sampler.type; the order matches the config's choice list. */
typedef enum dml_sampler_kind {
    DML_SAMPLER_RANDOM,     /* a shuffled pass over the rows per epoch, batches of B */
    DML_SAMPLER_M_PER_CLASS /* B/M distinct classes x M rows each */
} dml_sampler_kind;

/* What dml_sampler_next_pairs pairs each anchor with. config data.pairs maps as
 * same_class -> SAME_CLASS, halves and file -> OTHER_VIEW, none -> NONE. */
typedef enum dml_pair_mode {
    DML_PAIR_MODE_NONE,       /* no pairs: dml_sampler_next */
    DML_PAIR_MODE_SAME_CLASS, /* another row of the anchor's class (never the anchor itself) */
    DML_PAIR_MODE_OTHER_VIEW  /* the anchor's own row; the caller reads it from the other view
                               * (x_b of a paired file, or the second half of the row) */
} dml_pair_mode;

typedef struct dml_sampler_spec {
    dml_sampler_kind kind; /* pairs are drawn with RANDOM only */
    dml_pair_mode pairs;
    int batch_size;        /* B */
    int m;                 /* M, rows per class (M_PER_CLASS); B % M == 0 */
    int keep_last;         /* RANDOM without pairs: also serve each epoch's last, partial batch
                            * (PyTorch's DataLoader with drop_last=False); 0 drops it */
    /* RANDOM without same-class pairs: block-random order when block_rows > 0. The rows are
     * cut in blocks of block_rows consecutive dataset rows; an epoch takes the blocks in a
     * shuffled order, window_blocks at a time, and shuffles the rows of each window. A data
     * set read from disk in blocks (data/rows_cache.h) then loads each block once an epoch. */
    int block_rows;
    int window_blocks;     /* >= 1 with block_rows */
} dml_sampler_spec;

typedef struct dml_sampler {
    dml_sampler_spec spec;
    int n;                /* rows in the pool */
    int32_t *rows;        /* [n] dataset rows of the pool, as given */
    int n_anchor;         /* pool positions a batch (or a pair's anchor) may take */
    int32_t *anchor;      /* [n_anchor] those positions (into rows), ascending (RANDOM) */
    int32_t *order;       /* [n_anchor] this epoch's shuffle of anchor (RANDOM) */
    int n_classes;        /* classes present in the pool (labelled kinds only) */
    int32_t *class_start; /* [n_classes + 1] offsets into by_class */
    int32_t *by_class;    /* [n] dataset rows of the pool grouped by class, pool order inside */
    int32_t *class_of;    /* [n] class index (0..n_classes-1) of rows[i] */
    int32_t *rank;        /* [n] offset of rows[i] inside its class's group in by_class */
    int32_t *class_order; /* [n_classes] this round's shuffle of the classes (M_PER_CLASS) */
    int n_blocks;         /* block-random: blocks of the dataset's rows, */
    int32_t *block_start; /* [n_blocks + 1] offsets into by_block */
    int32_t *by_block;    /* [n_anchor] anchor positions grouped by block, anchor order inside */
    int32_t *block_order; /* [n_blocks] this epoch's shuffle of the blocks */
    int pos;              /* next unused entry of order (RANDOM) or class_order (M_PER_CLASS) */
    int64_t step;         /* batches served since init */
    dml_rng rng;          /* every draw */
    dml_rng snap;         /* rng's state when the current order / class_order was shuffled */
    uint64_t fingerprint; /* spec and pool: a saved state loads only into the same sampler */
} dml_sampler;

/* A sampler over the pool rows[n] of ds (copied). Its generator is split off rng (which
 * advances). Errors: B < 1, M < 1, B % M != 0, pairs with M_PER_CLASS, rows out of range or
 * repeated (DML_ERR_USAGE); a pool smaller than one batch, labels missing for M_PER_CLASS or
 * SAME_CLASS, fewer than B/M classes, or no class with two rows for SAME_CLASS (DML_ERR_DATA,
 * naming ds->source). */
dml_status dml_sampler_init(dml_sampler *s, const dml_sampler_spec *spec, const dml_dataset *ds,
                            const int32_t *rows, int n, dml_rng *rng, dml_error *err);
void dml_sampler_free(dml_sampler *s);

/* The next batch: idx[B] dataset rows; returns how many were written. RANDOM: the epoch's
 * shuffle (block-random with spec.block_rows)
 * shuffle B rows at a time, reshuffled once fewer than B remain (the last partial batch is
 * dropped), or with keep_last once none remain (the last batch then has the 1..B rows left, and
 * that count is returned). M_PER_CLASS: B/M
 * distinct classes (a shuffled round over the classes, reshuffled once fewer than B/M remain),
 * M rows of each in consecutive slots: distinct rows when the class has M, drawn with
 * replacement when it has fewer. Not for pair samplers. */
int dml_sampler_next(dml_sampler *s, int32_t *idx);
/* The next B pairs: anchors as RANDOM draws them; positive[i] per the pair mode. Returns B. */
int dml_sampler_next_pairs(dml_sampler *s, int32_t *anchor, int32_t *positive);

/* RANDOM: the dataset rows that rank `rank` of `ranks` gathers from the current shuffle (each
 * batch's contiguous share [rank b / ranks, (rank + 1) b / ranks), b its rows, which divide by
 * ranks), in order, into out (room for n_anchor / ranks rows; a pair's anchor only: its positive is
 * the same row or another view). Returns how many were written. */
int dml_sampler_shard_rows(const dml_sampler *s, int ranks, int rank, int32_t *out);

/* RANDOM: n_anchor / B, rounded up with keep_last. M_PER_CLASS: n / B, at least 1. */
int dml_sampler_steps_per_epoch(const dml_sampler *s);

/* The exact position (generator, shuffle, step) as bytes: a checkpoint entry. */
size_t dml_sampler_state_size(const dml_sampler *s);
void dml_sampler_state_save(const dml_sampler *s, uint8_t *state);
/* Restores a saved state; the next batches are those the saved sampler would have drawn.
 * A state saved by a sampler with another spec or pool is refused (DML_ERR_DATA). */
dml_status dml_sampler_state_load(dml_sampler *s, const uint8_t *state, size_t size,
                                  dml_error *err);

#endif
