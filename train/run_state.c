/* A run's checkpoint: every parameter (frozen ones too), the optimizer's moments, the RNG and
 * samplers' exact positions, the step, early-stopping state, codebooks and the curves so far.
 * One list of entries serves both writing and reading, so the two cannot drift apart. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/checkpoint.h"
#include "train/run.h"

#define MAX_ENTRIES (4 * DML_MAX_PARAMS + 16)
#define VAL_FIELDS 8 /* a validation's map_at_r, precision_at_1 and dml_spread */

typedef struct entries {
    dml_ckpt_entry e[MAX_ENTRIES];
    int n;
} entries;

static void add(entries *es, const char *name, dml_ckpt_type type, void *data, size_t n)
{
    DML_ASSERT(es->n < MAX_ENTRIES);
    dml_ckpt_entry *e = &es->e[es->n++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->type = type;
    e->data = data;
    e->n = n;
    e->any_length = 0;
}

static void add_mlp(entries *es, const char *tower, dml_mlp *m)
{
    char name[64];
    for (int i = 0; i < m->n_layers; i++) {
        dml_linear *l = &m->layers[i];
        snprintf(name, sizeof name, "%s_%03d_w", tower, i);
        add(es, name, DML_CKPT_F32, l->w.data, (size_t)l->w.rows * l->w.cols);
        snprintf(name, sizeof name, "%s_%03d_b", tower, i);
        add(es, name, DML_CKPT_F32, l->b.data, (size_t)l->b.cols);
    }
}

/* Scalars travel through one int64 and one float64 array. */
typedef struct scalars {
    int64_t i[8]; /* step, pq_ready, evals_without_gain, n_val, optimizer steps, has_best,
                   * memory rows in use, the memory's next slot */
    double f[2];  /* best_score */
} scalars;

static void collect(dml_run *r, entries *es, scalars *s, uint8_t *sampler_state,
                    uint8_t *sampler_unl_state, int64_t *val_steps, double *val_metrics)
{
    es->n = 0;
    add_mlp(es, "encoder", &r->net.encoder);
    add_mlp(es, "decoder", &r->net.decoder);
    add_mlp(es, "encoder_b", &r->net.encoder_b);
    add_mlp(es, "head", &r->head); /* model.head: in the checkpoint only */
    if (r->cls.data) /* the loss's class rows: in the checkpoint only, as the head */
        add(es, "class_params", DML_CKPT_F32, r->cls.data,
            (size_t)r->cls.n_classes * r->cls.rows * r->cls.dim);
    int n_state = dml_optim_n_state(&r->optim);
    char name[64];
    for (int i = 0; i < r->optim.n_params; i++) {
        if (n_state >= 1) {
            snprintf(name, sizeof name, "optim_m_%03d", i);
            add(es, name, DML_CKPT_F32, r->optim.m[i], r->optim.params[i].n);
        }
        if (n_state >= 2) {
            snprintf(name, sizeof name, "optim_v_%03d", i);
            add(es, name, DML_CKPT_F32, r->optim.v[i], r->optim.params[i].n);
        }
    }
    add(es, "scalars_i", DML_CKPT_I64, s->i, 8);
    add(es, "scalars_f", DML_CKPT_F64, s->f, 2);
    add(es, "rng", DML_CKPT_I64, r->rng.s, 4);
    if (r->augment_on)
        add(es, "rng_augment", DML_CKPT_I64, r->rng_aug.s, 4);
    add(es, "sampler", DML_CKPT_U8, sampler_state, dml_sampler_state_size(&r->sampler));
    if (sampler_unl_state)
        add(es, "sampler_unlabelled", DML_CKPT_U8, sampler_unl_state,
            dml_sampler_state_size(&r->sampler_unl));
    if (r->mem.size > 0) {
        add(es, "memory_x", DML_CKPT_F32, r->mem.x, (size_t)r->mem.size * r->mem.dim);
        add(es, "memory_y", DML_CKPT_U8, r->mem.y, (size_t)r->mem.size * sizeof *r->mem.y);
    }
    if (r->hn.k > 0) { /* the pools of the last mining: the next steps draw from them */
        add(es, "hard_negatives", DML_CKPT_U8, r->hn.cand,
            (size_t)r->hn.n_rows * r->hn.pool * sizeof *r->hn.cand);
        add(es, "hard_negatives_count", DML_CKPT_U8, r->hn.count,
            (size_t)r->hn.n_rows * sizeof *r->hn.count);
    }
    add(es, "pq_centroids", DML_CKPT_F32, r->pq.centroids, (size_t)r->pq.d * r->pq.ksub);
    add(es, "best_params", DML_CKPT_F32, r->best, r->n_floats);
    add(es, "loss_curve", DML_CKPT_F32, r->loss_curve, (size_t)r->total_steps);
    es->e[es->n - 1].any_length = 1; /* --resume may extend the run (train.steps) */
    add(es, "val_steps", DML_CKPT_I64, val_steps, DML_MAX_VALIDATIONS);
    add(es, "val_metrics", DML_CKPT_F64, val_metrics, VAL_FIELDS * DML_MAX_VALIDATIONS);
}

typedef struct buffers {
    uint8_t *sampler, *sampler_unl;
    int64_t *val_steps;
    double *val_metrics;
} buffers;

static int buffers_alloc(dml_run *r, buffers *b)
{
    memset(b, 0, sizeof *b);
    b->sampler = malloc(dml_sampler_state_size(&r->sampler));
    if (r->sampler_unl.n > 0)
        b->sampler_unl = malloc(dml_sampler_state_size(&r->sampler_unl));
    b->val_steps = calloc(DML_MAX_VALIDATIONS, sizeof *b->val_steps);
    b->val_metrics = calloc(VAL_FIELDS * DML_MAX_VALIDATIONS, sizeof *b->val_metrics);
    return b->sampler && (r->sampler_unl.n == 0 || b->sampler_unl) && b->val_steps && b->val_metrics;
}

static void buffers_free(buffers *b)
{
    free(b->sampler);
    free(b->sampler_unl);
    free(b->val_steps);
    free(b->val_metrics);
}

dml_status dml_run_checkpoint_save(dml_run *r, dml_error *err)
{
    buffers b;
    if (!buffers_alloc(r, &b)) {
        buffers_free(&b);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the checkpoint");
    }
    scalars s = {{r->step, r->pq_ready, r->evals_without_gain, r->n_val, r->optim.step, 0,
                  r->mem.n, r->mem.head},
                 {r->best_score, 0.0}};
    dml_sampler_state_save(&r->sampler, b.sampler);
    if (b.sampler_unl)
        dml_sampler_state_save(&r->sampler_unl, b.sampler_unl);
    for (int i = 0; i < r->n_val; i++) {
        b.val_steps[i] = r->val[i].step;
        double *m = b.val_metrics + VAL_FIELDS * i;
        m[0] = r->val[i].map_at_r;
        m[1] = r->val[i].precision_at_1;
        m[2] = r->val[i].spread.mean_std;
        m[3] = r->val[i].spread.relative_spread;
        m[4] = r->val[i].spread.effective_rank;
        m[5] = r->val[i].spread.pos_dist;
        m[6] = r->val[i].spread.neg_dist;
        m[7] = r->val[i].spread.rows;
    }
    static entries es; /* large; one run at a time */
    collect(r, &es, &s, b.sampler, b.sampler_unl, b.val_steps, b.val_metrics);
    char *record = dml_run_record(r); /* what --resume checks before reading the rest */
    if (!record) {
        buffers_free(&b);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the checkpoint");
    }
    add(&es, "run", DML_CKPT_U8, record, strlen(record));
    char path[1100];
    snprintf(path, sizeof path, "%s/checkpoint.h5", r->out_dir);
    dml_status st = dml_checkpoint_write(path, es.e, es.n, err);
    free(record);
    buffers_free(&b);
    return st;
}

/* The checkpoint's run is this one (up to the keys a resume may change); one without the
 * record (format_version 1) loads with a warning. */
static dml_status check_record(dml_run *r, const char *path, dml_error *err)
{
    char *saved;
    dml_status st = dml_checkpoint_read_text(path, "run", &saved, err);
    if (st == DML_OK && saved)
        st = dml_run_record_check(r, saved, path, err);
    else if (st == DML_OK)
        fprintf(r->log, "# %s: warning: an older checkpoint, without its run's config and data "
                        "hash: --resume cannot check that they are unchanged\n", path);
    free(saved);
    return st;
}

/* Every pool's count and rows are in range (what a step indexes with them). */
static int pools_fit(const dml_hard_negatives *h)
{
    for (int a = 0; a < h->n_rows; a++) {
        if (h->count[a] < 0 || h->count[a] > h->pool)
            return 0;
        const int32_t *pool = h->cand + (size_t)a * h->pool;
        for (int j = 0; j < h->count[a]; j++)
            if (pool[j] < 0 || pool[j] >= h->n_rows)
                return 0;
    }
    return 1;
}

dml_status dml_run_checkpoint_load(dml_run *r, dml_error *err)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/checkpoint.h5", r->out_dir);
    dml_status st = check_record(r, path, err);
    if (st != DML_OK)
        return st;
    buffers b;
    if (!buffers_alloc(r, &b)) {
        buffers_free(&b);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the checkpoint");
    }
    scalars s;
    static entries es;
    collect(r, &es, &s, b.sampler, b.sampler_unl, b.val_steps, b.val_metrics);
    st = dml_checkpoint_read(path, es.e, es.n, err);
    if (st == DML_OK)
        st = dml_sampler_state_load(&r->sampler, b.sampler, dml_sampler_state_size(&r->sampler), err);
    if (st == DML_OK && b.sampler_unl)
        st = dml_sampler_state_load(&r->sampler_unl, b.sampler_unl,
                                    dml_sampler_state_size(&r->sampler_unl), err);
    if (st == DML_OK) {
        r->step = s.i[0];
        r->pq_ready = (int)s.i[1];
        r->evals_without_gain = (int)s.i[2];
        r->n_val = (int)s.i[3];
        r->optim.step = s.i[4];
        r->best_score = s.f[0];
        r->mem.n = (int)s.i[6];
        r->mem.head = (int)s.i[7];
        if (r->step > r->total_steps)
            st = dml_error_set(err, DML_ERR_CONFIG, path, 0, 0,
                               "the checkpoint is at step %ld, past the %ld steps this config "
                               "trains (train.steps, train.epochs): --resume can only extend a "
                               "run", r->step, r->total_steps);
        else if (r->mem.n < 0 || r->mem.n > r->mem.size || r->mem.head < 0 ||
                 (r->mem.size > 0 && r->mem.head >= r->mem.size))
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "the cross-batch memory's position (%lld rows, slot %lld) does not "
                               "fit loss.memory.size %d", (long long)s.i[6], (long long)s.i[7],
                               r->mem.size);
        else if (!pools_fit(&r->hn))
            st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                               "the hard negatives' pools name rows outside the %d training rows, "
                               "or hold more than loss.hard_negatives.candidates (%d)",
                               r->hn.n_rows, r->hn.pool);
        for (int i = 0; i < r->n_val; i++) {
            r->val[i].step = b.val_steps[i];
            const double *m = b.val_metrics + VAL_FIELDS * i;
            r->val[i].map_at_r = m[0];
            r->val[i].precision_at_1 = m[1];
            r->val[i].spread = (dml_spread){(int)m[7], m[2], m[3], m[4], m[5], m[6]};
        }
    }
    buffers_free(&b);
    return st;
}
