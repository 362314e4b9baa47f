/* Proxy Anchor (Kim, Kim, Cho & Kwak, CVPR 2020): one learned proxy per class, each proxy an
 * anchor pulling the batch's rows of its class and pushing the others, as PyTorch Metric
 * Learning's ProxyAnchorLoss(margin 0.1, alpha 32) computes it. With s_ic = cos(z_i, p_c):
 *   L = 1/|P+| sum_{c in P+} log(1 + sum_{i: y_i = c} exp(-alpha (s_ic - margin)))
 *     + 1/C    sum_{c}       log(1 + sum_{i: y_i != c} exp( alpha (s_ic + margin)))
 * P+ the classes with a row in the batch, C the number of proxies. The cosines are one GEMM of
 * the normalised rows and proxies; this op is the loss over them. */
#include <math.h>

#include "losses/loss_table.h"

/* src[0] = S [B, C] of cosines; ctx = the labels [B]; fparam: margin, alpha. */
typedef struct pa_cache {
    float *w;    /* [B, C] d(loss)/d(s_ic), filled by forward for backward */
    float *mx;   /* [2C] the largest exponent in each proxy's positive, then negative, term */
    double *sum; /* [2C] their sums of exp(v - mx) */
    int *n_pos;  /* [C] the batch's rows of each class */
} pa_cache;

/* The exponent of s_ic in its proxy's positive term (row i of class c: slot c of the sums) or
 * negative term (slot C + c). */
static float exponent(float s, int pos, float margin, float alpha)
{
    return pos ? alpha * (margin - s) : alpha * (s + margin);
}

static void proxy_anchor_forward(dml_tensor *out)
{
    const dml_tensor *s = out->src[0];
    const int32_t *y = out->ctx;
    pa_cache *m = out->cache;
    int b = s->rows, nc = s->cols;
    float margin = out->fparam[0], alpha = out->fparam[1];
    for (int k = 0; k < 2 * nc; k++) {
        m->mx[k] = 0.0f; /* the log's 1 is exp(0), a term of every sum */
        m->sum[k] = 0.0;
    }
    for (int c = 0; c < nc; c++)
        m->n_pos[c] = 0;
    for (int i = 0; i < b; i++) {
        m->n_pos[y[i]]++;
        for (int c = 0; c < nc; c++) {
            int slot = y[i] == c ? c : nc + c;
            float v = exponent(s->data[(size_t)i * nc + c], y[i] == c, margin, alpha);
            m->mx[slot] = v > m->mx[slot] ? v : m->mx[slot];
        }
    }
    for (int i = 0; i < b; i++)
        for (int c = 0; c < nc; c++) {
            int slot = y[i] == c ? c : nc + c;
            float v = exponent(s->data[(size_t)i * nc + c], y[i] == c, margin, alpha);
            float e = expf(v - m->mx[slot]);
            m->w[(size_t)i * nc + c] = e;
            m->sum[slot] += e;
        }
    double pos = 0.0, neg = 0.0;
    int with_pos = 0;
    for (int c = 0; c < nc; c++) {
        with_pos += m->n_pos[c] > 0;
        for (int k = 0; k < 2; k++) {
            int sl = k * nc + c;
            m->sum[sl] += exp(-(double)m->mx[sl]); /* now the whole of 1 + sum, over exp(mx) */
            double term = m->mx[sl] + log(m->sum[sl]);
            if (k == 0)
                pos += term;
            else
                neg += term;
        }
    }
    double value = neg / nc + (with_pos > 0 ? pos / with_pos : 0.0);
    out->data[0] = (float)value;
    /* d(term)/d(s): the softmax weight of the entry among its sum's, times -alpha (positive
     * term) or alpha (negative term), over the term's divisor. */
    float pos_scale = with_pos > 0 ? -alpha / (float)with_pos : 0.0f, neg_scale = alpha / (float)nc;
    for (int i = 0; i < b; i++)
        for (int c = 0; c < nc; c++) {
            int is_pos = y[i] == c, sl = is_pos ? c : nc + c;
            float *w = &m->w[(size_t)i * nc + c];
            *w = (float)(*w / m->sum[sl]) * (is_pos ? pos_scale : neg_scale);
        }
}

static void proxy_anchor_backward(dml_tensor *out)
{
    dml_tensor *s = out->src[0];
    const pa_cache *m = out->cache;
    float g = out->grad[0];
    size_t n = (size_t)s->rows * s->cols;
    for (size_t k = 0; k < n; k++)
        s->grad[k] += g * m->w[k];
}

const dml_op_def dml_op_proxy_anchor = {"proxy_anchor", proxy_anchor_forward,
                                        proxy_anchor_backward};

dml_tensor *dml_loss_proxy_anchor(dml_graph *g, dml_tensor *z, dml_tensor *proxies,
                                  const int32_t *labels, float margin, float alpha)
{
    dml_tensor *s = dml_matmul(g, dml_l2_normalize(g, z), dml_l2_normalize(g, proxies), 1);
    if (!s)
        return NULL;
    for (int i = 0; i < s->rows; i++) /* a proxy per class: the trainer sizes them so */
        DML_ASSERT(labels[i] >= 0 && labels[i] < s->cols);
    size_t nc = (size_t)s->cols;
    dml_tensor *out = dml_graph_node(g, &dml_op_proxy_anchor, 1, 1, s, NULL, NULL);
    pa_cache *m = out ? dml_graph_alloc(g, sizeof *m) : NULL;
    if (!m)
        return NULL;
    m->w = dml_graph_alloc(g, (size_t)s->rows * nc * sizeof *m->w);
    m->mx = dml_graph_alloc(g, 2 * nc * sizeof *m->mx);
    m->sum = dml_graph_alloc(g, 2 * nc * sizeof *m->sum);
    m->n_pos = dml_graph_alloc(g, nc * sizeof *m->n_pos);
    if (!m->w || !m->mx || !m->sum || !m->n_pos)
        return NULL;
    out->cache = m;
    out->ctx = labels;
    out->fparam[0] = margin;
    out->fparam[1] = alpha;
    return dml_graph_run(g, out);
}

static dml_tensor *build(const dml_loss_input *in)
{
    return dml_loss_proxy_anchor(in->g, in->z, in->class_params, in->labels, in->p[0], in->p[1]);
}

/* loss.type proxy_anchor: the row's parameters in the order of p. */
static const dml_loss_param PARAMS[] = {
    {"margin", DML_LP_FLOAT, 0.1f, 0.0f, 1.0f, 0, NULL,
     "the cosine margin delta: positives are pulled above it, negatives pushed below -delta"},
    {"alpha", DML_LP_FLOAT, 32.0f, 0.0f, INFINITY, 1, NULL,
     "the scale of the cosines in the log-sum-exps, > 0"},
    {"lr_multiplier", DML_LP_FLOAT, 100.0f, 0.0f, INFINITY, 1, NULL,
     "the proxies learn at train.lr times this (the paper's 100), > 0"},
};

static const dml_op_def *const OPS[] = {&dml_op_proxy_anchor};

const dml_loss_row dml_loss_row_proxy_anchor = {
    .name = "proxy_anchor",
    .doc = "Proxy Anchor (Kim et al. 2020): a learned proxy per class, the anchor of its rows",
    .needs = DML_LOSS_NEEDS_LABELS,
    .combines = DML_LOSS_WITH_HEAD | DML_LOSS_WITH_MPI,
    .params = PARAMS,
    .n_params = (int)(sizeof PARAMS / sizeof PARAMS[0]),
    .class_rows = 1,
    .ops = OPS,
    .n_ops = 1,
    .build = build,
};
