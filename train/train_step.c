/* One training step's loss, composed from the config: a batch from the sampler, the encoder
 * forward on the tape, the metric loss, and the optional reconstruction and quantization
 * terms. No allocation here: batch buffers were sized at set-up, tensors live in the arena.
 *
 * Over several ranks (r->comm, docs/scale.md) every rank draws the whole global batch from the
 * same seeded sampler and gathers all of it, augments its own rows [lo, lo + n_local) (with the
 * draws one process gives those rows) and runs its encoder on them only. Every loss term sees
 * the global batch: the embeddings (and the reconstruction's outputs and targets) are gathered
 * from all ranks by a tape node, the loss over all of them is computed on every rank, and
 * backward sends each rank only its own rows' gradient. A loss whose row honours sharding
 * (DML_LOSS_WITH_SHARDING) is computed instead over this rank's anchors against every gathered
 * row, its sums and counts summed over the ranks, and the gathered rows' gradient summed back
 * to their owners. The trainer sums the parameter gradients over the ranks, which is then the
 * one-process gradient. */
#include <stdlib.h>
#include <string.h>

#include "train/loss_data.h"
#include "train/run.h"

/* x's rows of every rank, in rank order: the global batch (x itself in one process). */
static dml_tensor *global(const dml_run *r, dml_graph *g, dml_tensor *x)
{
    return r->comm ? dml_comm_gather(g, r->comm, x) : x;
}

/* Whether the metric loss is computed over this rank's anchors only (docs/scale.md, "The sharded
 * loss"): under mpirun, for the rows that honour it. The joint quantization term reads the
 * gathered embeddings whole on every rank, which the summed gather would count N times: with
 * it, the loss stays whole. */
static int sharded(const dml_run *r)
{
    const dml_config *c = r->cfg;
    return r->comm && c->loss.row->build && (c->loss.row->combines & DML_LOSS_WITH_SHARDING) &&
           !(c->loss.quantization.weight > 0.0f);
}

/* x's rows of every rank for the metric loss: gathered as global() does, or, when the loss is
 * sharded, by the gather whose backward sums each rank's part of the gradient. */
static dml_tensor *global_for_loss(const dml_run *r, dml_graph *g, dml_tensor *x)
{
    return sharded(r) ? dml_comm_gather_summed(g, r->comm, x) : global(r, g, x);
}

/* The loss's scalar sums over the ranks (dml_loss_shard.sum), in double, rank order. */
static void sum_over_ranks(void *ctx, double *v, int n)
{
    const dml_comm *comm = ((const dml_run *)ctx)->comm;
    comm->allreduce_sum_f64(comm->ctx, v, (size_t)n);
}

/* This rank's share of a global batch of b rows (b divides by the ranks: train/run_comm.c
 * checks full batches and an epoch's kept last one). */
static void shard(dml_run *r, int b)
{
    r->n_local = r->comm ? b / r->comm->size : b;
    r->lo = r->comm ? r->comm->rank * r->n_local : 0;
}

typedef struct {
    const dml_run *r;
    uint64_t seed;
    float *x; /* the batch's row `first` */
    int first;
} augment_job;

/* Each row's generator is seeded from the batch's draw and the row's index, so rows can be
 * augmented on any thread, each with its own row of scratch. */
static void augment_part(void *ctx, int r0, int r1)
{
    const augment_job *job = ctx;
    size_t d = (size_t)job->r->d_in;
    dml_augment_rows(&job->r->cfg->data.augment, job->seed, job->first + r0,
                     job->x + (size_t)r0 * d, r1 - r0, (int)d,
                     job->r->aug_scratch + (size_t)r0 * d);
}

static void augment_rows(dml_run *r, uint64_t seed, float *x, int first)
{
    augment_job job = {r, seed, x + (size_t)first * r->d_in, first};
    dml_pool_run_rows(augment_part, &job, r->n_local, r->d_in);
}

/* data.augment on this rank's rows [lo, lo + n_local) of a gathered batch x (one process: all of
 * them), and with pairs (x then [2 b, d]: anchors, positives) on its positives too. The batch's
 * one draw seeds every row's generator, so a rank's rows get what one process gives them. */
static void augment(dml_run *r, float *x, int b, int pairs)
{
    if (!r->augment_on)
        return;
    uint64_t seed = dml_rng_u64(&r->rng_aug);
    augment_rows(r, seed, x, r->lo);
    if (pairs)
        augment_rows(r, seed, x, b + r->lo);
}

