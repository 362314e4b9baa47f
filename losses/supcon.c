/* Supervised contrastive loss (Khosla et al. 2020, L_out), PyTorch Metric Learning's SupConLoss:
 * every row (and every view of it) an anchor, a softmax over every other row at temperature t,
 * minus the mean log-probability of the anchor's positives. Without labels, on two views, it is
 * SimCLR's NT-Xent. */
#include <math.h>

#include "losses/loss_table.h"

/* The label of candidate j among the views: the row's label, or the row itself unlabelled. */
typedef struct supcon_labels {
    const int32_t *y; /* [b] or NULL */
    int b;            /* rows per view */
    /* NULL: every view of every row an anchor. In a shard the anchors are rows lo .. lo + n of
     * each view, and the loss's total and count are summed over the ranks. */
    const dml_loss_shard *shard;
} supcon_labels;

typedef struct supcon_cache {
    float *e;    /* [A, R]: exp(v - lse) per anchor, the softmax over its candidates (0 at itself) */
    float *w;    /* [A]: 1 / |P(i)| for an anchor counted in the mean, else 0 */
    int counted; /* anchors whose loss is > 0: the mean's divisor (PML's AvgNonZeroReducer) */
} supcon_cache;

static int32_t label_of(const supcon_labels *l, int j)
{
    return l->y ? l->y[j % l->b] : (int32_t)(j % l->b);
}

/* The anchors: src[0]'s rows, then src[1]'s (R in one process, 2n or n in a shard). */
static int anchors(const dml_tensor *out)
{
    return out->src[0]->rows + (out->src[1] ? out->src[1]->rows : 0);
}

/* Anchor r's index among the R candidates (r itself in one process). */
static int candidate_of(const dml_tensor *out, int r)
{
    const supcon_labels *l = out->ctx;
    int top = out->src[0]->rows;
    if (!l->shard)
        return r;
    return r < top ? l->shard->lo + r : l->b + l->shard->lo + (r - top);
}

/* Anchor r's row of similarities: src[0] holds the first view's anchors, src[1] (or NULL) the
 * second's; both span all R candidates. */
static const float *anchor_row(const dml_tensor *out, int r)
{
    const dml_tensor *top = out->src[0];
    return r < top->rows ? top->data + (size_t)r * top->cols
                         : out->src[1]->data + (size_t)(r - top->rows) * top->cols;
}

static float *anchor_grad(dml_tensor *out, int r)
{
    dml_tensor *top = out->src[0];
    dml_tensor *s = r < top->rows ? top : out->src[1];
    if (!s->grad)
        return NULL;
    return s->grad + (size_t)(r < top->rows ? r : r - top->rows) * top->cols;
}

/* PML's condition: some positive pair and some negative pair in the batch, else the loss is 0. */
static int has_pos_and_neg(const supcon_labels *l, int n)
{
    int pos = 0, neg = 0;
    for (int i = 0; i < n && !(pos && neg); i++)
        for (int j = 0; j < n; j++) {
            if (j == i)
                continue;
            if (label_of(l, i) == label_of(l, j))
                pos = 1;
            else
                neg = 1;
        }
    return pos && neg;
}

static void supcon_forward(dml_tensor *out)
{
    const supcon_labels *l = out->ctx;
    supcon_cache *c = out->cache;
    int n = out->src[0]->cols;
    float inv_t = 1.0f / out->fparam[0];
    double total = 0.0;
    c->counted = 0;
    int live = has_pos_and_neg(l, n), a = anchors(out);
    for (int r = 0; r < a; r++) {
        const float *s = anchor_row(out, r);
        float *e = c->e + (size_t)r * n;
        int self = candidate_of(out, r);
        int32_t yr = label_of(l, self);
        float mx = -INFINITY;
        for (int j = 0; j < n; j++)
            if (j != self && s[j] * inv_t > mx)
                mx = s[j] * inv_t;
        double sum = 0.0, pos = 0.0;
        int n_pos = 0;
        for (int j = 0; j < n; j++) {
            if (j == self) {
                e[j] = 0.0f;
                continue;
            }
            e[j] = expf(s[j] * inv_t - mx);
            sum += e[j];
            if (label_of(l, j) == yr) {
                pos += s[j] * inv_t - mx;
                n_pos++;
            }
        }
        c->w[r] = 0.0f;
        if (!live || n_pos == 0)
            continue;
        /* -mean_p log softmax_p = lse - mean_p v, both taken from mx */
        double loss = log(sum) - pos / n_pos;
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < n; j++)
            e[j] *= inv;
        if (loss > 0.0) {
            total += loss;
            c->w[r] = 1.0f / (float)n_pos;
            c->counted++;
        }
    }
    if (l->shard) { /* every rank's anchors: the global total and count */
        double v[2] = {total, (double)c->counted};
        l->shard->sum(l->shard->ctx, v, 2);
        total = v[0];
        c->counted = (int)v[1];
    }
    out->data[0] = c->counted ? (float)(total / c->counted) : 0.0f;
}

