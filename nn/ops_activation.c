/* Element-wise activations. Each backward reads what forward cached: the output (tanh,
 * sigmoid) or the input (relu, leaky relu, gelu), so no extra memory is needed. */
#include <math.h>

#include "nn/nn.h"

#define N(t) ((size_t)(t)->rows * (t)->cols)

/* Every loop works on restrict locals: through `out` the compiler must assume that a store to
 * one array can change another (or out's own fields), and it would not vectorise. */

/* ---- relu (the gradient at exactly 0 is taken as 0) ---- */
static void relu_forward(dml_tensor *out)
{
    const float *restrict x = out->src[0]->data;
    float *restrict y = out->data;
    for (size_t i = 0, n = N(out); i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

static void relu_backward(dml_tensor *out)
{
    const float *restrict x = out->src[0]->data, *restrict dy = out->grad;
    float *restrict dx = out->src[0]->grad;
    for (size_t i = 0, n = N(out); i < n; i++) {
        float g = dy[i]; /* loaded unconditionally, so the select vectorises */
        dx[i] += x[i] > 0.0f ? g : 0.0f;
    }
}

/* ---- leaky relu, slope in fparam[0] ---- */
static void leaky_relu_forward(dml_tensor *out)
{
    const float *restrict x = out->src[0]->data;
    float *restrict y = out->data;
    const float slope = out->fparam[0];
    for (size_t i = 0, n = N(out); i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : slope * x[i];
}

static void leaky_relu_backward(dml_tensor *out)
{
    const float *restrict x = out->src[0]->data, *restrict dy = out->grad;
    float *restrict dx = out->src[0]->grad;
    const float slope = out->fparam[0];
    for (size_t i = 0, n = N(out); i < n; i++) {
        float g = dy[i];
        dx[i] += x[i] > 0.0f ? g : slope * g;
    }
}

/* ---- tanh: d = 1 - y^2 ---- */
static void tanh_forward(dml_tensor *out)
{
    const float *restrict x = out->src[0]->data;
    float *restrict y = out->data;
    for (size_t i = 0, n = N(out); i < n; i++)
        y[i] = tanhf(x[i]);
}

static void tanh_backward(dml_tensor *out)
{
    const float *restrict y = out->data, *restrict dy = out->grad;
    float *restrict dx = out->src[0]->grad;
    for (size_t i = 0, n = N(out); i < n; i++)
        dx[i] += (1.0f - y[i] * y[i]) * dy[i];
}

/* ---- gelu, exact: x * Phi(x); d = Phi(x) + x * phi(x) ---- */
static void gelu_forward(dml_tensor *out)
{
    const float *restrict x = out->src[0]->data;
    float *restrict y = out->data;
    for (size_t i = 0, n = N(out); i < n; i++)
        y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

static void gelu_backward(dml_tensor *out)
{
    const float *restrict x = out->src[0]->data, *restrict dy = out->grad;
    float *restrict dx = out->src[0]->grad;
    const float inv_sqrt_2pi = 0.3989422804014327f;
    for (size_t i = 0, n = N(out); i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x[i] * x[i]);
        dx[i] += (cdf + x[i] * pdf) * dy[i];
    }
}

/* ---- sigmoid: d = y (1 - y) ---- */
static void sigmoid_forward(dml_tensor *out)
{
    const float *restrict x = out->src[0]->data;
    float *restrict y = out->data;
    for (size_t i = 0, n = N(out); i < n; i++)
        y[i] = x[i] >= 0.0f ? 1.0f / (1.0f + expf(-x[i])) : expf(x[i]) / (1.0f + expf(x[i]));
}

static void sigmoid_backward(dml_tensor *out)
{
    const float *restrict y = out->data, *restrict dy = out->grad;
    float *restrict dx = out->src[0]->grad;
    for (size_t i = 0, n = N(out); i < n; i++)
        dx[i] += y[i] * (1.0f - y[i]) * dy[i];
}

const dml_op_def dml_op_relu = {"relu", relu_forward, relu_backward};
const dml_op_def dml_op_leaky_relu = {"leaky_relu", leaky_relu_forward, leaky_relu_backward};
const dml_op_def dml_op_tanh = {"tanh", tanh_forward, tanh_backward};
const dml_op_def dml_op_gelu = {"gelu", gelu_forward, gelu_backward};
const dml_op_def dml_op_sigmoid = {"sigmoid", sigmoid_forward, sigmoid_backward};

static dml_tensor *unary(dml_graph *g, const dml_op_def *def, dml_tensor *x, float param)
{
    if (!x)
        return NULL;
    dml_tensor *out = dml_graph_node(g, def, x->rows, x->cols, x, NULL, NULL);
    if (out)
        out->fparam[0] = param;
    return dml_graph_run(g, out);
}

dml_tensor *dml_relu(dml_graph *g, dml_tensor *x) { return unary(g, &dml_op_relu, x, 0.0f); }
dml_tensor *dml_tanh(dml_graph *g, dml_tensor *x) { return unary(g, &dml_op_tanh, x, 0.0f); }
dml_tensor *dml_gelu(dml_graph *g, dml_tensor *x) { return unary(g, &dml_op_gelu, x, 0.0f); }
dml_tensor *dml_sigmoid(dml_graph *g, dml_tensor *x) { return unary(g, &dml_op_sigmoid, x, 0.0f); }

dml_tensor *dml_leaky_relu(dml_graph *g, dml_tensor *x, float slope)
{
    return unary(g, &dml_op_leaky_relu, x, slope);
}
