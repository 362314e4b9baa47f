/* Circle loss (Sun et al., CVPR 2020, "Circle Loss: A Unified Perspective of Pair Similarity
 * Optimization"), as pytorch-metric-learning's CircleLoss computes it on cosine similarities. */
#include <math.h>

#include "losses/loss_table.h"

/* src[0] = S [B, N]; src[1] = the similarities the weights a_p, a_n are computed from, or NULL
 * (S itself); ctx: circle_ctx; cache: [B * N + 1], d(sum_i L_i)/dS filled by forward, then the
 * number of rows that have a loss (the divisor). In a shard S is [n, N], the rows of anchors
 * lo .. lo + n, and the rows' losses and their number are summed over the ranks. */
typedef struct circle_ctx {
    const int32_t *labels, *refs; /* [B], [N] */
    float m, gamma;
    const dml_loss_shard *shard; /* NULL: row i of S is the batch's row i */
} circle_ctx;

static double softplus(double t)
{
    return t > 0.0 ? t + log1p(exp(-t)) : log1p(exp(t));
}

/* The logit of pair (i, j): -gamma a_p (s - (1 - m)) for a positive, gamma a_n (s - m) for a
 * negative, in double (at gamma 80 it reaches ~100; computed twice rather than stored). The
 * weights a_p = [1 + m - w]+, a_n = [w + m]+ are constants: the authors' code detaches them.
 * Against PyTorch in float64 the gradient still differs by up to 5e-6 relative at gamma 80: a
 * cosine's float rounding (~3e-8) times d logit / ds (~gamma (1 + m) * 2) moves the softmax
 * weights that much; the loss is that sensitive to its float32 inputs. */
static double logit(const circle_ctx *x, float s, float w, int pos)
{
    double m = x->m;
    return pos ? -x->gamma * fmax(1.0 + m - w, 0.0) * (s - (1.0 - m))
               : x->gamma * fmax(w + m, 0.0) * (s - m);
}

/* Row i's loss, or -1 when it has no positive or no negative (c[N] zeroed then); writes
 * d(L_i)/d(s_ij) into c (the softmax weights first). */
static double circle_row(const circle_ctx *x, const float *restrict s, const float *restrict w,
                         float *restrict c, int n, int i)
{
    const int32_t *y = x->refs;
    int32_t yi = x->labels[i];
    double mp = -INFINITY, mn = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (j == i)
            continue;
        int pos = y[j] == yi;
        double l = logit(x, s[j], w[j], pos);
        if (pos)
            mp = fmax(mp, l);
        else
            mn = fmax(mn, l);
    }
    if (mp == -INFINITY || mn == -INFINITY) {
        for (int j = 0; j < n; j++)
            c[j] = 0.0f;
        return -1.0;
    }
    double sp = 0.0, sn = 0.0;
    for (int j = 0; j < n; j++) {
        int pos = y[j] == yi;
        c[j] = j == i ? 0.0f : (float)exp(logit(x, s[j], w[j], pos) - (pos ? mp : mn));
        if (pos)
            sp += c[j];
        else
            sn += c[j];
    }
    double t = mp + log(sp) + mn + log(sn);
    /* dL/dt = sigmoid(t), d lse / d logit = the softmax weight, d logit / ds = -gamma a_p or
     * gamma a_n */
    double sig = t >= 0.0 ? 1.0 / (1.0 + exp(-t)) : exp(t) / (1.0 + exp(t));
    double kp = sig / sp * x->gamma, kn = sig / sn * x->gamma;
    for (int j = 0; j < n; j++)
        c[j] = (float)(y[j] == yi ? -kp * c[j] * fmax(1.0 + x->m - w[j], 0.0)
                                  : kn * c[j] * fmax(w[j] + x->m, 0.0));
    return softplus(t);
}

