/* dml_row_cache: blocks of rows in a few slots, least recently used evicted. */
#include <stdlib.h>
#include <string.h>

#include "data/rows_cache.h"

dml_status dml_row_cache_init(dml_row_cache *c, dml_rows *rows, int block_rows, int n_slots,
                              dml_error *err)
{
    memset(c, 0, sizeof *c);
    c->rows = rows;
    c->d = rows->d;
    c->block_rows = block_rows;
    c->n_blocks = (rows->n + block_rows - 1) / block_rows;
    c->n_slots = n_slots < c->n_blocks ? n_slots : c->n_blocks;
    c->data = malloc((size_t)c->n_slots * (size_t)block_rows * (size_t)c->d * sizeof *c->data);
    c->slot_block = malloc((size_t)c->n_slots * sizeof *c->slot_block);
    c->block_slot = malloc((size_t)c->n_blocks * sizeof *c->block_slot);
    c->used = calloc((size_t)c->n_slots, sizeof *c->used);
    if (!c->data || !c->slot_block || !c->block_slot || !c->used) {
        dml_row_cache_free(c);
        return dml_error_set(err, DML_ERR_NOMEM, rows->source, 0, 0,
                             "out of memory for %d blocks of %d rows", n_slots, block_rows);
    }
    for (int s = 0; s < c->n_slots; s++)
        c->slot_block[s] = -1;
    for (int b = 0; b < c->n_blocks; b++)
        c->block_slot[b] = -1;
    return DML_OK;
}

void dml_row_cache_free(dml_row_cache *c)
{
    free(c->data);
    free(c->slot_block);
    free(c->block_slot);
    free(c->used);
    memset(c, 0, sizeof *c);
}

void dml_row_cache_set_transform(dml_row_cache *c, void (*transform)(const void *ctx, float *x, int n),
                                 const void *ctx)
{
    c->transform = transform;
    c->transform_ctx = ctx;
    for (int s = 0; s < c->n_slots; s++) {
        if (c->slot_block[s] >= 0)
            c->block_slot[c->slot_block[s]] = -1;
        c->slot_block[s] = -1;
    }
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
        int lo = b * c->block_rows, count = c->rows->n - lo < c->block_rows ? c->rows->n - lo
                                                                           : c->block_rows;
        float *x = c->data + (size_t)s * (size_t)c->block_rows * (size_t)c->d;
        c->status = dml_rows_read(c->rows, lo, count, x, &c->error);
        if (c->status != DML_OK)
            return -1;
        if (c->transform)
            c->transform(c->transform_ctx, x, count);
        c->slot_block[s] = b;
        c->block_slot[b] = s;
        c->loads++;
    }
    c->used[s] = ++c->tick;
    return s;
}

void dml_row_cache_gather(dml_row_cache *c, float *out, const int32_t *idx, int n)
{
    size_t row_bytes = (size_t)c->d * sizeof *out;
    for (int i = 0; i < n; i++) {
        float *dst = out + (size_t)i * (size_t)c->d;
        int s = c->status == DML_OK ? load(c, idx[i] / c->block_rows) : -1;
        if (s < 0) {
            memset(dst, 0, row_bytes);
            continue;
        }
        size_t at = (size_t)s * (size_t)c->block_rows + (size_t)(idx[i] % c->block_rows);
        memcpy(dst, c->data + at * (size_t)c->d, row_bytes);
    }
}

dml_status dml_row_cache_status(const dml_row_cache *c, dml_error *err)
{
    if (c->status != DML_OK && err)
        *err = c->error;
    return c->status;
}
