/* Data-parallel training over a communicator (docs/scale.md): every rank runs the same
 * sampler over the whole global batch and computes its contiguous share of the rows; coupled
 * losses see the global batch through gather nodes (train/comm_gather.c); the parameter
 * gradients are summed in one allreduce of one flat buffer per step, or in buckets overlapped
 * with backward (train/run_overlap.c). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

int dml_run_is_root(const dml_run *r)
{
    return !r->comm || r->comm->rank == 0;
}

/* FNV-1a over 64-bit words (then the tail bytes): fast enough for the training set at start. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t config_hash(const dml_run *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return 0;
    dml_config_print(r->cfg, f);
    fprintf(f, "out %s resume %d\n", r->out_dir, r->resume);
    fclose(f);
    uint64_t h = hash_bytes(0xcbf29ce484222325ull, text, len);
    free(text);
    return h;
}

uint64_t dml_run_data_hash(const dml_dataset *ds)
{
    uint64_t h = hash_bytes(0xcbf29ce484222325ull, &ds->n, sizeof ds->n);
    h = hash_bytes(h, &ds->d, sizeof ds->d);
    if (ds->x)
        h = hash_bytes(h, ds->x, (size_t)ds->n * ds->d * sizeof(float));
    if (ds->y)
        h = hash_bytes(h, ds->y, (size_t)ds->n * sizeof *ds->y);
    if (ds->x_b)
        h = hash_bytes(h, ds->x_b, (size_t)ds->n * ds->d_b * sizeof(float));
    return h;
}

/* What each rank tells the others after its set-up. */
typedef struct setup_record {
    int32_t status, batch;
    uint64_t config, data;
} setup_record;

dml_status dml_run_comm_open(dml_run *r, dml_status st, dml_error *err)
{
    const dml_comm *c = r->comm;
    setup_record mine = {st, 0, 0, 0}, *all = calloc((size_t)c->size, sizeof *all);
    if (st == DML_OK) {
        mine.batch = r->batch;
        mine.config = config_hash(r);
        mine.data = r->data_hash;
    }
    if (!all) /* a rank that cannot even hold the records cannot take part: abort the job */
        abort();
    c->allgather(c->ctx, &mine, all, sizeof mine);
    for (int k = 0; k < c->size && st == DML_OK; k++) {
        if (all[k].status != DML_OK)
            st = dml_error_set(err, (dml_status)all[k].status, NULL, 0, 0,
                               "rank %d of %d failed to set up the run (its own message says "
                               "why)", k, c->size);
        else if (all[k].config != all[0].config)
            st = dml_error_set(err, DML_ERR_CONFIG, r->cfg->path, 0, 0,
                               "rank %d's config differs from rank 0's (hash %016llx, rank 0 "
                               "%016llx): every rank must be given the same config, --set and "
                               "--out", k, (unsigned long long)all[k].config,
                               (unsigned long long)all[0].config);
        else if (all[k].data != all[0].data)
            st = dml_error_set(err, DML_ERR_DATA, r->cfg->data.train, 0, 0,
                               "rank %d read other training data than rank 0 (hash %016llx, "
                               "rank 0 %016llx): every rank must see the same file",
                               k, (unsigned long long)all[k].data,
                               (unsigned long long)all[0].data);
    }
    free(all);
    if (st != DML_OK)
        return st;
    const dml_loss_row *row = r->cfg->loss.row;
    if (!(row->combines & DML_LOSS_WITH_MPI))
        return dml_config_error(r->cfg, "loss.type", err,
                                "%s trains in one process: its ranks' models would differ from "
                                "one process's; run it without mpirun", row->name);
    if (r->cfg->train.chunk_size > 0)
        return dml_config_error(r->cfg, "train.chunk_size", err,
                                "GradCache runs in one process: under mpirun the ranks already "
                                "share each batch's memory; set train.chunk_size to 0");
    if (r->batch % c->size != 0)
        return dml_config_error(r->cfg, "train.batch_size", err,
                                "%d rows is not divisible by the %d ranks: every rank takes an "
                                "equal share of each global batch", r->batch, c->size);
    const dml_sampler_spec *ss = &r->sampler.spec;
    int last = ss->kind == DML_SAMPLER_RANDOM && ss->pairs == DML_PAIR_MODE_NONE && ss->keep_last
                   ? r->split.n_train % r->batch : 0; /* an epoch's kept last, short batch */
    if (last % c->size != 0)
        return dml_config_error(r->cfg, "sampler.drop_last", err,
                                "each epoch ends with a batch of the %d rows left (%d training "
                                "rows, batch_size %d), not divisible by the %d ranks: set "
                                "sampler.drop_last: true, or a batch_size that leaves a multiple "
                                "of %d", last, r->split.n_train, r->batch, c->size, c->size);
    r->n_local = r->batch / c->size;
    r->lo = c->rank * r->n_local;
    r->n_grad = 0;
    for (int i = 0; i < r->n_params; i++)
        r->n_grad += r->params[i].n;
    r->flat = malloc((r->n_grad + 2 * (size_t)c->size) * sizeof *r->flat);
    if (!r->flat)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the gradients");
    return dml_run_overlap_open(r, err);
}

