/* Contrastive loss (Hadsell, Chopra & LeCun 2006) over all ordered pairs of a batch. */
#include <math.h>

#include "losses/losses.h"

/* fparam: pos_margin, neg_margin; iparam: power, reduction; ctx: labels; cache: the divisor. */
static float pair_term(float d, int same, float pm, float nm, int power, float *slope)
{
    float h = same ? d - pm : nm - d;
    if (h <= 0.0f) {
        *slope = 0.0f;
        return 0.0f;
    }
    float sign = same ? 1.0f : -1.0f;
    *slope = power == 2 ? 2.0f * h * sign : sign;
    return power == 2 ? h * h : h;
}

static void contrastive_forward(dml_tensor *out)
{
    const dml_tensor *d = out->src[0];
    const int32_t *y = out->ctx;
    int b = d->rows;
    double sum = 0.0;
    long nonzero = 0;
    float slope;
    for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++) {
            if (i == j)
                continue;
            float l = pair_term(d->data[(size_t)i * b + j], y[i] == y[j], out->fparam[0],
                                out->fparam[1], out->iparam[0], &slope);
            sum += l;
            nonzero += l > 0.0f;
        }
    long pairs = (long)b * (b - 1);
    float *divisor = out->cache;
    *divisor = (float)(out->iparam[1] == DML_REDUCE_MEAN_NONZERO ? nonzero : pairs);
    out->data[0] = *divisor > 0.0f ? (float)(sum / *divisor) : 0.0f;
}

static void contrastive_backward(dml_tensor *out)
{
    dml_tensor *d = out->src[0];
    const int32_t *y = out->ctx;
    const float *divisor = out->cache;
    int b = d->rows;
    if (*divisor == 0.0f)
        return;
    float g = out->grad[0] / *divisor, slope;
    for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++) {
            if (i == j)
                continue;
            pair_term(d->data[(size_t)i * b + j], y[i] == y[j], out->fparam[0], out->fparam[1],
                      out->iparam[0], &slope);
            d->grad[(size_t)i * b + j] += g * slope;
        }
}

const dml_op_def dml_op_contrastive = {"contrastive", contrastive_forward, contrastive_backward};

dml_tensor *dml_loss_contrastive(dml_graph *g, dml_tensor *d, const int32_t *labels,
                                 float pos_margin, float neg_margin, int power,
                                 dml_reduction reduction)
{
    if (!d)
        return NULL;
    DML_ASSERT(d->rows == d->cols && (power == 1 || power == 2));
    dml_tensor *out = dml_graph_node(g, &dml_op_contrastive, 1, 1, d, NULL, NULL);
    if (!out || !(out->cache = dml_graph_alloc(g, sizeof(float))))
        return NULL;
    out->ctx = labels;
    out->fparam[0] = pos_margin;
    out->fparam[1] = neg_margin;
    out->iparam[0] = power;
    out->iparam[1] = reduction;
    return dml_graph_run(g, out);
}