typedef struct {
    const dml_dataset *ds;
    float *out;
    const int32_t *idx;
} gather_job;

/* Rows held in memory are copied on every thread: the copies wait on memory, not arithmetic. */
static void gather_part(void *ctx, int first, int end)
{
    const gather_job *job = ctx;
    dml_dataset_gather(job->out + (size_t)first * job->ds->d, job->ds, job->idx + first,
                       end - first);
}

/* This rank's rows [lo, lo + n_local) of a global batch's dataset rows idx into their places
 * in out [b, d_in] (one process: all of them): the others are read by the other ranks. */
static void gather_own(dml_run *r, float *out, const int32_t *idx)
{
    dml_run_stream_plan(r); /* rows read in blocks: a new shuffle's share for the cache */
    gather_job job = {&r->train, out + (size_t)r->lo * r->d_in, idx + r->lo};
    if (r->train.x)
        dml_pool_run_rows(gather_part, &job, r->n_local, r->d_in);
    else /* the row cache reads its file on one thread */
        gather_part(&job, 0, r->n_local);
}

/* A pair batch's inputs, this rank's rows gathered and augmented: the anchors in r->xa [b,
 * d_in]; the positives after them in r->xa when one encoder embeds both (*one_encoder = 1),
 * else in r->xb. Returns b. Augment pairs are a row twice, each copy augmented on its own. */
static int pair_inputs(dml_run *r, int *one_encoder)
{
    const dml_config *c = r->cfg;
    const dml_dataset *ds = &r->train;
    int b = r->batch;
    if (c->data.pairs == DML_PAIRS_AUGMENT) { /* random rows: an epoch may end short */
        b = dml_sampler_next(&r->sampler, r->idx);
        memcpy(r->pos, r->idx, (size_t)b * sizeof *r->pos);
    } else {
        dml_sampler_next_pairs(&r->sampler, r->idx, r->pos);
    }
    shard(r, b);
    gather_own(r, r->xa, r->idx);
    if (ds->y)
        dml_dataset_gather_labels(r->labels, ds, r->idx, b);
    *one_encoder = !ds->x_b && c->model.type != DML_NET_DUAL;
    if (*one_encoder) {
        gather_own(r, r->xa + (size_t)b * r->d_in, r->pos);
        augment(r, r->xa, b, 1);
        return b;
    }
    if (ds->x_b) /* two views: file pairs, or the halves of each row */
        dml_dataset_gather_b(r->xb + (size_t)r->lo * r->d_in_b, ds, r->pos + r->lo, r->n_local);
    else /* two towers over one view */
        gather_own(r, r->xb, r->pos);
    augment(r, r->xa, b, 0);
    if (r->d_in_b == r->d_in)
        augment(r, r->xb, b, 0);
    return b;
}

/* model.head on a tower's embeddings, this rank's rows (before any gather, so that each rank
 * backpropagates its own rows through the head); z itself when there is none. */
static dml_tensor *project(const dml_run *r, dml_graph *g, dml_tensor *z)
{
    return r->head.n_layers > 0 ? dml_mlp_forward(g, &r->head, z) : z;
}

static const dml_mlp *positive_tower(const dml_run *r)
{
    return r->cfg->model.type == DML_NET_DUAL ? &r->net.encoder_b : &r->net.encoder;
}

