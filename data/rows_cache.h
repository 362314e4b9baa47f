/* A data set's rows held as a few blocks read from the file (data/rows.h), for training on
 * files larger than memory.
 *
 * Rows are cut in blocks of block_rows consecutive rows; a gather loads the blocks it needs
 * into n_slots slots, evicting the least recently used. Any order of rows is served correctly;
 * the sampler's block-random order (data/sampler.h) makes it cheap: each block is read once an
 * epoch. A loaded block is passed through transform (the input normalisation) once, so it is
 * served as an in-memory data set normalised in place would be.
 *
 * Reading can fail (an I/O error, a NaN in the file): the first error is kept and every later
 * gather is a no-op that fills zeros, so the caller checks dml_row_cache_status once a step
 * rather than after every gather.
 *
 * Under data-parallel training each rank gathers only its share of every batch: a cache made
 * with dml_row_cache_init_shard is given that share of the sampler's shuffle (dml_row_cache_plan)
 * and each slot keeps only its block's planned rows (about block_rows / ranks), so a rank holds
 * about 1 / ranks of one process's rows. A block is read in pieces of slot_rows rows through a
 * scratch of that size, which also serves the rows not planned (validation rows, say), a piece
 * at a time. */
#ifndef DML_DATA_ROWS_CACHE_H
#define DML_DATA_ROWS_CACHE_H

#include <stdint.h>

#include "data/rows.h"

typedef struct dml_row_cache {
    dml_rows *rows;        /* not owned */
    int d, block_rows, n_blocks, n_slots;
    int slot_rows;         /* rows a slot holds: block_rows, or the planned rows of a block */
    float *data;           /* [n_slots, slot_rows, d] */
    int32_t *slot_block;   /* [n_slots] the block in each slot, -1 when empty */
    int32_t *block_slot;   /* [n_blocks] the slot of each block, -1 when not loaded */
    uint64_t *used;        /* [n_slots] when each slot was last used (tick) */
    uint64_t tick;
    long long loads;       /* blocks read so far */
    void (*transform)(const void *ctx, float *x, int n); /* applied to each block loaded */
    const void *transform_ctx;
    /* planned (dml_row_cache_init_shard) only, else NULL: */
    int32_t *place;        /* [n rows] a planned row's place in its block's slot, else -1 */
    int32_t *block_count;  /* [n_blocks] planned rows of each block */
    float *scratch;        /* [scratch_rows, d] the last piece of a block read, */
    int scratch_rows, scratch_lo, scratch_count; /* its size, first row and rows (0: none) */
    dml_status status;     /* the first failure, DML_OK until then */
    dml_error error;
} dml_row_cache;

/* A cache of n_slots blocks of block_rows rows over rows (which must outlive it). */
dml_status dml_row_cache_init(dml_row_cache *c, dml_rows *rows, int block_rows, int n_slots,
                              dml_error *err);
/* The same whose slots hold slot_rows planned rows of a block each; until the first plan every
 * row is served from the scratch. */
dml_status dml_row_cache_init_shard(dml_row_cache *c, dml_rows *rows, int block_rows,
                                    int n_slots, int slot_rows, dml_error *err);
void dml_row_cache_free(dml_row_cache *c);

/* (init_shard) The rows wanted[n] the gathers to come take: the blocks held are dropped and from
 * now on a slot keeps its block's wanted rows. A block with more than slot_rows of them grows
 * the slots (a realloc, at most once a plan); out of memory then is the cache's status. */
void dml_row_cache_plan(dml_row_cache *c, const int32_t *wanted, int n);

/* The bytes of rows the cache holds: its slots, and the scratch. */
double dml_row_cache_bytes(const dml_row_cache *c);

/* Blocks loaded from now on pass through transform(ctx, x, n); those held are dropped. */
void dml_row_cache_set_transform(dml_row_cache *c, void (*transform)(const void *ctx, float *x, int n),
                                 const void *ctx);

/* out[n, d] = the rows idx[n]. */
void dml_row_cache_gather(dml_row_cache *c, float *out, const int32_t *idx, int n);

/* DML_OK, or the first read failure (copied into *err). */
dml_status dml_row_cache_status(const dml_row_cache *c, dml_error *err);

#endif
