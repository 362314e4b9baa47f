/* Training rows larger than memory (data.in_memory, data.memory_limit): the rows stay in the
 * file and are read in blocks of sampler.block_rows as the block-random sampler reaches them,
 * normalised as each block is loaded. Labels, the split and the sampler's indices are in
 * memory (a few ints a row, some 25 bytes in all); the rows themselves take at most a quarter of
 * the memory limit, which leaves the rest of it for those indices and the libraries. Under
 * mpirun the limit is per rank, and each rank's cache keeps only its share of every batch's
 * rows (dml_run_stream_plan), about 1/N of them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"
#include "train/run_output.h"

/* Validation and the final codebooks embed a bounded sample when the rows are streamed. */
#define STREAM_VAL_ROWS 10000
#define STREAM_PQ_ROWS_PER_CENTROID 256 /* as FAISS samples for k-means */

static double limit_bytes(const dml_config *c)
{
    return (double)c->data.memory_limit_mb * 1048576.0;
}

dml_status dml_run_open_train(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    if (c->data.in_memory == DML_IN_MEMORY_TRUE)
        return dml_dataset_open(c->data.train, &r->train, err);
    dml_status st = dml_rows_try_stream(c->data.train, &r->rows, err);
    if (st != DML_OK)
        return st;
    if (!r->rows.streamed && c->data.in_memory == DML_IN_MEMORY_FALSE)
        return dml_config_error(c, "data.in_memory", err,
                                "false needs rows read in ranges: an HDF5, .npy or .fvecs/.bvecs "
                                "file with one view (%s is read whole)", c->data.train);
    if (!r->rows.streamed)
        return dml_dataset_open(c->data.train, &r->train, err);
    if (c->data.in_memory == DML_IN_MEMORY_AUTO && dml_rows_bytes(&r->rows) <= limit_bytes(c))
        return dml_rows_take(&r->rows, &r->train, err); /* the file is open: read it once */
    r->streamed = 1;
    dml_dataset *t = &r->train;
    t->n = r->rows.n;
    t->d = r->rows.d;
    t->y = r->rows.y; /* the dataset owns the labels from here */
    r->rows.y = NULL;
    t->n_classes = r->rows.n_classes;
    t->from_bytes = r->rows.from_bytes;
    t->value_type = r->rows.value_type;
    t->cache = &r->cache;
    snprintf(t->source, sizeof t->source, "%s", r->rows.source);
    fprintf(r->log, "# data.in_memory: %s takes %.1f MB as floats, over data.memory_limit %d MB: "
                    "its rows are read in blocks of %d as training reaches them\n",
            c->data.train, dml_rows_bytes(&r->rows) / 1048576.0, c->data.memory_limit_mb,
            c->sampler.block_rows);
    return DML_OK;
}

int dml_run_window_blocks(const dml_run *r)
{
    const dml_config *c = r->cfg;
    double block = (double)c->sampler.block_rows * r->train.d * sizeof(float);
    double w = limit_bytes(c) / 8.0 / block; /* the cache holds two windows: a quarter */
    return w < 1.0 ? 1 : w > 1e6 ? 1000000 : (int)w;
}

