/* Multi-Similarity loss (Wang et al., CVPR 2019, "Multi-Similarity Loss with General Pair
 * Weighting") with its pair miner, as pytorch-metric-learning's MultiSimilarityLoss and
 * MultiSimilarityMiner compute them on cosine similarities. */
#include <math.h>

#include "losses/loss_table.h"

/* src[0] = S [B, N]; ctx: ms_ctx; cache: [B * N + 1], d(sum_i L_i)/dS filled by forward, then
 * the number of rows the mean is over. In a shard S is [n, N], the rows of anchors lo .. lo + n
 * (the miner is per anchor row, so it needs nothing else), and the sum of the rows' losses and
 * their number are summed over the ranks. */
typedef struct ms_ctx {
    const int32_t *labels, *refs; /* [B], [N] */
    float alpha, beta, base, epsilon;
    int mine;
    const dml_loss_shard *shard; /* NULL: row i of S is the batch's row i */
} ms_ctx;

/* Row i's loss; writes d(L_i)/d(s_ij) into c[N]. The exponents go into c first (-inf for a
 * pair the miner drops and for i itself), then become the weights. Both sums carry the "1 +"
 * as exp(0 - max): a stable log(1 + sum exp) that is 0 over an empty set. */
static double ms_row(const ms_ctx *x, const float *restrict s, float *restrict c, int n, int i)
{
    const int32_t *y = x->refs;
    int32_t yi = x->labels[i];
    float min_pos = INFINITY, max_neg = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (j == i)
            continue;
        if (y[j] == yi)
            min_pos = fminf(min_pos, s[j]);
        else
            max_neg = fmaxf(max_neg, s[j]);
    }
    /* A row with no positive or no negative adds nothing, mined or not (the miner would keep
     * none of its pairs; PML's loss without it still counts the other term). */
    if (min_pos == INFINITY || max_neg == -INFINITY) {
        for (int j = 0; j < n; j++)
            c[j] = 0.0f;
        return 0.0;
    }
    /* PML's miner: strict inequalities. */
    float mp = 0.0f, mn = 0.0f;
    for (int j = 0; j < n; j++) {
        int pos = y[j] == yi;
        int keep = j != i && (!x->mine || (pos ? s[j] - x->epsilon < max_neg
                                               : s[j] + x->epsilon > min_pos));
        float e = pos ? -x->alpha * (s[j] - x->base) : x->beta * (s[j] - x->base);
        c[j] = keep ? e : -INFINITY;
        if (pos)
            mp = fmaxf(mp, c[j]);
        else
            mn = fmaxf(mn, c[j]);
    }
    double sp = exp(-(double)mp), sn = exp(-(double)mn);
    for (int j = 0; j < n; j++) {
        c[j] = expf(c[j] - (y[j] == yi ? mp : mn));
        if (y[j] == yi)
            sp += c[j];
        else
            sn += c[j];
    }
    /* d/ds of (1/alpha) lse1(-alpha (s - base)) is minus the softmax weight; of the negative
     * term plus its weight. */
    float inv_p = (float)(1.0 / sp), inv_n = (float)(1.0 / sn);
    for (int j = 0; j < n; j++)
        c[j] = y[j] == yi ? -c[j] * inv_p : c[j] * inv_n;
    return (mp + log(sp)) / x->alpha + (mn + log(sn)) / x->beta;
}

static void ms_forward(dml_tensor *out)
{
    const dml_tensor *s = out->src[0];
    const ms_ctx *x = out->ctx;
    float *coef = out->cache, *divisor = coef + (size_t)s->rows * s->cols;
    int lo = x->shard ? x->shard->lo : 0;
    double sum = 0.0, rows = s->rows;
    for (int i = 0; i < s->rows; i++)
        sum += ms_row(x, s->data + (size_t)i * s->cols, coef + (size_t)i * s->cols, s->cols,
                      lo + i);
    if (x->shard) { /* every rank's anchors: the global sum and count */
        double v[2] = {sum, rows};
        x->shard->sum(x->shard->ctx, v, 2);
        sum = v[0];
        rows = v[1];
    }
    *divisor = (float)rows;
    out->data[0] = (float)(sum / rows);
}