size_t dml_run_comm_flags(dml_run *r, int finite)
{
    const dml_comm *c = r->comm;
    float *bad = r->flat + r->n_grad, *stop = bad + c->size; /* [size] each */
    memset(bad, 0, 2 * (size_t)c->size * sizeof *bad);
    bad[c->rank] = !finite;
    stop[c->rank] = r->stop ? (float)*r->stop : 0.0f; /* the signal's number, or 0 */
    return 2 * (size_t)c->size;
}

int dml_run_comm_reduce(dml_run *r)
{
    const dml_comm *c = r->comm;
    if (r->ovl.n_buckets) {
        dml_run_overlap_finish(r);
    } else {
        float *p = r->flat;
        double ss = 0.0; /* this rank's gradient norm, as dml_clip_grad_norm takes it */
        for (int i = 0; i < r->n_params; i++) {
            const float *g = r->params[i].grad;
            for (size_t k = 0; k < r->params[i].n; k++) {
                ss += (double)g[k] * g[k];
                p[k] = g[k];
            }
            p += r->params[i].n;
        }
        size_t n = r->n_grad + dml_run_comm_flags(r, isfinite((float)sqrt(ss)) != 0);
        c->allreduce_sum(c->ctx, r->flat, n);
        p = r->flat;
        for (int i = 0; i < r->n_params; i++) {
            memcpy(r->params[i].grad, p, r->params[i].n * sizeof *p);
            p += r->params[i].n;
        }
    }
    const float *bad = r->flat + r->n_grad, *stop = bad + c->size;
    r->stop_any = 0;
    for (int k = 0; k < c->size; k++)
        r->stop_any = stop[k] > (float)r->stop_any ? (int)stop[k] : r->stop_any;
    if (r->stop_any && r->stop && !*r->stop) /* the signal another rank got: its exit code */
        *r->stop = r->stop_any;
    for (int k = 0; k < c->size; k++)
        if (bad[k] != 0.0f)
            return k;
    return -1;
}

dml_status dml_run_comm_agree(dml_run *r, dml_status st, void *data, size_t bytes,
                              dml_error *err)
{
    const dml_comm *c = r->comm;
    if (!c)
        return st;
    int32_t s = st;
    c->bcast(c->ctx, &s, sizeof s);
    if (data && bytes)
        c->bcast(c->ctx, data, bytes);
    if (c->rank != 0 && s != DML_OK)
        return dml_error_set(err, (dml_status)s, NULL, 0, 0,
                             "rank 0 failed (its message says why): every rank stops");
    return (dml_status)s;
}

dml_status dml_run_comm_all(dml_run *r, dml_status st, const char *what, dml_error *err)
{
    const dml_comm *c = r->comm;
    if (!c)
        return st;
    float *failed = calloc((size_t)c->size, sizeof *failed);
    if (!failed)
        abort(); /* as in dml_run_comm_open */
    failed[c->rank] = st != DML_OK ? (float)st : 0.0f;
    c->allreduce_sum(c->ctx, failed, (size_t)c->size);
    for (int k = 0; k < c->size && st == DML_OK; k++)
        if (failed[k] != 0.0f)
            st = dml_error_set(err, (dml_status)(int)failed[k], NULL, 0, 0,
                               "rank %d of %d failed %s (its own message says why)", k, c->size,
                               what);
    free(failed);
    return st;
}
