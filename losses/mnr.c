/* Multiple negatives ranking (Henderson et al. 2017): in-batch softmax retrieval of each
 * anchor's own positive among every positive of the batch (and optional hard negatives). */
#include <math.h>

#include "losses/loss_table.h"

/* src[0] = S [B, C] of cosines (C = B + the extra candidates: hard negatives or a cross-batch
 * memory); fparam[0] = scale; iparam[0] = symmetric, iparam[1] = B; ctx = the labels. Candidate
 * j of anchor i is dropped when it is another positive (j < B, j != i) of the anchor's label, or
 * an extra candidate (j >= B) labelled with it.
 *
 * In a shard, S is [n, C], the rows of anchors lo .. lo + n, and with symmetric src[1] = T
 * [n, B] holds the cosines of positives lo .. lo + n against every anchor: the columns of the
 * whole S that are this rank's, as rows. Without a shard, symmetric walks S's columns. */
typedef struct mnr_labels {
    const int32_t *batch; /* [B] or NULL: nothing is dropped */
    const int32_t *extra; /* [C - B] or NULL: no extra candidate is dropped */
    const dml_loss_shard *shard;
} mnr_labels;

typedef struct mnr_cache {
    /* Kept from forward for backward: the softmax of every row (and with symmetric, every
     * column of the square part, stored as rows), as exp(v - max) and 1 / their sum. One exp per
     * candidate in all, where recomputing them in backward doubled the loss's cost. */
    float *row_e, *col_e;     /* [B, C], [B, B] */
    float *row_inv, *col_inv; /* [B] each */
    float *terms;             /* [B] or [B, 2]: each anchor's log-sum-exp - target (and
                               * its column's, with symmetric) */
} mnr_cache;

/* e[k] = scale * s[k * stride] for anchor i's n candidates (its row: stride 1; its column:
 * stride C), -inf for a dropped one. Returns the largest. Branch-free, the maximum kept in
 * LANES running maxima that do not wait on each other, so a row's walk vectorises. */
DML_SIMD_CLONES static float scaled_candidates(float *restrict e, const float *restrict s,
                                               size_t stride, int n, float scale,
                                               const mnr_labels *lab, int i, int b)
{
    enum { LANES = 16 };
    const int32_t *restrict y = lab->batch, *restrict extra = lab->extra;
    int k = 0, labelled = y ? (n < b ? n : b) : 0, yi = y ? y[i] : 0;
    for (; k < labelled; k++) {
        float v = scale * s[(size_t)k * stride];
        e[k] = y[k] == yi && k != i ? -INFINITY : v;
    }
    if (y && extra)
        for (; k < n; k++) {
            float v = scale * s[(size_t)k * stride];
            e[k] = extra[k - b] == yi ? -INFINITY : v;
        }
    for (; k < n; k++)
        e[k] = scale * s[(size_t)k * stride];
    float lane[LANES], mx = -INFINITY;
    for (int l = 0; l < LANES; l++)
        lane[l] = -INFINITY;
    for (k = 0; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++)
            lane[l] = e[k + l] > lane[l] ? e[k + l] : lane[l];
    for (; k < n; k++)
        mx = e[k] > mx ? e[k] : mx;
    for (int l = 0; l < LANES; l++)
        mx = lane[l] > mx ? lane[l] : mx;
    return mx;
}

/* exp(e[k] - max) in place over scaled_candidates' values (0 for a dropped one). Returns the
 * log-sum-exp and sets *inv = 1 / sum. The sum runs in LANES double partial sums, which do not
 * wait on each other. */
static float softmax_terms(float *restrict e, const float *restrict s, size_t stride, int n,
                           float scale, const mnr_labels *y, int i, int b, float *inv)
{
    enum { LANES = 8 };
    float mx = scaled_candidates(e, s, stride, n, scale, y, i, b);
    double lane[LANES] = {0}, sum = 0.0;
    int k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) {
            e[k + l] = expf(e[k + l] - mx);
            lane[l] += e[k + l];
        }
    for (; k < n; k++) {
        e[k] = expf(e[k] - mx);
        sum += e[k];
    }
    for (int l = 0; l < LANES; l++)
        sum += lane[l];
    *inv = (float)(1.0 / sum);
    return mx + (float)log(sum);
}

/* Where positive i's column of the whole S is (sym): its first element and stride, in the
 * tensor col_src returns. */
