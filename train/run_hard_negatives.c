/* loss.hard_negatives: negatives for mnr mined from the whole training set (as
 * sentence-transformers' mine_hard_negatives does once before training, here again every
 * `every` steps with the current model).
 *
 * A mining embeds every training row's anchor view with the anchor tower and its positive
 * view with the positive tower, and searches each anchor's nearest positives by cosine (the
 * exact blocked GEMM search of eval/search.c). Of the `candidates` nearest other than its own
 * positive, those scoring above (1 - margin) times the positive's cosine are dropped (a relative
 * margin: they may be unlabelled positives); the rest are the anchor's pool. Each step draws k of
 * the batch anchors' pools (topped up with random training rows when a pool is short) from a
 * generator seeded by the seed and the step, so the draws need no state; the pools themselves
 * are in the checkpoint, so a resume is exact. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

int dml_hard_negatives_filter(const int32_t *found, const float *cosine, int n, int self,
                              float positive, float margin, int pool, int32_t *out)
{
    int kept = 0;
    float bar = (1.0f - margin) * positive;
    for (int j = 0; j < n && kept < pool; j++)
        if (found[j] >= 0 && found[j] != self && cosine[j] <= bar)
            out[kept++] = found[j];
    return kept;
}

dml_status dml_hard_negatives_init(dml_run *r, dml_error *err)
{
    dml_hard_negatives *h = &r->hn;
    const dml_config *c = r->cfg;
    memset(h, 0, sizeof *h);
    if (c->loss.hard_negatives.k == 0)
        return DML_OK;
    if (r->streamed)
        return dml_config_error(c, "loss.hard_negatives.k", err,
                                "mined hard negatives need the training rows in memory, and they "
                                "are streamed (over data.memory_limit, or data.in_memory false): "
                                "set data.in_memory true, or this to 0");
    h->k = c->loss.hard_negatives.k;
    h->pool = c->loss.hard_negatives.candidates;
    h->n_rows = r->train.n;
    h->period = c->loss.hard_negatives.every > 0 ? c->loss.hard_negatives.every
                                                 : (int)r->steps_per_epoch;
    size_t e = (size_t)r->batch * h->k, w = (size_t)r->d_in_b;
    h->cand = calloc((size_t)h->n_rows * h->pool, sizeof *h->cand);
    h->count = calloc((size_t)h->n_rows, sizeof *h->count);
    h->rows = malloc((e + (size_t)c->loss.memory.size) * sizeof *h->rows);
    h->x = malloc(e * w * sizeof(float));
    if (c->train.chunk_size > 0) {
        h->gc_z = malloc(e * (size_t)c->model.dim * sizeof(float));
        h->gc_g = malloc(e * (size_t)c->model.dim * sizeof(float));
    }
    if (!h->cand || !h->count || !h->rows || !h->x ||
        (c->train.chunk_size > 0 && (!h->gc_z || !h->gc_g)))
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                             "out of memory for loss.hard_negatives (%d rows x %d candidates)",
                             h->n_rows, h->pool);
    return DML_OK;
}

void dml_hard_negatives_free(dml_hard_negatives *h)
{
    free(h->cand);
    free(h->count);
    free(h->rows);
    free(h->x);
    free(h->gc_z);
    free(h->gc_g);
    memset(h, 0, sizeof *h);
}

size_t dml_hard_negatives_arena_bytes(const dml_run *r)
{
    if (r->hn.k == 0)
        return 0;
    /* The extra rows through the positive tower and the head (each layer's output and its
     * activation, with gradients), their normalised embeddings, the wider score matrix (scores,
     * gradient, concatenation, the loss's softmax terms), and with loss.memory the mined rows
     * stacked over the memory's. */
    const dml_mlp *m = r->cfg->model.type == DML_NET_DUAL ? &r->net.encoder_b : &r->net.encoder;
    size_t width = (size_t)r->d_in_b + (size_t)r->d_in, b = (size_t)r->batch;
    for (int i = 0; i < m->n_layers; i++)
        width += (size_t)m->layers[i].b.cols;
    for (int i = 0; i < r->head.n_layers; i++)
        width += (size_t)r->head.layers[i].b.cols;
    size_t e = b * (size_t)r->hn.k;
    size_t stacked = (e + (size_t)r->cfg->loss.memory.size) * (size_t)r->dim_loss;
    return sizeof(float) * (e * (4 * width + 4 * (size_t)r->dim_loss) + 8 * b * (b + e) +
                            2 * stacked) +
           (1u << 16);
}

typedef struct mine_ctx {
    dml_searcher *s;
    dml_hard_negatives *h;
    const int32_t *rows; /* the training rows: search results index them */
    const float *za, *zb; /* [n, dim] */
    int dim, i0, pool;
    float margin;
    int32_t *found, *kept; /* [threads, pool + 1] */
    float *score;
} mine_ctx;

static double cosine(const float *a, const float *b, int d)
{
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (int t = 0; t < d; t++) {
        ab += (double)a[t] * b[t];
        aa += (double)a[t] * a[t];
        bb += (double)b[t] * b[t];
    }
    return aa > 0.0 && bb > 0.0 ? ab / sqrt(aa * bb) : 0.0;
}

