/* Linear-algebra ops: matmul, bias, add, scale, reductions, mean squared error. */
#include <string.h>

#include "nn/nn.h"

#define N(t) ((size_t)(t)->rows * (t)->cols)

/* ---- matmul: out = a @ b, or a @ b^T when iparam[0] (trans_b) ---- */
static void matmul_forward(dml_tensor *out)
{
    dml_tensor *a = out->src[0], *b = out->src[1];
    int tb = out->iparam[0];
    dml_gemm(0, tb, out->rows, out->cols, a->cols, 1.0f, a->data, a->cols, b->data, b->cols, 0.0f,
             out->data, out->cols);
}

static void matmul_backward(dml_tensor *out)
{
    dml_tensor *a = out->src[0], *b = out->src[1];
    int tb = out->iparam[0], m = out->rows, n = out->cols, k = a->cols;
    if (a->grad) /* da[m,k] += dout[m,n] @ op(b)^T */
        dml_gemm(0, !tb, m, k, n, 1.0f, out->grad, n, b->data, b->cols, 1.0f, a->grad, k);
    if (b->grad && tb) /* db[n,k] += dout^T[n,m] @ a[m,k] */
        dml_gemm(1, 0, n, k, m, 1.0f, out->grad, n, a->data, k, 1.0f, b->grad, k);
    else if (b->grad) /* db[k,n] += a^T[k,m] @ dout[m,n] */
        dml_gemm(1, 0, k, n, m, 1.0f, a->data, k, out->grad, n, 1.0f, b->grad, n);
}

const dml_op_def dml_op_matmul = {"matmul", matmul_forward, matmul_backward};

dml_tensor *dml_matmul(dml_graph *g, dml_tensor *a, dml_tensor *b, int trans_b)
{
    if (!a || !b)
        return NULL;
    DML_ASSERT(trans_b ? a->cols == b->cols : a->cols == b->rows);
    dml_tensor *out = dml_graph_node(g, &dml_op_matmul, a->rows, trans_b ? b->rows : b->cols, a, b,
                                     NULL);
    if (out)
        out->iparam[0] = trans_b != 0;
    return dml_graph_run(g, out);
}

/* ---- add_bias: out[i,j] = x[i,j] + bias[j] ---- */
static void add_bias_forward(dml_tensor *out)
{
    const float *x = out->src[0]->data, *b = out->src[1]->data;
    for (int i = 0; i < out->rows; i++)
        for (int j = 0; j < out->cols; j++)
            out->data[(size_t)i * out->cols + j] = x[(size_t)i * out->cols + j] + b[j];
}

static void add_bias_backward(dml_tensor *out)
{
    dml_tensor *x = out->src[0], *b = out->src[1];
    for (int i = 0; i < out->rows; i++) {
        const float *d = out->grad + (size_t)i * out->cols;
        if (x->grad)
            for (int j = 0; j < out->cols; j++)
                x->grad[(size_t)i * out->cols + j] += d[j];
        if (b->grad)
            for (int j = 0; j < out->cols; j++)
                b->grad[j] += d[j];
    }
}

const dml_op_def dml_op_add_bias = {"add_bias", add_bias_forward, add_bias_backward};

dml_tensor *dml_add_bias(dml_graph *g, dml_tensor *x, dml_tensor *bias)
{
    if (!x || !bias)
        return NULL;
    DML_ASSERT(bias->rows == 1 && bias->cols == x->cols);
    return dml_graph_run(g, dml_graph_node(g, &dml_op_add_bias, x->rows, x->cols, x, bias, NULL));
}

/* ---- add: out = a + b ---- */
static void add_forward(dml_tensor *out)
{
    const float *a = out->src[0]->data, *b = out->src[1]->data;
    for (size_t i = 0; i < N(out); i++)
        out->data[i] = a[i] + b[i];
}

static void add_backward(dml_tensor *out)
{
    for (int s = 0; s < 2; s++)
        if (out->src[s]->grad)
            for (size_t i = 0; i < N(out); i++)
                out->src[s]->grad[i] += out->grad[i];
}

const dml_op_def dml_op_add = {"add", add_forward, add_backward};

