/* Multiple negatives ranking (Henderson et al. 2017): in-batch softmax retrieval of each
 * anchor's own positive among every positive of the batch (and optional hard negatives). */
#include <math.h>

#include "losses/losses.h"

/* src[0] = S [B, C] of cosines (C = B, or 2B with hard negatives); fparam[0] = scale;
 * iparam[0] = symmetric; ctx = labels or NULL; cache = [2B] the rows' and the columns' log-sum-exp,
 * kept from forward for backward. Candidate j of anchor i is dropped when it is another positive
 * (j < B, j != i) of the anchor's label. */
static int dropped(const int32_t *y, int i, int j, int b)
{
    return y && j < b && j != i && y[j] == y[i];
}

/* Log-sum-exp over row i (by_col 0) or column i of the square part (by_col 1). */
static float lse(const dml_tensor *s, const int32_t *y, float scale, int i, int by_col)
{
    int b = s->rows, n = by_col ? b : s->cols;
    float mx = -INFINITY;
    for (int k = 0; k < n; k++) {
        if (dropped(y, i, k, b))
            continue;
        float v = scale * (by_col ? s->data[(size_t)k * s->cols + i] : s->data[(size_t)i * s->cols + k]);
        mx = v > mx ? v : mx;
    }
    double sum = 0.0;
    for (int k = 0; k < n; k++) {
        if (dropped(y, i, k, b))
            continue;
        float v = scale * (by_col ? s->data[(size_t)k * s->cols + i] : s->data[(size_t)i * s->cols + k]);
        sum += expf(v - mx);
    }
    return mx + (float)log(sum);
}

static void mnr_forward(dml_tensor *out)
{
    const dml_tensor *s = out->src[0];
    const int32_t *y = out->ctx;
    float scale = out->fparam[0];
    int b = s->rows, sym = out->iparam[0];
    float *row_lse = out->cache, *col_lse = row_lse + b;
    double total = 0.0;
    for (int i = 0; i < b; i++) {
        float target = scale * s->data[(size_t)i * s->cols + i];
        row_lse[i] = lse(s, y, scale, i, 0);
        total += row_lse[i] - target;
        if (sym) {
            col_lse[i] = lse(s, y, scale, i, 1);
            total += col_lse[i] - target;
        }
    }
    out->data[0] = b > 0 ? (float)(total / ((double)b * (sym ? 2 : 1))) : 0.0f;
}

static void mnr_backward(dml_tensor *out)
{
    dml_tensor *s = out->src[0];
    const int32_t *y = out->ctx;
    float scale = out->fparam[0];
    int b = s->rows, sym = out->iparam[0], c = s->cols;
    if (b == 0)
        return;
    float g = out->grad[0] * scale / ((float)b * (sym ? 2.0f : 1.0f));
    const float *row_lse = out->cache, *col_lse = row_lse + b;
    for (int i = 0; i < b; i++) {
        float l = row_lse[i];
        for (int k = 0; k < c; k++)
            if (!dropped(y, i, k, b))
                s->grad[(size_t)i * c + k] += g * expf(scale * s->data[(size_t)i * c + k] - l);
        s->grad[(size_t)i * c + i] -= g;
        if (!sym)
            continue;
        l = col_lse[i];
        for (int k = 0; k < b; k++)
            if (!dropped(y, i, k, b))
                s->grad[(size_t)k * c + i] += g * expf(scale * s->data[(size_t)k * c + i] - l);
        s->grad[(size_t)i * c + i] -= g;
    }
}

const dml_op_def dml_op_mnr = {"mnr", mnr_forward, mnr_backward};

dml_tensor *dml_loss_mnr(dml_graph *g, dml_tensor *a, dml_tensor *p, dml_tensor *hard_neg,
                         const int32_t *labels, float scale, int symmetric)
{
    dml_tensor *an = dml_l2_normalize(g, a), *pn = dml_l2_normalize(g, p);
    dml_tensor *s = dml_matmul(g, an, pn, 1);
    if (hard_neg)
        s = dml_concat_cols(g, s, dml_matmul(g, an, dml_l2_normalize(g, hard_neg), 1));
    if (!s)
        return NULL;
    dml_tensor *out = dml_graph_node(g, &dml_op_mnr, 1, 1, s, NULL, NULL);
    if (out && !(out->cache = dml_graph_alloc(g, 2 * (size_t)s->rows * sizeof(float))))
        return NULL;
    if (out) {
        out->ctx = labels;
        out->fparam[0] = scale;
        out->iparam[0] = symmetric != 0;
    }
    return dml_graph_run(g, out);
}
