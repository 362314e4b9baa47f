/* Triplet loss over the distance matrix of the batch's anchors against its references (the
 * batch itself, then a cross-batch memory's rows), with its miners. Batch-all walks, per anchor,
 * its positives x its negatives (no B x B x B mask): the anchor's distances to its negatives are
 * gathered into one contiguous row first, so the loop over negatives is plain arithmetic the
 * compiler vectorises, and batch-all costs little more than batch-hard. */
#include <math.h>
#include <string.h>

#include "losses/loss_table.h"

typedef struct triplet_ctx {
    const int32_t *labels;  /* [B]; NULL with an explicit list */
    const int32_t *refs;    /* [N] the references' labels: labels, then the memory's */
    dml_miner miner;        /* DML_MINER_ALL walks every triplet (with labels); else the list */
    int soft;
    dml_reduction reduction;
    int n;                  /* triplets in the list */
    const int32_t *a, *p, *neg; /* [n] each: the list (mined into arena memory, or given) */
    int32_t *pos_idx, *neg_idx; /* [N] scratch for batch-all: one anchor's positives, negatives */
    float *neg_d, *neg_w;       /* [N] scratch: d(a, negative), summed slopes per negative */
    float denom;            /* what forward divided by (0: the loss is 0) */
    const dml_loss_shard *shard; /* NULL: row a of d is the batch's anchor a */
    int lo;                 /* the batch's row of d's first row (shard->lo, else 0) */
} triplet_ctx;

static float hinge(float x, int soft)
{
    if (soft)
        return x > 20.0f ? x : log1pf(expf(x));
    return x > 0.0f ? x : 0.0f;
}

/* d(hinge)/dx */
static float hinge_slope(float x, int soft)
{
    if (soft)
        return 1.0f / (1.0f + expf(-x));
    return x > 0.0f ? 1.0f : 0.0f;
}

/* ---- a list of triplets (mined, or explicit) ---- */

/* Calls visit(acc, a, p, n, x) for every triplet of the list; x = d(a,p) - d(a,n) + margin. */
typedef void (*visit_fn)(void *acc, int a, int p, int n, float x);

static void for_each_listed(const dml_tensor *out, visit_fn visit, void *acc)
{
    const triplet_ctx *c = out->cache;
    const float *d = out->src[0]->data;
    size_t n = (size_t)out->src[0]->cols;
    float margin = out->fparam[0];
    for (int t = 0; t < c->n; t++)
        visit(acc, c->a[t], c->p[t], c->neg[t],
              d[c->a[t] * n + c->p[t]] - d[c->a[t] * n + c->neg[t]] + margin);
}

typedef struct forward_acc {
    double sum;
    long count, nonzero;
    int soft;
} forward_acc;

static void forward_visit(void *p, int a, int pos, int n, float x)
{
    (void)a, (void)pos, (void)n;
    forward_acc *acc = p;
    float l = hinge(x, acc->soft);
    acc->sum += l;
    acc->count++;
    acc->nonzero += l > 0.0f;
}

typedef struct backward_acc {
    float *dd;
    int n, soft; /* n: the row stride, the references */
    float g;
} backward_acc;

static void backward_visit(void *p, int a, int pos, int n, float x)
{
    backward_acc *acc = p;
    float w = acc->g * hinge_slope(x, acc->soft);
    acc->dd[(size_t)a * acc->n + pos] += w;
    acc->dd[(size_t)a * acc->n + n] -= w;
}

/* ---- batch-all ---- */

enum { LANES = 8 }; /* partial sums: a fixed order, whatever the vector width */

/* Anchor a's positives and negatives among the n references; c->neg_d[k] = d(a, negative k). */
static void split_anchor(const triplet_ctx *c, const float *row, int n, int a, int *np, int *nn)
{
    *np = *nn = 0;
    for (int j = 0; j < n; j++) {
        if (c->refs[j] != c->labels[a]) {
            c->neg_d[*nn] = row[j];
            c->neg_idx[(*nn)++] = j;
        } else if (j != a) {
            c->pos_idx[(*np)++] = j;
        }
    }
}