static const dml_tensor *col_src(const dml_tensor *out, int i, size_t *first, size_t *stride)
{
    const mnr_labels *y = out->ctx;
    const dml_tensor *s = out->src[0];
    if (y->shard) { /* T's row i */
        *first = (size_t)i * out->src[1]->cols;
        *stride = 1;
        return out->src[1];
    }
    *first = (size_t)i;
    *stride = (size_t)s->cols;
    return s;
}

/* Anchors [first, end): their softmaxes and terms, each row on its own (a row pass). */
static void mnr_rows(void *ctx, int first, int end)
{
    dml_tensor *out = ctx;
    const dml_tensor *s = out->src[0];
    const mnr_labels *y = out->ctx;
    mnr_cache *m = out->cache;
    float scale = out->fparam[0];
    int c = s->cols, sym = out->iparam[0], b = out->iparam[1];
    int lo = y->shard ? y->shard->lo : 0;
    for (int i = first; i < end; i++) {
        int self = lo + i;
        float *term = m->terms + (size_t)i * (sym ? 2 : 1);
        float target = scale * s->data[(size_t)i * c + self];
        term[0] = softmax_terms(m->row_e + (size_t)i * c, s->data + (size_t)i * c, 1, c, scale, y,
                                self, b, &m->row_inv[i]) -
                  target;
        if (sym) {
            size_t first_col, stride;
            const dml_tensor *t = col_src(out, i, &first_col, &stride);
            term[1] = softmax_terms(m->col_e + (size_t)i * b, t->data + first_col, stride, b,
                                    scale, y, self, b, &m->col_inv[i]) -
                      scale * t->data[first_col + (size_t)self * stride];
        }
    }
}

static void mnr_forward(dml_tensor *out)
{
    const dml_tensor *s = out->src[0];
    const mnr_labels *y = out->ctx;
    const mnr_cache *m = out->cache;
    int rows = s->rows, sym = out->iparam[0], b = out->iparam[1];
    dml_pool_run_rows(mnr_rows, out, rows, s->cols * (sym ? 2 : 1));
    double total = 0.0; /* in the anchors' order, whatever the threads */
    for (size_t i = 0; i < (size_t)rows * (sym ? 2 : 1); i++)
        total += m->terms[i];
    if (y->shard) /* every rank's anchors */
        y->shard->sum(y->shard->ctx, &total, 1);
    out->data[0] = b > 0 ? (float)(total / ((double)b * (sym ? 2 : 1))) : 0.0f;
}

/* d/dv of log-sum-exp - target: the softmax p, minus 1 at the target; dropped candidates have
 * p = 0. */
static void mnr_backward(dml_tensor *out)
{
    dml_tensor *s = out->src[0];
    const mnr_cache *m = out->cache;
    const mnr_labels *y = out->ctx;
    float scale = out->fparam[0];
    int rows = s->rows, sym = out->iparam[0], b = out->iparam[1], c = s->cols;
    int lo = y->shard ? y->shard->lo : 0;
    if (b == 0)
        return;
    float g = out->grad[0] * scale / ((float)b * (sym ? 2.0f : 1.0f));
    for (int i = 0; i < rows; i++) {
        float *restrict dv = s->grad + (size_t)i * c;
        const float *restrict e = m->row_e + (size_t)i * c;
        float w = g * m->row_inv[i];
        for (int k = 0; k < c; k++)
            dv[k] += w * e[k];
        dv[lo + i] -= g;
    }
    if (!sym)
        return;
    for (int i = 0; i < rows; i++) {
        const float *e = m->col_e + (size_t)i * b;
        float w = g * m->col_inv[i];
        size_t first, stride;
        float *dt = col_src(out, i, &first, &stride)->grad + first;
        for (int k = 0; k < b; k++)
            dt[(size_t)k * stride] += w * e[k];
        dt[(size_t)(lo + i) * stride] -= g;
    }
}

const dml_op_def dml_op_mnr = {"mnr", mnr_forward, mnr_backward};