static void ms_backward(dml_tensor *out)
{
    dml_tensor *s = out->src[0];
    size_t n = (size_t)s->rows * s->cols;
    const float *coef = out->cache;
    float g = out->grad[0] / coef[n];
    for (size_t k = 0; k < n; k++)
        s->grad[k] += g * coef[k];
}

const dml_op_def dml_op_multi_similarity = {"multi_similarity", ms_forward, ms_backward};

dml_tensor *dml_loss_multi_similarity(dml_graph *g, dml_tensor *s, const int32_t *labels,
                                      const int32_t *ref_labels, float alpha, float beta,
                                      float base, int mine, float epsilon,
                                      const dml_loss_shard *shard)
{
    if (!s || !ref_labels)
        return NULL;
    DML_ASSERT(labels && s->rows <= s->cols && s->rows > 0 && alpha > 0.0f && beta > 0.0f);
    dml_tensor *out = dml_graph_node(g, &dml_op_multi_similarity, 1, 1, s, NULL, NULL);
    ms_ctx *x = out ? dml_graph_alloc(g, sizeof *x) : NULL;
    if (!x || !(out->cache = dml_graph_alloc(g, ((size_t)s->rows * s->cols + 1) * sizeof(float))))
        return NULL;
    *x = (ms_ctx){labels, ref_labels, alpha, beta, base, epsilon, mine, shard};
    out->ctx = x;
    return dml_graph_run(g, out);
}

enum { P_ALPHA, P_BETA, P_BASE, P_MINER, P_EPSILON };
enum { MINER_ALL, MINER_MS }; /* loss.miner's choices, in ms_miners' order */

static dml_tensor *ms_build(const dml_loss_input *in)
{
    const int32_t *y = NULL;
    dml_tensor *s = dml_similarity_refs(in, &y);
    const float *p = in->p;
    return dml_loss_multi_similarity(in->g, s, in->labels, y, p[P_ALPHA], p[P_BETA], p[P_BASE],
                                     (int)p[P_MINER] == MINER_MS, p[P_EPSILON], in->shard);
}

/* loss.miner, as triplet's: which pairs the loss sees (the value is the index). */
static const char *const ms_miners[] = {[MINER_ALL] = "all", [MINER_MS] = "multi_similarity",
                                        NULL};

static const dml_loss_param ms_params[] = {
    [P_ALPHA] = {"alpha", DML_LP_FLOAT, 2.0f, 0.0f, INFINITY, 1, NULL,
                 "scale of the positive pairs' term (PML's alpha)"},
    [P_BETA] = {"beta", DML_LP_FLOAT, 50.0f, 0.0f, INFINITY, 1, NULL,
                "scale of the negative pairs' term (PML's beta)"},
    [P_BASE] = {"base", DML_LP_FLOAT, 0.5f, -1.0f, 1.0f, 0, NULL,
                "the cosine similarity the pairs are weighed around (PML's base)"},
    [P_MINER] = {"miner", DML_LP_CHOICE, (float)MINER_MS, 0.0f, 1.0f, 0, ms_miners,
                 "the pairs: multi_similarity mines them with the MS miner (the paper's "
                 "mining), all takes every pair (PML's loss without a miner)"},
    [P_EPSILON] = {"epsilon", DML_LP_FLOAT, 0.1f, 0.0f, 2.0f, 0, NULL,
                   "the miner's margin: a pair is kept within epsilon of the row's hardest pair "
                   "of the other kind"},
};

static const dml_op_def *const ms_ops[] = {&dml_op_multi_similarity};

const dml_loss_row dml_loss_row_multi_similarity = {
    .name = "multi_similarity",
    .doc = "Multi-Similarity loss with its pair miner on cosine similarities (Wang et al. 2019)",
    .needs = DML_LOSS_NEEDS_LABELS,
    .combines = DML_LOSS_WITH_MEMORY | DML_LOSS_WITH_QUANTIZATION | DML_LOSS_WITH_HEAD |
                DML_LOSS_WITH_MPI | DML_LOSS_WITH_SHARDING,
    .params = ms_params,
    .n_params = (int)(sizeof ms_params / sizeof ms_params[0]),
    .ops = ms_ops,
    .n_ops = 1,
    .build = ms_build,
};