/* Sum of hinge(base - neg_d[k]) over the negatives; *active counts the nonzero ones. The
 * (usual) hard hinge runs in LANES partial sums so the loop vectorises. */
static float hinge_sum(const float *restrict neg_d, int nn, float base, int soft, long *active)
{
    float total = 0.0f;
    int k = 0;
    if (soft) {
        for (; k < nn; k++)
            total += hinge(base - neg_d[k], 1);
        *active += nn; /* softplus is never 0 */
        return total;
    }
    /* [x]+ as (x + |x|) / 2, exact, and a form the vectoriser takes where it refuses a select */
    float sum[LANES] = {0}, count[LANES] = {0};
    for (; k + LANES <= nn; k += LANES)
        for (int j = 0; j < LANES; j++) {
            float x = base - neg_d[k + j];
            sum[j] += 0.5f * (x + fabsf(x));
            count[j] += (float)(x > 0.0f);
        }
    float n_active = 0.0f;
    for (; k < nn; k++) {
        float x = base - neg_d[k];
        total += 0.5f * (x + fabsf(x));
        n_active += (float)(x > 0.0f);
    }
    for (int j = 0; j < LANES; j++) {
        total += sum[j];
        n_active += count[j];
    }
    *active += (long)n_active;
    return total;
}

/* Adds hinge_slope(base - neg_d[k]) to neg_w[k] for every negative; returns their sum. */
static float add_slopes(const float *restrict neg_d, float *restrict neg_w, int nn, float base,
                        int soft)
{
    float total = 0.0f;
    int k = 0;
    if (soft) {
        for (; k < nn; k++) {
            float s = hinge_slope(base - neg_d[k], 1);
            neg_w[k] += s;
            total += s;
        }
        return total;
    }
    float sum[LANES] = {0};
    for (; k + LANES <= nn; k += LANES)
        for (int j = 0; j < LANES; j++) {
            float s = base - neg_d[k + j] > 0.0f ? 1.0f : 0.0f;
            neg_w[k + j] += s;
            sum[j] += s;
        }
    for (; k < nn; k++) {
        float s = base - neg_d[k] > 0.0f ? 1.0f : 0.0f;
        neg_w[k] += s;
        total += s;
    }
    for (int j = 0; j < LANES; j++)
        total += sum[j];
    return total;
}

static void all_forward(const dml_tensor *out, forward_acc *acc)
{
    const triplet_ctx *c = out->cache;
    int b = out->src[0]->rows, n = out->src[0]->cols, np, nn;
    for (int a = 0; a < b; a++) {
        const float *row = out->src[0]->data + (size_t)a * n;
        split_anchor(c, row, n, c->lo + a, &np, &nn);
        for (int i = 0; i < np; i++)
            acc->sum += hinge_sum(c->neg_d, nn, row[c->pos_idx[i]] + out->fparam[0], c->soft,
                                  &acc->nonzero);
        acc->count += (long)np * nn;
    }
}

/* d(loss)/d(a,p) is g times the summed slopes over the negatives; each negative's share is
 * summed over the positives in neg_w and scattered once per anchor. */
static void all_backward(const dml_tensor *out, float g)
{
    const triplet_ctx *c = out->cache;
    int b = out->src[0]->rows, n = out->src[0]->cols, np, nn;
    for (int a = 0; a < b; a++) {
        const float *row = out->src[0]->data + (size_t)a * n;
        float *dd = out->src[0]->grad + (size_t)a * n;
        split_anchor(c, row, n, c->lo + a, &np, &nn);
        memset(c->neg_w, 0, (size_t)nn * sizeof *c->neg_w);
        for (int i = 0; i < np; i++)
            dd[c->pos_idx[i]] += g * add_slopes(c->neg_d, c->neg_w, nn,
                                                row[c->pos_idx[i]] + out->fparam[0], c->soft);
        for (int k = 0; k < nn; k++)
            dd[c->neg_idx[k]] -= g * c->neg_w[k];
    }
}