/* The anchor and positive embeddings of a pair batch (through model.head when there is one). */
static void pair_batch(dml_run *r, dml_graph *g, dml_tensor **za, dml_tensor **zp)
{
    int one_encoder, b = pair_inputs(r, &one_encoder);
    if (one_encoder) {
        /* same_class through one encoder: anchors and positives as one [2B, d] batch (one GEMM
         * per layer, twice as tall), then row views whose gradients land in the batch's own */
        float *x = r->xa;
        if (r->comm) { /* this rank's anchors, then its positives (over later ranks' anchors,
                        * not needed here): [2 n_local, d] */
            size_t d = (size_t)r->d_in, n = (size_t)r->n_local, lo = (size_t)r->lo;
            x = r->xa + lo * d;
            memmove(x + n * d, r->xa + ((size_t)b + lo) * d, n * d * sizeof(float));
            b = r->n_local;
        }
        dml_tensor *z = project(r, g, dml_mlp_forward(g, &r->net.encoder,
                                                      dml_leaf(g, x, NULL, 2 * b, r->d_in)));
        if (!z) {
            *za = *zp = NULL;
            return;
        }
        size_t half = (size_t)b * z->cols;
        *za = global_for_loss(r, g, dml_leaf(g, z->data, z->grad, b, z->cols));
        *zp = global_for_loss(r, g, dml_leaf(g, z->data + half, z->grad + half, b, z->cols));
        return;
    }
    float *xa = r->xa + (size_t)r->lo * r->d_in, *xb = r->xb + (size_t)r->lo * r->d_in_b;
    b = r->n_local;
    *za = global_for_loss(r, g, project(r, g, dml_mlp_forward(g, &r->net.encoder,
                                                              dml_leaf(g, xa, NULL, b, r->d_in))));
    *zp = global_for_loss(r, g, project(r, g, dml_mlp_forward(g, positive_tower(r),
                                                              dml_leaf(g, xb, NULL, b,
                                                                       r->d_in_b))));
}

static dml_tensor *reconstruction(dml_run *r, dml_graph *g, dml_tensor *h, dml_tensor *x)
{
    /* A mean over the global batch's elements, like every other term. */
    dml_tensor *out = global(r, g, dml_mlp_forward(g, &r->net.decoder, h));
    x = global(r, g, x);
    return r->cfg->loss.reconstruction == DML_RECON_BCE ? dml_loss_bce_logits(g, out, x)
                                                        : dml_mse(g, out, x);
}

/* loss.memory's references for this step (NULL: none yet, or before start_step); the batch's
 * embeddings z[b] are held for the push after backward either way. */
static dml_tensor *memory_refs(dml_run *r, dml_graph *g, const dml_tensor *z)
{
    if (r->mem.size == 0 || !z)
        return NULL;
    dml_tensor *refs = r->step >= r->cfg->loss.memory.start_step ? dml_memory_refs(&r->mem, g)
                                                                  : NULL;
    dml_memory_hold(&r->mem, z->data, r->train.y ? r->labels : NULL, z->rows);
    return refs;
}

/* The configured loss through its row's build over the global batch z (the anchors of a pair
 * loss, zp its positives; NULL otherwise), with the cross-batch memory's rows as references
 * (for a pair loss, its earlier positives), and before them the mined hard negatives `hard`
 * (NULL: none) as more candidates for every anchor. */
static dml_tensor *metric_loss(dml_run *r, dml_graph *g, dml_tensor *z, dml_tensor *zp,
                               dml_tensor *hard)
{
    const dml_config *c = r->cfg;
    dml_tensor *refs = memory_refs(r, g, zp ? zp : z);
    dml_loss_input in = {
        .g = g,
        .z = z,
        .zp = zp,
        .refs = refs,
        /* a pair loss on halves, file or augment pairs reads no labels, even where the rows
         * have some */
        .labels = r->train.y && dml_loss_reads_labels(c) ? r->labels : NULL,
        .ref_labels = refs ? r->mem.y : NULL,
        .p = c->loss.p,
        .class_params = dml_run_class_params_leaf(r, g), /* NULL unless the row learns some */
        .n_classes = r->train.n_classes,
    };
    if (hard) { /* rows as labels: a mined negative that is an anchor's own positive is dropped
                 * (hn.rows: the mined rows, then -1 for the memory's, dropped never) */
        in.refs = refs ? dml_concat_rows(g, hard, refs) : hard;
        in.labels = r->pos;
        in.ref_labels = r->hn.rows;
    }
    if (sharded(r)) { /* held in r: the loss's backward reads it too */
        r->loss_shard = (dml_loss_shard){r->lo, r->n_local, sum_over_ranks, r};
        in.shard = &r->loss_shard;
    }
    size_t before = g->arena.used; /* what the loss's tensors take, for the log */
    dml_tensor *loss = c->loss.row->build(&in);
    if (g->arena.used - before > r->loss_bytes)
        r->loss_bytes = g->arena.used - before;
    return loss;
}

/* loss.hard_negatives: the batch anchors' mined negatives through the positive tower (and the
 * head) on the tape, this rank's share then gathered; NULL before the first mining. */