dml_status dml_run_stream_fit(dml_run *r, dml_error *err)
{
    dml_config *c = &r->cfg_fitted;
    if (!r->streamed)
        return DML_OK;
    const char *refused = c->data.pairs == DML_PAIRS_HALVES ? "data.pairs: halves"
                          : c->data.pairs == DML_PAIRS_SAME_CLASS ? "data.pairs: same_class"
                          : c->loss.quantization.weight > 0.0f ? "the joint quantization loss"
                                                              : NULL;
    if (refused)
        return dml_config_error(c, "data.in_memory", err,
                                "the rows of %s are read from the file in blocks, which %s does "
                                "not do yet: set data.in_memory: true, or raise "
                                "data.memory_limit", c->data.train, refused);
    int given_type = dml_config_where(c, "sampler.type", NULL, NULL);
    if (c->sampler.type != DML_SAMPLER_RANDOM) {
        if (given_type)
            return dml_config_error(c, "sampler.type", err,
                                    "m_per_class draws rows from anywhere in the file; rows read "
                                    "in blocks need sampler.type: random");
        c->sampler.type = DML_SAMPLER_RANDOM;
        fprintf(r->log, "# sampler.type: random (rows read in blocks)\n");
    }
    if (c->sampler.shuffle != DML_SHUFFLE_BLOCK) {
        if (dml_config_where(c, "sampler.shuffle", NULL, NULL))
            return dml_config_error(c, "sampler.shuffle", err,
                                    "full reads rows from anywhere in the file; rows read in "
                                    "blocks need sampler.shuffle: block");
        c->sampler.shuffle = DML_SHUFFLE_BLOCK;
        fprintf(r->log, "# sampler.shuffle: block\n");
    }
    int window = dml_run_window_blocks(r), block = c->sampler.block_rows;
    dml_status st;
    if (!r->comm) {
        st = dml_row_cache_init(&r->cache, &r->rows, block, 2 * window, err);
    } else { /* a rank keeps its share of each block: the mean, five standard deviations over
              * (a block drawing more, one in 3.5 million, grows the slots: dml_run_stream_plan) */
        double mean = (double)block / r->comm->size;
        int slot = (int)ceil(mean + 5.0 * sqrt(mean));
        r->plan_rows = malloc(((size_t)r->train.n / (size_t)r->comm->size + 1) *
                              sizeof *r->plan_rows); /* a rank's share of the rows */
        st = r->plan_rows ? dml_row_cache_init_shard(&r->cache, &r->rows, block, 2 * window,
                                                     slot < block ? slot : block, err)
                          : dml_error_set(err, DML_ERR_NOMEM, c->data.train, 0, 0,
                                          "out of memory for the rows' plan");
    }
    if (st == DML_OK)
        fprintf(r->log, "# %d blocks of %d rows a window, two windows held: %d rows a block "
                        "in %.3f MB of rows%s\n", window, block, r->cache.slot_rows,
                dml_row_cache_bytes(&r->cache) / 1048576.0,
                r->comm ? " a rank (each rank keeps its share of the batches)" : "");
    return st;
}

/* The shuffles a plan is made from: the sampler's, and the unlabelled rows' sampler's once it
 * has drawn (its first draw shuffles). */
static dml_run_plan_key plan_key(const dml_run *r)
{
    dml_run_plan_key k;
    memset(&k, 0, sizeof k);
    k.snap = r->sampler.snap;
    k.unl_drawn = r->sampler_unl.n > 0 && r->sampler_unl.step > 0;
    if (k.unl_drawn)
        k.snap_unl = r->sampler_unl.snap;
    return k;
}

void dml_run_stream_plan(dml_run *r)
{
    if (!r->streamed || !r->comm)
        return;
    dml_run_plan_key key = plan_key(r);
    if (r->planned && memcmp(&r->plan_key, &key, sizeof key) == 0)
        return; /* the same shuffles as the last plan's */
    int size = r->comm->size, rank = r->comm->rank;
    int n = dml_sampler_shard_rows(&r->sampler, size, rank, r->plan_rows);
    if (key.unl_drawn) /* a pool of other rows: the two shares fit n / size */
        n += dml_sampler_shard_rows(&r->sampler_unl, size, rank, r->plan_rows + n);
    int slot = r->cache.slot_rows;
    dml_row_cache_plan(&r->cache, r->plan_rows, n);
    if (r->cache.slot_rows != slot)
        fprintf(r->log, "# a block drew %d rows of rank %d's share: %.3f MB of rows held\n",
                r->cache.slot_rows, rank, dml_row_cache_bytes(&r->cache) / 1048576.0);
    r->plan_key = key;
    r->planned = 1;
}

static void normalise_block(const void *ctx, float *x, int n)
{
    dml_input_norm_apply(ctx, x, (size_t)n);
}

void dml_run_stream_normalise(dml_run *r)
{
    dml_row_cache_set_transform(&r->cache, normalise_block, &r->norm);
}

int dml_run_validation_rows(const dml_run *r)
{
    return r->streamed && r->split.n_val > STREAM_VAL_ROWS ? STREAM_VAL_ROWS : r->split.n_val;
}

static int compare_rows(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int32_t *dml_run_codebook_rows(dml_run *r, int *n)
{
    int32_t *rows = dml_run_all_train_rows(r, n);
    int cap = STREAM_PQ_ROWS_PER_CENTROID * r->cfg->pq.k;
    if (!rows || !r->streamed || *n <= cap)
        return rows;
    /* A seeded sample, in file order so the blocks are read once. */
    dml_rng g;
    dml_rng_seed(&g, (uint64_t)r->cfg->seed ^ 0x7071u);
    for (int i = 0; i < cap; i++) {
        int j = i + (int)dml_rng_below(&g, (uint32_t)(*n - i));
        int32_t t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
    *n = cap;
    qsort(rows, (size_t)cap, sizeof *rows, compare_rows);
    fprintf(r->log, "# codebooks fitted on a sample of %d training rows (rows read in blocks)\n",
            cap);
    return rows;
}