static int walks_all(const triplet_ctx *c)
{
    return c->miner == DML_MINER_ALL && c->labels;
}

static void triplet_forward(dml_tensor *out)
{
    triplet_ctx *c = out->cache;
    forward_acc acc = {0.0, 0, 0, c->soft};
    if (walks_all(c))
        all_forward(out, &acc);
    else
        for_each_listed(out, forward_visit, &acc);
    if (c->shard) { /* every rank's anchors: the global sums and counts */
        double v[3] = {acc.sum, (double)acc.count, (double)acc.nonzero};
        c->shard->sum(c->shard->ctx, v, 3);
        acc.sum = v[0];
        acc.count = (long)v[1];
        acc.nonzero = (long)v[2];
    }
    long denom = c->reduction == DML_REDUCE_MEAN_NONZERO && !c->soft ? acc.nonzero : acc.count;
    c->denom = (float)denom;
    out->data[0] = denom > 0 ? (float)(acc.sum / (double)denom) : 0.0f;
}

static void triplet_backward(dml_tensor *out)
{
    triplet_ctx *c = out->cache;
    if (c->denom == 0.0f)
        return;
    float g = out->grad[0] / c->denom;
    if (walks_all(c)) {
        all_backward(out, g);
        return;
    }
    backward_acc acc = {out->src[0]->grad, out->src[0]->cols, c->soft, g};
    for_each_listed(out, backward_visit, &acc);
}

const dml_op_def dml_op_triplet = {"triplet", triplet_forward, triplet_backward};

/* A float's bits as an int32 that orders as the float does (negative values get their magnitude
 * bits flipped; NaN sorts beyond infinity, so a NaN distance is mined and reaches the loss,
 * where divergence is caught). Integer max and min written with masks vectorise; the float
 * select does not, without -ffast-math. */
static int32_t order_key(float v)
{
    int32_t k;
    memcpy(&k, &v, sizeof k);
    return k ^ (-(int32_t)(k < 0) & INT32_MAX);
}

/* Anchor a's hardest positive (farthest reference of its class, a excluded) and hardest
 * negative (nearest reference of another class) among the n, -1 where there is none. One
 * branch-free pass finds the two extreme distances, a second the first row holding each (ties go
 * to the lowest index); both vectorise, where a loop keeping the best index so far branches on
 * every row. */
DML_SIMD_CLONES static void hardest_of_row(const float *restrict row,
                                           const int32_t *restrict labels, int n, int a, int *pos,
                                           int *neg)
{
    const int32_t la = labels[a];
    int32_t far = INT32_MIN, near = INT32_MAX;
    for (int j = 0; j < n; j++) {
        int32_t key = order_key(row[j]);
        int32_t same = -(int32_t)(labels[j] == la), positive = same & -(int32_t)(j != a);
        int32_t as_pos = (key & positive) | (INT32_MIN & ~positive);
        int32_t as_neg = (key & ~same) | (INT32_MAX & same);
        far = as_pos > far ? as_pos : far;
        near = as_neg < near ? as_neg : near;
    }
    int32_t first_pos = INT32_MAX, first_neg = INT32_MAX;
    for (int j = 0; j < n; j++) {
        int32_t key = order_key(row[j]);
        int32_t same = -(int32_t)(labels[j] == la), positive = same & -(int32_t)(j != a);
        int32_t at_far = positive & -(int32_t)(key == far);
        int32_t at_near = ~same & -(int32_t)(key == near);
        int32_t jp = (j & at_far) | (INT32_MAX & ~at_far);
        int32_t jn = (j & at_near) | (INT32_MAX & ~at_near);
        first_pos = jp < first_pos ? jp : first_pos;
        first_neg = jn < first_neg ? jn : first_neg;
    }
    *pos = first_pos == INT32_MAX ? -1 : first_pos;
    *neg = first_neg == INT32_MAX ? -1 : first_neg;
}

