/* dml_row_cache: blocks of rows in a few slots, least recently used evicted; with a plan, each
 * slot holds only the planned rows of its block. */
#include <stdlib.h>
#include <string.h>

#include "data/rows_cache.h"

static dml_status out_of_memory(dml_row_cache *c, dml_error *err)
{
    return dml_error_set(err, DML_ERR_NOMEM, c->rows->source, 0, 0,
                         "out of memory for %d blocks of %d rows", c->n_slots, c->slot_rows);
}

static dml_status init_slots(dml_row_cache *c, dml_rows *rows, int block_rows, int n_slots,
                             int slot_rows, dml_error *err)
{
    memset(c, 0, sizeof *c);
    c->rows = rows;
    c->d = rows->d;
    c->block_rows = block_rows;
    c->slot_rows = slot_rows;
    c->n_blocks = (rows->n + block_rows - 1) / block_rows;
    c->n_slots = n_slots < c->n_blocks ? n_slots : c->n_blocks;
    c->data = malloc((size_t)c->n_slots * (size_t)slot_rows * (size_t)c->d * sizeof *c->data);
    c->slot_block = malloc((size_t)c->n_slots * sizeof *c->slot_block);
    c->block_slot = malloc((size_t)c->n_blocks * sizeof *c->block_slot);
    c->used = calloc((size_t)c->n_slots, sizeof *c->used);
    if (!c->data || !c->slot_block || !c->block_slot || !c->used) {
        dml_status st = out_of_memory(c, err);
        dml_row_cache_free(c);
        return st;
    }
    for (int s = 0; s < c->n_slots; s++)
        c->slot_block[s] = -1;
    for (int b = 0; b < c->n_blocks; b++)
        c->block_slot[b] = -1;
    return DML_OK;
}

dml_status dml_row_cache_init(dml_row_cache *c, dml_rows *rows, int block_rows, int n_slots,
                              dml_error *err)
{
    return init_slots(c, rows, block_rows, n_slots, block_rows, err);
}

dml_status dml_row_cache_init_shard(dml_row_cache *c, dml_rows *rows, int block_rows,
                                    int n_slots, int slot_rows, dml_error *err)
{
    dml_status st = init_slots(c, rows, block_rows, n_slots, slot_rows, err);
    if (st != DML_OK)
        return st;
    c->place = malloc((size_t)rows->n * sizeof *c->place);
    c->block_count = malloc((size_t)c->n_blocks * sizeof *c->block_count);
    c->scratch_rows = c->slot_rows;
    c->scratch = malloc((size_t)c->scratch_rows * (size_t)c->d * sizeof *c->scratch);
    if (!c->place || !c->block_count || !c->scratch) {
        st = out_of_memory(c, err);
        dml_row_cache_free(c);
        return st;
    }
    for (int i = 0; i < rows->n; i++)
        c->place[i] = -1; /* nothing planned yet: every row from the scratch block */
    return DML_OK;
}

void dml_row_cache_free(dml_row_cache *c)
{
    free(c->data);
    free(c->slot_block);
    free(c->block_slot);
    free(c->used);
    free(c->place);
    free(c->block_count);
    free(c->scratch);
    memset(c, 0, sizeof *c);
}

static void drop_blocks(dml_row_cache *c)
{
    for (int s = 0; s < c->n_slots; s++) {
        if (c->slot_block[s] >= 0)
            c->block_slot[c->slot_block[s]] = -1;
        c->slot_block[s] = -1;
    }
    c->scratch_count = 0;
}

void dml_row_cache_set_transform(dml_row_cache *c, void (*transform)(const void *ctx, float *x, int n),
                                 const void *ctx)
{
    c->transform = transform;
    c->transform_ctx = ctx;
    drop_blocks(c);
}

void dml_row_cache_plan(dml_row_cache *c, const int32_t *wanted, int n)
{
    DML_ASSERT(c->place != NULL);
    drop_blocks(c);
    for (int i = 0; i < c->rows->n; i++)
        c->place[i] = -1;
    memset(c->block_count, 0, (size_t)c->n_blocks * sizeof *c->block_count);
    int most = 0;
    for (int i = 0; i < n; i++) {
        int b = wanted[i] / c->block_rows;
        if (c->place[wanted[i]] < 0) /* a row planned twice keeps one place */
            c->place[wanted[i]] = c->block_count[b]++;
        most = c->block_count[b] > most ? c->block_count[b] : most;
    }
    if (most <= c->slot_rows || c->status != DML_OK)
        return;
    /* A block drew more of this rank's rows than the slots were sized for (many standard
     * deviations above the mean): the slots grow, at most once an epoch. */
    float *grown = realloc(c->data, (size_t)c->n_slots * (size_t)most * (size_t)c->d *
                                        sizeof *c->data);
    if (!grown) {
        c->status = out_of_memory(c, &c->error);
        return;
    }
    c->data = grown;
    c->slot_rows = most;
}