static dml_tensor *hard_negatives(dml_run *r, dml_graph *g, int b)
{
    int e = dml_hard_negatives_pick(r, b), k = r->hn.k;
    if (e == 0)
        return NULL;
    float *x = r->hn.x + (size_t)r->lo * k * r->d_in_b;
    return global_for_loss(r, g, project(r, g, dml_mlp_forward(g, positive_tower(r),
                                                               dml_leaf(g, x, NULL, r->n_local * k,
                                                                        r->d_in_b))));
}

dml_tensor *dml_run_loss(dml_run *r, dml_graph *g)
{
    const dml_config *c = r->cfg;
    const dml_dataset *ds = &r->train;
    int b = r->batch;
    dml_tensor *z = NULL, *loss = NULL;
    if (dml_loss_uses_pairs(c)) {
        dml_tensor *zp;
        pair_batch(r, g, &z, &zp);
        loss = metric_loss(r, g, z, zp, r->hn.k > 0 && z ? hard_negatives(r, g, z->rows) : NULL);
    } else {
        b = dml_sampler_next(&r->sampler, r->idx); /* fewer than B: an epoch's kept last batch */
        shard(r, b);
        gather_own(r, r->xa, r->idx);
        augment(r, r->xa, b, 0);
        if (ds->y)
            dml_dataset_gather_labels(r->labels, ds, r->idx, b);
        dml_tensor *x = dml_leaf(g, r->xa + (size_t)r->lo * r->d_in, NULL, r->n_local, r->d_in);
        /* The decoder reads the bottleneck before the embedding head, so an l2 or tanh head
         * does not squeeze what the autoencoder can reconstruct. */
        dml_tensor *h = dml_mlp_body(g, &r->net.encoder, x);
        z = global_for_loss(r, g, project(r, g, dml_mlp_head(g, &r->net.encoder, h)));
        /* reconstruction, the one row without a build, is the decoder's term */
        loss = c->loss.row->build ? metric_loss(r, g, z, NULL, NULL) : reconstruction(r, g, h, x);
    }
    /* Fine-tuning recipe: keep reconstructing the rows whose labels were set aside. */
    if (r->sampler_unl.n > 0) { /* set up only when unlabelled rows fill a batch */
        int bu = dml_sampler_next(&r->sampler_unl, r->idx_unl);
        shard(r, bu);
        /* no augmentation draws here: this rank's rows alone keep the one-process stream */
        dml_run_stream_plan(r);
        dml_dataset_gather(r->xu, ds, r->idx_unl + r->lo, r->n_local);
        dml_tensor *u = dml_leaf(g, r->xu, NULL, r->n_local, r->d_in);
        dml_tensor *rec = reconstruction(r, g, dml_mlp_body(g, &r->net.encoder, u), u);
        loss = dml_add(g, loss, dml_scale(g, rec, c->loss.reconstruction_weight));
    }
    if (c->loss.quantization.weight > 0.0f && r->pq_ready)
        loss = dml_add(g, loss, dml_scale(g, dml_loss_quantization(g, z, &r->pq),
                                          c->loss.quantization.weight));
    return loss;
}

/* ---- GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
 * Limited Setup"): the batch's embeddings in chunks without the tape, the loss and its gradient
 * with respect to the embeddings on a small tape of its own, then each chunk again on the tape,
 * backpropagated from its slice of that gradient. The parameter gradients add up to the one-shot
 * batch's (the chain rule splits over the rows); the tape never holds more than one chunk's
 * activations. The inputs were augmented once, in place, so both passes see the same rows. */

/* Each chunk of x[n, d] through m on the tape, its output gradient set to dz's rows, and
 * backpropagated into the parameters. */
static dml_status backprop_chunks(dml_run *r, const dml_mlp *m, float *x, int n, int d,
                                  const float *dz)
{
    dml_graph *g = &r->graph;
    int chunk = r->cfg->train.chunk_size, dim = dml_mlp_dim_out(m);
    for (int i0 = 0; i0 < n; i0 += chunk) {
        int rows = n - i0 < chunk ? n - i0 : chunk;
        dml_graph_reset(g);
        dml_tensor *z = dml_mlp_forward(g, m, dml_leaf(g, x + (size_t)i0 * d, NULL, rows, d));
        if (!z)
            return g->status != DML_OK ? g->status : DML_ERR_NOMEM;
        memcpy(z->grad, dz + (size_t)i0 * dim, (size_t)rows * dim * sizeof(float));
        dml_status st = dml_backward_from(g, z);
        if (st != DML_OK)
            return st;
    }
    return DML_OK;
}