/* Hard and semihard mining: one (a, p, n) per anchor (hard) or per positive pair (semihard). */
static void mine(triplet_ctx *c, const dml_tensor *d, float margin, int32_t *ta, int32_t *tp,
                 int32_t *tn)
{
    int b = d->rows, n = d->cols;
    const int32_t *ref = c->refs;
    c->n = 0;
    c->a = ta;
    c->p = tp;
    c->neg = tn;
    for (int a = 0; a < b; a++) {
        const float *row = d->data + (size_t)a * n;
        int self = c->lo + a, hardest_pos, hardest_neg;
        hardest_of_row(row, ref, n, self, &hardest_pos, &hardest_neg);
        if (hardest_pos < 0 || hardest_neg < 0)
            continue; /* no positive or no negative: this anchor has no triplet */
        if (c->miner == DML_MINER_HARD) {
            ta[c->n] = a;
            tp[c->n] = hardest_pos;
            tn[c->n++] = hardest_neg;
            continue;
        }
        for (int p = 0; p < n; p++) {
            if (p == self || ref[p] != ref[self])
                continue;
            int semi = -1;
            for (int j = 0; j < n; j++)
                if (ref[j] != ref[self] && row[j] > row[p] && row[j] < row[p] + margin &&
                    (semi < 0 || row[j] < row[semi]))
                    semi = j;
            ta[c->n] = a;
            tp[c->n] = p;
            tn[c->n++] = semi >= 0 ? semi : hardest_neg;
        }
    }
}

static dml_tensor *triplet_node(dml_graph *g, dml_tensor *d, triplet_ctx **ctx)
{
    if (!d)
        return NULL;
    DML_ASSERT(d->rows <= d->cols);
    dml_tensor *out = dml_graph_node(g, &dml_op_triplet, 1, 1, d, NULL, NULL);
    *ctx = out ? dml_graph_alloc(g, sizeof **ctx) : NULL;
    if (!*ctx)
        return NULL;
    memset(*ctx, 0, sizeof **ctx);
    out->cache = *ctx;
    return out;
}

dml_tensor *dml_loss_triplet_refs(dml_graph *g, dml_tensor *d, const int32_t *labels,
                                  const int32_t *ref_labels, float margin, dml_miner miner, int soft,
                                  dml_reduction reduction, const dml_loss_shard *shard)
{
    triplet_ctx *c;
    dml_tensor *out = triplet_node(g, d, &c);
    if (!out)
        return NULL;
    int b = d->rows, n = d->cols;
    c->labels = labels;
    c->refs = ref_labels;
    c->miner = miner;
    c->soft = soft;
    c->reduction = reduction;
    c->shard = shard;
    c->lo = shard ? shard->lo : 0;
    out->fparam[0] = margin;
    if (miner == DML_MINER_ALL) {
        c->pos_idx = dml_graph_alloc(g, (size_t)n * sizeof(int32_t));
        c->neg_idx = dml_graph_alloc(g, (size_t)n * sizeof(int32_t));
        c->neg_d = dml_graph_alloc(g, (size_t)n * sizeof(float));
        c->neg_w = dml_graph_alloc(g, (size_t)n * sizeof(float));
        if (!c->pos_idx || !c->neg_idx || !c->neg_d || !c->neg_w)
            return NULL;
    } else {
        size_t cap = miner == DML_MINER_HARD ? (size_t)b : (size_t)b * n;
        int32_t *ta = dml_graph_alloc(g, cap * sizeof(int32_t));
        int32_t *tp = dml_graph_alloc(g, cap * sizeof(int32_t));
        int32_t *tn = dml_graph_alloc(g, cap * sizeof(int32_t));
        if (!ta || !tp || !tn)
            return NULL;
        mine(c, d, margin, ta, tp, tn);
    }
    return dml_graph_run(g, out);
}