/* d L_r / d v_j = p_j - [j in P(r)] / |P(r)|, v = s / t. */
static void supcon_backward(dml_tensor *out)
{
    const supcon_labels *l = out->ctx;
    const supcon_cache *c = out->cache;
    int n = out->src[0]->cols;
    if (!c->counted)
        return;
    float g = out->grad[0] / (out->fparam[0] * (float)c->counted);
    for (int r = 0, a = anchors(out); r < a; r++) {
        float *ds = anchor_grad(out, r);
        if (!ds || c->w[r] == 0.0f)
            continue;
        const float *e = c->e + (size_t)r * n;
        int self = candidate_of(out, r);
        int32_t yr = label_of(l, self);
        for (int j = 0; j < n; j++) {
            if (j == self)
                continue;
            float target = label_of(l, j) == yr ? c->w[r] : 0.0f;
            ds[j] += g * (e[j] - target);
        }
    }
}

const dml_op_def dml_op_supcon = {"supcon", supcon_forward, supcon_backward};

/* The shard's rows of x normalised on their own (the same rows as xn's), or xn itself without a
 * shard. */
static dml_tensor *anchor_rows(dml_graph *g, dml_tensor *x, dml_tensor *xn,
                               const dml_loss_shard *shard)
{
    return shard ? dml_l2_normalize(g, dml_loss_shard_rows(g, x, shard)) : xn;
}

dml_tensor *dml_loss_supcon(dml_graph *g, dml_tensor *z, dml_tensor *zp, const int32_t *labels,
                            float temperature, const dml_loss_shard *shard)
{
    dml_tensor *zn = dml_l2_normalize(g, z), *top, *bottom = NULL;
    dml_tensor *an = anchor_rows(g, z, zn, shard);
    if (zp) {
        dml_tensor *pn = dml_l2_normalize(g, zp), *ap = anchor_rows(g, zp, pn, shard);
        top = dml_concat_cols(g, dml_matmul(g, an, zn, 1), dml_matmul(g, an, pn, 1));
        bottom = dml_concat_cols(g, dml_matmul(g, ap, zn, 1), dml_matmul(g, ap, pn, 1));
        if (!bottom)
            return NULL;
    } else {
        top = dml_matmul(g, an, zn, 1);
    }
    if (!top)
        return NULL;
    dml_tensor *out = dml_graph_node(g, &dml_op_supcon, 1, 1, top, bottom, NULL);
    supcon_cache *c = out ? dml_graph_alloc(g, sizeof *c) : NULL;
    supcon_labels *l = c ? dml_graph_alloc(g, sizeof *l) : NULL;
    if (!l)
        return NULL;
    size_t n = (size_t)top->cols, a = (size_t)top->rows + (bottom ? (size_t)bottom->rows : 0);
    c->e = dml_graph_alloc(g, a * n * sizeof(float));
    c->w = dml_graph_alloc(g, a * sizeof(float));
    if (!c->e || !c->w)
        return NULL;
    *l = (supcon_labels){labels, z->rows, shard};
    out->ctx = l;
    out->cache = c;
    out->fparam[0] = temperature;
    return dml_graph_run(g, out);
}

static const dml_loss_param supcon_params[] = {
    {"temperature", DML_LP_FLOAT, 0.1f, 0.0f, 100.0f, 1, NULL,
     "softmax temperature t of the similarities s / t"},
};

static const dml_op_def *const supcon_ops[] = {&dml_op_supcon};

static dml_tensor *supcon_build(const dml_loss_input *in)
{
    return dml_loss_supcon(in->g, in->z, in->zp, in->labels, in->p[0], in->shard);
}

const dml_loss_row dml_loss_row_supcon = {
    .name = "supcon",
    .doc = "supervised contrastive loss (Khosla et al. 2020); on two unlabelled views SimCLR's NT-Xent",
    .needs = DML_LOSS_NEEDS_LABELS_OR_PAIRS,
    .combines = DML_LOSS_WITH_HEAD | DML_LOSS_WITH_MPI | DML_LOSS_WITH_SHARDING,
    .params = supcon_params,
    .n_params = 1,
    .class_rows = 0,
    .class_rows_key = NULL,
    .ops = supcon_ops,
    .n_ops = 1,
    .build = supcon_build,
};