dml_tensor *dml_loss_mnr_extra(dml_graph *g, dml_tensor *a, dml_tensor *p, dml_tensor *extra,
                               const int32_t *labels, const int32_t *extra_labels, float scale,
                               int symmetric, const dml_loss_shard *shard)
{
    dml_tensor *an = dml_l2_normalize(g, a), *pn = dml_l2_normalize(g, p);
    dml_tensor *mine = dml_loss_shard_rows(g, an, shard); /* this rank's anchors (all: an) */
    dml_tensor *s = dml_matmul(g, mine, pn, 1), *t = NULL;
    if (extra)
        s = dml_concat_cols(g, s, dml_matmul(g, mine, dml_l2_normalize(g, extra), 1));
    if (shard && symmetric) /* this rank's positives against every anchor */
        t = dml_matmul(g, dml_loss_shard_rows(g, pn, shard), an, 1);
    if (!s || (shard && symmetric && !t))
        return NULL;
    dml_tensor *out = dml_graph_node(g, &dml_op_mnr, 1, 1, s, t, NULL);
    mnr_cache *m = out ? dml_graph_alloc(g, sizeof *m) : NULL;
    mnr_labels *y = m ? dml_graph_alloc(g, sizeof *y) : NULL;
    if (!y)
        return NULL;
    *y = (mnr_labels){labels, labels ? extra_labels : NULL, shard};
    size_t rows = (size_t)s->rows, b = (size_t)p->rows;
    m->row_e = dml_graph_alloc(g, rows * (size_t)s->cols * sizeof(float));
    m->row_inv = dml_graph_alloc(g, rows * sizeof(float));
    m->col_e = symmetric ? dml_graph_alloc(g, rows * b * sizeof(float)) : NULL;
    m->col_inv = symmetric ? dml_graph_alloc(g, rows * sizeof(float)) : NULL;
    m->terms = dml_graph_alloc(g, rows * (symmetric ? 2 : 1) * sizeof(float));
    if (!m->row_e || !m->row_inv || !m->terms || (symmetric && (!m->col_e || !m->col_inv)))
        return NULL;
    out->cache = m;
    out->ctx = y;
    out->fparam[0] = scale;
    out->iparam[0] = symmetric != 0;
    out->iparam[1] = (int)b;
    return dml_graph_run(g, out);
}

dml_tensor *dml_loss_mnr(dml_graph *g, dml_tensor *a, dml_tensor *p, dml_tensor *hard_neg,
                         const int32_t *labels, float scale, int symmetric)
{
    return dml_loss_mnr_extra(g, a, p, hard_neg, labels, NULL, scale, symmetric, NULL);
}

/* loss.type mnr: the row's parameters in the order of p. */
enum { P_SCALE, P_SYMMETRIC, P_MASK_SAME_LABEL, N_PARAMS };

static const dml_loss_param PARAMS[N_PARAMS] = {
    [P_SCALE] = {"scale", DML_LP_FLOAT, 20.0f, 0.0f, INFINITY, 1, NULL,
                 "the cosines' scale (1 / temperature)"},
    [P_SYMMETRIC] = {"symmetric", DML_LP_FLAG, 0, 0, 1, 0, NULL,
                     "also rank each positive's anchor among the batch's anchors"},
    [P_MASK_SAME_LABEL] = {"mask_same_label", DML_LP_FLAG, 1, 0, 1, 0, NULL,
                           "with labels (same_class pairs), drop the candidates of the anchor's "
                           "label"},
};

/* Anchors z against positives zp, and the references (the cross-batch memory's earlier
 * positives) as more candidates for every anchor. */
static dml_tensor *build(const dml_loss_input *in)
{
    const float *p = in->p;
    const int32_t *labels = p[P_MASK_SAME_LABEL] != 0.0f ? in->labels : NULL;
    return dml_loss_mnr_extra(in->g, in->z, in->zp, in->refs, labels,
                              in->refs && labels ? in->ref_labels : NULL, p[P_SCALE],
                              p[P_SYMMETRIC] != 0.0f, in->shard);
}

static const dml_op_def *const OPS[] = {&dml_op_mnr};

const dml_loss_row dml_loss_row_mnr = {
    .name = "mnr",
    .doc = "multiple negatives ranking (Henderson et al. 2017): the batch's other positives are "
           "each anchor's negatives",
    .needs = DML_LOSS_NEEDS_PAIRS,
    .combines = DML_LOSS_WITH_MEMORY | DML_LOSS_WITH_GRADCACHE | DML_LOSS_WITH_QUANTIZATION |
                DML_LOSS_WITH_HEAD | DML_LOSS_WITH_MPI | DML_LOSS_WITH_HARD_NEGATIVES |
                DML_LOSS_WITH_SHARDING,
    .params = PARAMS,
    .n_params = N_PARAMS,
    .ops = OPS,
    .n_ops = 1,
    .build = build,
};