/* Reads rows [lo, lo + count) into x, through the transform; 0 on success. */
static int read_range(dml_row_cache *c, int lo, int count, float *x)
{
    c->status = dml_rows_read(c->rows, lo, count, x, &c->error);
    if (c->status != DML_OK)
        return -1;
    if (c->transform)
        c->transform(c->transform_ctx, x, count);
    return 0;
}

static int block_size(const dml_row_cache *c, int b)
{
    int lo = b * c->block_rows;
    return c->rows->n - lo < c->block_rows ? c->rows->n - lo : c->block_rows;
}

/* The scratch's piece of block b that holds `row`, read unless it is there: rows [lo, lo +
 * count) with lo a multiple of scratch_rows into the block. */
static int read_piece(dml_row_cache *c, int b, int row)
{
    int first = b * c->block_rows, lo = first + (row - first) / c->scratch_rows * c->scratch_rows;
    int end = first + block_size(c, b), count = end - lo < c->scratch_rows ? end - lo
                                                                          : c->scratch_rows;
    if (c->scratch_lo == lo && c->scratch_count == count)
        return 0;
    c->scratch_count = 0;
    if (read_range(c, lo, count, c->scratch) != 0)
        return -1;
    c->scratch_lo = lo;
    c->scratch_count = count;
    return 0;
}

/* Block b into x: whole, or (planned) piece by piece through the scratch, its planned rows
 * copied to their places. */
static int read_block(dml_row_cache *c, int b, float *x)
{
    int first = b * c->block_rows, count = block_size(c, b);
    if (!c->place) {
        if (read_range(c, first, count, x) != 0)
            return -1;
        c->loads++;
        return 0;
    }
    size_t row_bytes = (size_t)c->d * sizeof *x;
    for (int i = first; i < first + count; i += c->scratch_rows) {
        if (read_piece(c, b, i) != 0)
            return -1;
        for (int k = 0; k < c->scratch_count; k++)
            if (c->place[i + k] >= 0)
                memcpy(x + (size_t)c->place[i + k] * (size_t)c->d,
                       c->scratch + (size_t)k * (size_t)c->d, row_bytes);
    }
    c->loads++;
    return 0;
}

/* The slot holding block b, reading it into the least recently used slot when absent. */
static int load(dml_row_cache *c, int b)
{
    int s = c->block_slot[b];
    if (s < 0) {
        s = 0;
        for (int k = 1; k < c->n_slots; k++)
            if (c->used[k] < c->used[s])
                s = k;
        if (c->slot_block[s] >= 0)
            c->block_slot[c->slot_block[s]] = -1;
        c->slot_block[s] = -1;
        float *x = c->data + (size_t)s * (size_t)c->slot_rows * (size_t)c->d;
        if (read_block(c, b, x) != 0)
            return -1;
        c->slot_block[s] = b;
        c->block_slot[b] = s;
    }
    c->used[s] = ++c->tick;
    return s;
}

/* Row `row` in the cache, or NULL after a read failure. */
static const float *row_at(dml_row_cache *c, int row)
{
    if (c->status != DML_OK)
        return NULL;
    int b = row / c->block_rows;
    if (c->place && c->place[row] < 0) { /* not planned: from the scratch */
        if (read_piece(c, b, row) != 0)
            return NULL;
        return c->scratch + (size_t)(row - c->scratch_lo) * (size_t)c->d;
    }
    int s = load(c, b);
    if (s < 0)
        return NULL;
    size_t at = c->place ? (size_t)c->place[row] : (size_t)(row % c->block_rows);
    return c->data + ((size_t)s * (size_t)c->slot_rows + at) * (size_t)c->d;
}

void dml_row_cache_gather(dml_row_cache *c, float *out, const int32_t *idx, int n)
{
    size_t row_bytes = (size_t)c->d * sizeof *out;
    for (int i = 0; i < n; i++) {
        float *dst = out + (size_t)i * (size_t)c->d;
        const float *src = row_at(c, idx[i]);
        if (src)
            memcpy(dst, src, row_bytes);
        else
            memset(dst, 0, row_bytes);
    }
}

double dml_row_cache_bytes(const dml_row_cache *c)
{
    return (double)c->n_slots * c->slot_rows * c->d * sizeof(float) +
           (double)c->scratch_rows * c->d * sizeof(float);
}

dml_status dml_row_cache_status(const dml_row_cache *c, dml_error *err)
{
    if (c->status != DML_OK && err)
        *err = c->error;
    return c->status;
}