static void circle_forward(dml_tensor *out)
{
    const dml_tensor *s = out->src[0];
    const float *w = out->src[1] ? out->src[1]->data : s->data;
    const circle_ctx *x = out->ctx;
    float *coef = out->cache, *divisor = coef + (size_t)s->rows * s->cols;
    int lo = x->shard ? x->shard->lo : 0;
    double sum = 0.0;
    int rows = 0;
    for (int i = 0; i < s->rows; i++) {
        size_t at = (size_t)i * s->cols;
        double l = circle_row(x, s->data + at, w + at, coef + at, s->cols, lo + i);
        if (l >= 0.0) {
            sum += l;
            rows++;
        }
    }
    if (x->shard) { /* every rank's anchors: the global sum and count */
        double v[2] = {sum, (double)rows};
        x->shard->sum(x->shard->ctx, v, 2);
        sum = v[0];
        rows = (int)v[1];
    }
    *divisor = (float)rows;
    out->data[0] = rows ? (float)(sum / rows) : 0.0f;
}

static void circle_backward(dml_tensor *out)
{
    dml_tensor *s = out->src[0];
    size_t n = (size_t)s->rows * s->cols;
    const float *coef = out->cache, *divisor = coef + n;
    if (*divisor == 0.0f)
        return;
    float g = out->grad[0] / *divisor;
    for (size_t k = 0; k < n; k++)
        s->grad[k] += g * coef[k];
}

const dml_op_def dml_op_circle = {"circle", circle_forward, circle_backward};

dml_tensor *dml_loss_circle(dml_graph *g, dml_tensor *s, dml_tensor *weights_at,
                            const int32_t *labels, const int32_t *ref_labels, float m, float gamma,
                            const dml_loss_shard *shard)
{
    if (!s || !ref_labels)
        return NULL;
    DML_ASSERT(labels && s->rows <= s->cols && gamma > 0.0f);
    DML_ASSERT(!weights_at || (weights_at->rows == s->rows && weights_at->cols == s->cols));
    dml_tensor *out = dml_graph_node(g, &dml_op_circle, 1, 1, s, weights_at, NULL);
    circle_ctx *x = out ? dml_graph_alloc(g, sizeof *x) : NULL;
    if (!x || !(out->cache = dml_graph_alloc(g, ((size_t)s->rows * s->cols + 1) * sizeof(float))))
        return NULL;
    *x = (circle_ctx){labels, ref_labels, m, gamma, shard};
    out->ctx = x;
    return dml_graph_run(g, out);
}

enum { P_M, P_GAMMA };

static dml_tensor *circle_build(const dml_loss_input *in)
{
    const int32_t *y = NULL;
    dml_tensor *s = dml_similarity_refs(in, &y);
    return dml_loss_circle(in->g, s, NULL, in->labels, y, in->p[P_M], in->p[P_GAMMA],
                           in->shard);
}

static const dml_loss_param circle_params[] = {
    [P_M] = {"m", DML_LP_FLOAT, 0.4f, 0.0f, 1.0f, 0, NULL,
             "relaxation margin: positives pushed above 1 - m, negatives below m (PML's m)"},
    [P_GAMMA] = {"gamma", DML_LP_FLOAT, 80.0f, 0.0f, INFINITY, 1, NULL,
                 "scale of the similarities (PML's gamma; the paper's 80 for fine-grained "
                 "retrieval, 256 for faces)"},
};

static const dml_op_def *const circle_ops[] = {&dml_op_circle};

const dml_loss_row dml_loss_row_circle = {
    .name = "circle",
    .doc = "Circle loss on cosine similarities (Sun et al. 2020)",
    .needs = DML_LOSS_NEEDS_LABELS,
    .combines = DML_LOSS_WITH_MEMORY | DML_LOSS_WITH_QUANTIZATION | DML_LOSS_WITH_HEAD |
                DML_LOSS_WITH_MPI | DML_LOSS_WITH_SHARDING,
    .params = circle_params,
    .n_params = (int)(sizeof circle_params / sizeof circle_params[0]),
    .ops = circle_ops,
    .n_ops = 1,
    .build = circle_build,
};
