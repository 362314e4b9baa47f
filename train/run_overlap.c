/* The gradient allreduce overlapped with backward (train.allreduce_bucket_mb, docs/scale.md):
 * the parameters, in reverse order (the last layer's gradients are final first), are grouped
 * into buckets of about the configured size; backward's hook (nn/graph.c) starts a bucket's
 * nonblocking sum as soon as the last tape node touching its parameters has run, and lets the
 * open sums progress after every node. The last bucket holds the first layer, final only when
 * backward ends, and carries the per-rank flags; dml_run_comm_reduce then waits for them all.
 * Each element is summed over the ranks as the blocking call sums it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

dml_status dml_run_overlap_open(dml_run *r, dml_error *err)
{
    dml_run_overlap *o = &r->ovl;
    float mb = r->cfg->train.allreduce_bucket_mb;
    if (mb <= 0.0f || !r->comm->iallreduce_sum)
        return DML_OK;
    o->bound = malloc((size_t)(r->n_params + 1) * sizeof *o->bound);
    o->off = malloc((size_t)(r->n_params + 1) * sizeof *o->off);
    o->ready = malloc((size_t)r->n_params * sizeof *o->ready);
    o->first_use = malloc((size_t)r->n_params * sizeof *o->first_use);
    if (!o->bound || !o->off || !o->ready || !o->first_use)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the buckets");
    double limit = (double)mb * (1 << 20) / sizeof(float); /* floats */
    size_t in_bucket = 0, at = 0;
    o->n_buckets = 0;
    o->bound[0] = r->n_params;
    o->off[0] = 0;
    for (int p = r->n_params - 1; p >= 0; p--) {
        in_bucket += r->params[p].n;
        at += r->params[p].n;
        if (p == 0 || (double)in_bucket >= limit) {
            o->n_buckets++;
            o->bound[o->n_buckets] = p;
            o->off[o->n_buckets] = at;
            in_bucket = 0;
        }
    }
    return DML_OK;
}

void dml_run_overlap_free(dml_run_overlap *o)
{
    free(o->bound);
    free(o->off);
    free(o->ready);
    free(o->first_use);
    memset(o, 0, sizeof *o);
}

/* Bucket k's gradients into its part of the flat buffer, then its sum started; the last
 * bucket takes the flags along. */
static void start(dml_run *r, int k)
{
    dml_run_overlap *o = &r->ovl;
    const dml_comm *c = r->comm;
    float *q = r->flat + o->off[k];
    for (int p = o->bound[k] - 1; p >= o->bound[k + 1]; p--) {
        const float *g = r->params[p].grad;
        size_t n = r->params[p].n;
        /* rank 0's class-row gradient alone enters the sum (train/run_class_params.c) */
        if (r->cls.data && p == r->cls.param && c->rank != 0) {
            memset(q, 0, n * sizeof *q);
        } else {
            for (size_t i = 0; i < n; i++) {
                o->ss += (double)g[i] * g[i];
                q[i] = g[i];
            }
        }
        q += n;
    }
    size_t n = o->off[k + 1] - o->off[k];
    if (k == o->n_buckets - 1)
        n += dml_run_comm_flags(r, isfinite((float)sqrt(o->ss)) != 0);
    c->iallreduce_sum(c->ctx, r->flat + o->off[k], n);
}

static void after_backward(void *ctx, int i)
{
    dml_run *r = ctx;
    dml_run_overlap *o = &r->ovl;
    while (o->next < o->n_buckets - 1 && o->ready[o->next] >= i)
        start(r, o->next++);
    if (o->next) /* cheap: a test of the open requests */
        r->comm->progress(r->comm->ctx);
}

void dml_run_overlap_begin(dml_run *r)
{
    dml_run_overlap *o = &r->ovl;
    dml_graph *g = &r->graph;
    if (!o->n_buckets)
        return;
    /* a parameter's gradient is final once the first tape node reading it has run backward */
    for (int p = 0; p < r->n_params; p++)
        o->first_use[p] = g->n_tape;
    for (int i = g->n_tape - 1; i >= 0; i--)
        for (int s = 0; s < DML_MAX_SRC; s++) {
            const dml_tensor *t = g->tape[i]->src[s];
            for (int p = 0; t && t->grad && p < r->n_params; p++)
                if (t->grad == r->params[p].grad)
                    o->first_use[p] = i;
        }
    for (int k = 0; k < o->n_buckets; k++) {
        o->ready[k] = g->n_tape;
        for (int p = o->bound[k + 1]; p < o->bound[k]; p++)
            o->ready[k] = o->first_use[p] < o->ready[k] ? o->first_use[p] : o->ready[k];
    }
    o->next = 0;
    o->ss = 0.0;
    g->after_backward = after_backward;
    g->after_backward_ctx = r;
}

void dml_run_overlap_finish(dml_run *r)
{
    dml_run_overlap *o = &r->ovl;
    r->graph.after_backward = NULL;
    while (o->next < o->n_buckets)
        start(r, o->next++);
    r->comm->wait_all(r->comm->ctx);
    for (int k = 0; k < o->n_buckets; k++) {
        const float *q = r->flat + o->off[k];
        for (int p = o->bound[k] - 1; p >= o->bound[k + 1]; p--) {
            memcpy(r->params[p].grad, q, r->params[p].n * sizeof *q);
            q += r->params[p].n;
        }
    }
}