dml_status dml_run_gradcache_step(dml_run *r, float *loss_value)
{
    /* one process (train/run_comm.c): pair_inputs' shard is the whole batch */
    int one_encoder, b = pair_inputs(r, &one_encoder), chunk = r->cfg->train.chunk_size;
    const dml_mlp *tower_b = positive_tower(r);
    float *xb = one_encoder ? r->xa + (size_t)b * r->d_in : r->xb;
    int d_b = one_encoder ? r->d_in : r->d_in_b;
    size_t n_z = (size_t)b * r->cfg->model.dim;
    dml_run_embed_blocks(&r->graph, &r->net.encoder, r->xa, b, chunk, r->gc.za);
    dml_run_embed_blocks(&r->graph, tower_b, xb, b, chunk, r->gc.zp);
    int e = dml_hard_negatives_pick(r, b); /* mined negatives: a third set of chunks */
    if (e > 0) {
        dml_run_embed_blocks(&r->graph, tower_b, r->hn.x, e, chunk, r->hn.gc_z);
        memset(r->hn.gc_g, 0, (size_t)e * r->cfg->model.dim * sizeof(float));
    }
    memset(r->gc.ga, 0, n_z * sizeof(float));
    memset(r->gc.gp, 0, n_z * sizeof(float));
    dml_graph *g = &r->graph;
    dml_tensor *za = dml_leaf(g, r->gc.za, r->gc.ga, b, r->cfg->model.dim);
    dml_tensor *zp = dml_leaf(g, r->gc.zp, r->gc.gp, b, r->cfg->model.dim);
    dml_tensor *hard = e > 0 ? dml_leaf(g, r->hn.gc_z, r->hn.gc_g, e, r->cfg->model.dim) : NULL;
    dml_tensor *loss = metric_loss(r, g, za, zp, hard);
    dml_status st = dml_backward(g, loss);
    if (st != DML_OK)
        return st;
    *loss_value = loss->data[0];
    if ((st = backprop_chunks(r, &r->net.encoder, r->xa, b, r->d_in, r->gc.ga)) == DML_OK)
        st = backprop_chunks(r, tower_b, xb, b, d_b, r->gc.gp);
    if (st == DML_OK && e > 0)
        st = backprop_chunks(r, tower_b, r->hn.x, e, r->d_in_b, r->hn.gc_g);
    return st;
}

void dml_run_embed_blocks(dml_graph *g, const dml_mlp *m, const float *x, int n, int block,
                          float *out)
{
    int d_in = dml_mlp_dim_in(m), dim = dml_mlp_dim_out(m);
    for (int i0 = 0; i0 < n; i0 += block) {
        int rows = n - i0 < block ? n - i0 : block;
        dml_graph_reset(g);
        dml_tensor *z = dml_mlp_forward(g, m, dml_leaf(g, (float *)x + (size_t)i0 * d_in, NULL,
                                                       rows, d_in));
        DML_ASSERT(z);
        memcpy(out + (size_t)i0 * dim, z->data, (size_t)rows * dim * sizeof(float));
    }
    dml_graph_reset(g);
}

void dml_run_embed(dml_graph *g, const dml_mlp *m, const float *x, int n, float *out)
{
    dml_run_embed_blocks(g, m, x, n, DML_RUN_EMBED_BLOCK, out);
}

float *dml_run_embed_rows(dml_run *r, const dml_dataset *ds, const int32_t *rows, int n, int second)
{
    const dml_mlp *m = second && r->cfg->model.type == DML_NET_DUAL ? &r->net.encoder_b
                                                                    : &r->net.encoder;
    int view_b = second && ds->x_b, width = view_b ? ds->d_b : ds->d;
    float *z = malloc((size_t)(n ? n : 1) * dml_mlp_dim_out(m) * sizeof(float));
    float *x = rows ? malloc((size_t)(n ? n : 1) * width * sizeof(float)) : NULL;
    if (!z || (rows && !x)) {
        free(z);
        free(x);
        return NULL;
    }
    if (rows && view_b)
        dml_dataset_gather_b(x, ds, rows, n);
    else if (rows)
        dml_dataset_gather(x, ds, rows, n);
    dml_run_embed(&r->graph, m, rows ? x : view_b ? ds->x_b : ds->x, n, z);
    free(x);
    return z;
}