dml_tensor *dml_add(dml_graph *g, dml_tensor *a, dml_tensor *b)
{
    if (!a || !b)
        return NULL;
    DML_ASSERT(a->rows == b->rows && a->cols == b->cols);
    return dml_graph_run(g, dml_graph_node(g, &dml_op_add, a->rows, a->cols, a, b, NULL));
}

/* ---- scale: out = s * x + b, s and b in fparam ---- */
static void scale_forward(dml_tensor *out)
{
    for (size_t i = 0; i < N(out); i++)
        out->data[i] = out->fparam[0] * out->src[0]->data[i] + out->fparam[1];
}

static void scale_backward(dml_tensor *out)
{
    for (size_t i = 0; i < N(out); i++)
        out->src[0]->grad[i] += out->fparam[0] * out->grad[i];
}

const dml_op_def dml_op_scale = {"scale", scale_forward, scale_backward};

dml_tensor *dml_affine(dml_graph *g, dml_tensor *x, float s, float b)
{
    if (!x)
        return NULL;
    dml_tensor *out = dml_graph_node(g, &dml_op_scale, x->rows, x->cols, x, NULL, NULL);
    if (out) {
        out->fparam[0] = s;
        out->fparam[1] = b;
    }
    return dml_graph_run(g, out);
}

dml_tensor *dml_scale(dml_graph *g, dml_tensor *x, float s)
{
    return dml_affine(g, x, s, 0.0f);
}

/* ---- sum and mean: one op, fparam[0] is the factor (1 or 1/n) ---- */
static void sum_forward(dml_tensor *out)
{
    dml_tensor *x = out->src[0];
    double acc = 0.0;
    for (size_t i = 0; i < N(x); i++)
        acc += x->data[i];
    out->data[0] = (float)(acc * out->fparam[0]);
}

static void sum_backward(dml_tensor *out)
{
    dml_tensor *x = out->src[0];
    float d = out->grad[0] * out->fparam[0];
    for (size_t i = 0; i < N(x); i++)
        x->grad[i] += d;
}

const dml_op_def dml_op_sum = {"sum", sum_forward, sum_backward};

static dml_tensor *reduce(dml_graph *g, dml_tensor *x, int mean)
{
    if (!x)
        return NULL;
    dml_tensor *out = dml_graph_node(g, &dml_op_sum, 1, 1, x, NULL, NULL);
    if (out)
        out->fparam[0] = mean && N(x) > 0 ? 1.0f / (float)N(x) : 1.0f;
    return dml_graph_run(g, out);
}

dml_tensor *dml_sum(dml_graph *g, dml_tensor *x)
{
    return reduce(g, x, 0);
}

dml_tensor *dml_mean(dml_graph *g, dml_tensor *x)
{
    return reduce(g, x, 1);
}

/* ---- mse: mean((a - b)^2) ---- */
static void mse_forward(dml_tensor *out)
{
    dml_tensor *a = out->src[0], *b = out->src[1];
    double acc = 0.0;
    for (size_t i = 0; i < N(a); i++) {
        double d = (double)a->data[i] - b->data[i];
        acc += d * d;
    }
    out->data[0] = N(a) > 0 ? (float)(acc / (double)N(a)) : 0.0f;
}

static void mse_backward(dml_tensor *out)
{
    dml_tensor *a = out->src[0], *b = out->src[1];
    if (N(a) == 0)
        return;
    float k = 2.0f * out->grad[0] / (float)N(a);
    for (size_t i = 0; i < N(a); i++) {
        float d = k * (a->data[i] - b->data[i]);
        if (a->grad)
            a->grad[i] += d;
        if (b->grad)
            b->grad[i] -= d;
    }
}

const dml_op_def dml_op_mse = {"mse", mse_forward, mse_backward};

dml_tensor *dml_mse(dml_graph *g, dml_tensor *a, dml_tensor *b)
{
    if (!a || !b)
        return NULL;
    DML_ASSERT(a->rows == b->rows && a->cols == b->cols);
    return dml_graph_run(g, dml_graph_node(g, &dml_op_mse, 1, 1, a, b, NULL));
}