dml_tensor *dml_loss_triplet(dml_graph *g, dml_tensor *d, const int32_t *labels, float margin,
                             dml_miner miner, int soft, dml_reduction reduction)
{
    return dml_loss_triplet_refs(g, d, labels, labels, margin, miner, soft, reduction, NULL);
}

dml_tensor *dml_loss_triplet_explicit(dml_graph *g, dml_tensor *d, const int32_t *anchor,
                                      const int32_t *positive, const int32_t *negative, int n,
                                      float margin, int soft, dml_reduction reduction)
{
    triplet_ctx *c;
    dml_tensor *out = triplet_node(g, d, &c);
    if (!out)
        return NULL;
    c->miner = DML_MINER_HARD; /* any value but ALL: walk the list */
    c->soft = soft;
    c->reduction = reduction;
    c->n = n;
    c->a = anchor;
    c->p = positive;
    c->neg = negative;
    out->fparam[0] = margin;
    return dml_graph_run(g, out);
}

/* loss.type triplet: the row's parameters in the order of p. */
enum { P_DISTANCE, P_MARGIN, P_MINER, P_SOFT, P_REDUCTION, N_PARAMS };

static const dml_loss_param PARAMS[N_PARAMS] = {
    [P_DISTANCE] = DML_LOSS_PARAM_DISTANCE,
    [P_MARGIN] = {"margin", DML_LP_FLOAT, 0.2f, 0.0f, INFINITY, 0, NULL, "the triplet margin"},
    [P_MINER] = {"miner", DML_LP_CHOICE, DML_MINER_ALL, 0, 0, 0, dml_miner_names,
                 "all (batch-all), hard (batch-hard) or semihard (FaceNet's)"},
    [P_SOFT] = {"soft", DML_LP_FLAG, 0, 0, 1, 0, NULL, "softplus instead of the hinge"},
    [P_REDUCTION] = DML_LOSS_PARAM_REDUCTION(DML_REDUCE_MEAN,
                                             "mean over the triplets; default mean_nonzero (over "
                                             "the active ones) with miner all"),
};

/* losses.md: batch-all triplet averages over the active triplets only. */
static void fit_defaults(float *p, const int *given)
{
    if (!given[P_REDUCTION])
        p[P_REDUCTION] = p[P_MINER] == DML_MINER_ALL ? DML_REDUCE_MEAN_NONZERO : DML_REDUCE_MEAN;
}

/* Triplets of batch anchors (this rank's, in a shard) whose positives and negatives come from
 * the batch and the cross-batch memory's rows. */
static dml_tensor *build(const dml_loss_input *in)
{
    const float *p = in->p;
    const int32_t *ref_labels;
    dml_tensor *d = dml_distance_refs(in, (dml_distance)p[P_DISTANCE], &ref_labels);
    if (!d)
        return NULL;
    return dml_loss_triplet_refs(in->g, d, in->labels, ref_labels, p[P_MARGIN],
                                 (dml_miner)p[P_MINER], p[P_SOFT] != 0.0f,
                                 (dml_reduction)p[P_REDUCTION], in->shard);
}

static const dml_op_def *const OPS[] = {&dml_op_triplet};

const dml_loss_row dml_loss_row_triplet = {
    .name = "triplet",
    .doc = "triplet loss (Weinberger & Saul 2009; FaceNet's miners, Schroff et al. 2015)",
    .needs = DML_LOSS_NEEDS_LABELS,
    .combines = DML_LOSS_WITH_MEMORY | DML_LOSS_WITH_QUANTIZATION | DML_LOSS_WITH_HEAD |
                DML_LOSS_WITH_MPI | DML_LOSS_WITH_SHARDING,
    .params = PARAMS,
    .n_params = N_PARAMS,
    .ops = OPS,
    .n_ops = 1,
    .build = build,
    .fit_defaults = fit_defaults,
};