/* Queries [begin, end) of the scored block: each anchor's pool. */
static void mine_range(void *arg, int begin, int end, int thread)
{
    mine_ctx *c = arg;
    size_t w = (size_t)c->pool + 1;
    int32_t *found = c->found + thread * w, *kept = c->kept + thread * w;
    float *score = c->score + thread * w;
    for (int i = begin; i < end; i++) {
        int q = c->i0 + i, n = dml_searcher_topk(c->s, i, -1, (int)w, thread, found, score);
        for (int j = 0; j < n; j++)
            score[j] = 1.0f - score[j]; /* the searcher's 1 - cos, back to the cosine */
        float positive = (float)cosine(c->za + (size_t)q * c->dim, c->zb + (size_t)q * c->dim,
                                       c->dim);
        int got = dml_hard_negatives_filter(found, score, n, q, positive, c->margin, c->pool,
                                            kept);
        int32_t row = c->rows[q];
        for (int j = 0; j < got; j++)
            c->h->cand[(size_t)row * c->pool + j] = c->rows[kept[j]];
        c->h->count[row] = got;
    }
}

static dml_status mine(dml_run *r, dml_error *err)
{
    dml_hard_negatives *h = &r->hn;
    const int32_t *rows = r->split.train;
    int n = r->split.n_train, dim = r->cfg->model.dim;
    float *za = dml_run_embed_rows(r, &r->train, rows, n, 0);
    float *zb = dml_run_embed_rows(r, &r->train, rows, n, 1);
    dml_searcher s;
    dml_status st = za && zb ? dml_searcher_init(&s, zb, n, dim, DML_EVAL_COSINE, 0,
                                                 r->cfg->train.threads, h->pool + 1, err)
                             : dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                                             "out of memory to mine hard negatives");
    if (st != DML_OK) {
        free(za);
        free(zb);
        return st;
    }
    size_t scratch = (size_t)s.threads * (h->pool + 1);
    mine_ctx c = {&s, h, rows, za, zb, dim, 0, h->pool,
                  r->cfg->loss.hard_negatives.relative_margin,
                  malloc(scratch * sizeof(int32_t)), malloc(scratch * sizeof(int32_t)),
                  malloc(scratch * sizeof(float))};
    if (!c.found || !c.kept || !c.score)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory to mine hard negatives");
    for (int i0 = 0; st == DML_OK && i0 < n; i0 += s.block) {
        int nb = n - i0 < s.block ? n - i0 : s.block;
        dml_searcher_score(&s, za + (size_t)i0 * dim, nb);
        c.i0 = i0;
        dml_parallel_for(s.threads, nb, mine_range, &c);
    }
    free(c.found);
    free(c.kept);
    free(c.score);
    dml_searcher_free(&s);
    free(za);
    free(zb);
    return st;
}

dml_status dml_hard_negatives_mine(dml_run *r, dml_error *err)
{
    dml_hard_negatives *h = &r->hn;
    if (h->k == 0 || r->step == 0 || r->step % h->period != 0)
        return DML_OK;
    /* Under mpirun rank 0 mines and sends the pools: every rank then draws the same negatives,
     * whatever rounding its own search would have had. */
    dml_status st = dml_run_is_root(r) ? mine(r, err) : DML_OK;
    st = dml_run_comm_agree(r, st, h->cand, (size_t)h->n_rows * h->pool * sizeof *h->cand, err);
    return dml_run_comm_agree(r, st, h->count, (size_t)h->n_rows * sizeof *h->count, err);
}

int dml_hard_negatives_pick(dml_run *r, int b)
{
    dml_hard_negatives *h = &r->hn;
    if (h->k == 0 || r->step < h->period) /* not mined yet: in-batch negatives alone */
        return 0;
    dml_rng g;
    dml_rng_seed(&g, (uint64_t)r->cfg->seed ^ ((uint64_t)r->step * 0x9e3779b97f4a7c15ull) ^
                         0x6861726400ull); /* "hard" */
    int32_t pick[128];
    for (int i = 0; i < b; i++) {
        int32_t a = r->idx[i], n = h->count[a], *out = h->rows + (size_t)i * h->k;
        memcpy(pick, h->cand + (size_t)a * h->pool, (size_t)n * sizeof *pick);
        int j = 0;
        for (; j < h->k && j < n; j++) { /* k distinct of the pool: a partial Fisher-Yates */
            int t = j + (int)dml_rng_below(&g, (uint32_t)(n - j));
            int32_t v = pick[t];
            pick[t] = pick[j];
            out[j] = v;
        }
        for (; j < h->k; j++) /* a random training row; the loss drops it if it is a's own */
            out[j] = r->split.train[dml_rng_below(&g, (uint32_t)r->split.n_train)];
    }
    size_t e = (size_t)b * h->k;
    for (int j = 0; j < r->mem.size; j++) /* the memory's rows, after the mined ones */
        h->rows[e + j] = -1;
    if (r->train.x_b)
        dml_dataset_gather_b(h->x, &r->train, h->rows, (int)e);
    else
        dml_dataset_gather(h->x, &r->train, h->rows, (int)e);
    return (int)e;
}
