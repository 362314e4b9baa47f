/* Row-wise ops: L2 normalisation, column slices and concatenation (two-view inputs), and the
 * stacking of two row sets (extra candidates of a loss: mined negatives over a memory's rows). */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

/* ---- l2_normalize: y = x / max(|x|, eps); cache holds the per-row divisor ---- */

/* A row's sum of squares in double, over LANES partial sums: one chain of dependent additions
 * made this the slowest pass of the normalisation. The products are exact in double and the two
 * orders' sums differ ~2^-46 relative, so the float norm is the single chain's but for about
 * one row in millions (an ulp). */
enum { LANES = 8 };

static double sum_squares(const float *restrict x, int n)
{
    double lane[LANES] = {0}, sum = 0.0;
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++)
            lane[l] += (double)x[j + l] * x[j + l];
    for (; j < n; j++)
        sum += (double)x[j] * x[j];
    for (int l = 0; l < LANES; l++)
        sum += lane[l];
    return sum;
}

/* y = x / divisor over one row */
DML_SIMD_CLONES static void divide_row(float *restrict y, const float *restrict x, float divisor,
                                       int n)
{
    for (int j = 0; j < n; j++)
        y[j] = x[j] / divisor;
}

/* dx += (dy - y dot) / divisor over one row */
DML_SIMD_CLONES static void add_normalize_grad(float *restrict dx, const float *restrict dy,
                                               const float *restrict y, float dot, float divisor,
                                               int n)
{
    for (int j = 0; j < n; j++)
        dx[j] += (dy[j] - y[j] * dot) / divisor;
}

static void l2_normalize_rows(void *ctx, int first, int end)
{
    dml_tensor *out = ctx;
    const dml_tensor *x = out->src[0];
    float *divisor = out->cache;
    for (int i = first; i < end; i++) {
        const float *xi = x->data + (size_t)i * x->cols;
        float norm = (float)sqrt(sum_squares(xi, x->cols));
        divisor[i] = norm > DML_NORM_EPS ? norm : DML_NORM_EPS;
        divide_row(out->data + (size_t)i * out->cols, xi, divisor[i], x->cols);
    }
}

static void l2_normalize_forward(dml_tensor *out)
{
    dml_pool_run_rows(l2_normalize_rows, out, out->rows, out->cols);
}

/* Where the norm is above eps: dx = (dy - y (y.dy)) / |x|. Below it the op is x / eps, a
 * linear map, so dx = dy / eps. */
static void l2_normalize_grad_rows(void *ctx, int first, int end)
{
    dml_tensor *out = ctx;
    dml_tensor *x = out->src[0];
    const float *divisor = out->cache;
    for (int i = first; i < end; i++) {
        const float *y = out->data + (size_t)i * out->cols, *dy = out->grad + (size_t)i * out->cols;
        float dot = 0.0f; /* one float chain: the order the gradients were always computed in */
        if (divisor[i] > DML_NORM_EPS)
            for (int j = 0; j < out->cols; j++)
                dot += y[j] * dy[j];
        add_normalize_grad(x->grad + (size_t)i * x->cols, dy, y, dot, divisor[i], out->cols);
    }
}

static void l2_normalize_backward(dml_tensor *out)
{
    dml_pool_run_rows(l2_normalize_grad_rows, out, out->rows, out->cols);
}

const dml_op_def dml_op_l2_normalize = {"l2_normalize", l2_normalize_forward,
                                        l2_normalize_backward};

dml_tensor *dml_l2_normalize(dml_graph *g, dml_tensor *x)
{
    if (!x)
        return NULL;
    dml_tensor *out = dml_graph_node(g, &dml_op_l2_normalize, x->rows, x->cols, x, NULL, NULL);
    if (out && !(out->cache = dml_graph_alloc(g, (size_t)x->rows * sizeof(float))))
        return NULL;
    return dml_graph_run(g, out);
}

/* ---- slice_cols: columns [iparam[0], iparam[0] + cols) of x ---- */
static void slice_cols_forward(dml_tensor *out)
{
    const dml_tensor *x = out->src[0];
    for (int i = 0; i < out->rows; i++)
        memcpy(out->data + (size_t)i * out->cols, x->data + (size_t)i * x->cols + out->iparam[0],
               (size_t)out->cols * sizeof(float));
}

static void slice_cols_backward(dml_tensor *out)
{
    dml_tensor *x = out->src[0];
    for (int i = 0; i < out->rows; i++) {
        float *dx = x->grad + (size_t)i * x->cols + out->iparam[0];
        for (int j = 0; j < out->cols; j++)
            dx[j] += out->grad[(size_t)i * out->cols + j];
    }
}

const dml_op_def dml_op_slice_cols = {"slice_cols", slice_cols_forward, slice_cols_backward};

dml_tensor *dml_slice_cols(dml_graph *g, dml_tensor *x, int offset, int n)
{
    if (!x)
        return NULL;
    DML_ASSERT(offset >= 0 && n >= 0 && offset + n <= x->cols);
    dml_tensor *out = dml_graph_node(g, &dml_op_slice_cols, x->rows, n, x, NULL, NULL);
    if (out)
        out->iparam[0] = offset;
    return dml_graph_run(g, out);
}

/* ---- concat_cols: [a | b] ---- */
static void concat_cols_forward(dml_tensor *out)
{
    const dml_tensor *a = out->src[0], *b = out->src[1];
    for (int i = 0; i < out->rows; i++) {
        float *row = out->data + (size_t)i * out->cols;
        memcpy(row, a->data + (size_t)i * a->cols, (size_t)a->cols * sizeof(float));
        memcpy(row + a->cols, b->data + (size_t)i * b->cols, (size_t)b->cols * sizeof(float));
    }
}

static void concat_cols_backward(dml_tensor *out)
{
    for (int s = 0, offset = 0; s < 2; offset += out->src[s]->cols, s++) {
        dml_tensor *x = out->src[s];
        if (!x->grad)
            continue;
        for (int i = 0; i < out->rows; i++)
            for (int j = 0; j < x->cols; j++)
                x->grad[(size_t)i * x->cols + j] += out->grad[(size_t)i * out->cols + offset + j];
    }
}

const dml_op_def dml_op_concat_cols = {"concat_cols", concat_cols_forward, concat_cols_backward};

dml_tensor *dml_concat_cols(dml_graph *g, dml_tensor *a, dml_tensor *b)
{
    if (!a || !b)
        return NULL;
    DML_ASSERT(a->rows == b->rows);
    return dml_graph_run(g, dml_graph_node(g, &dml_op_concat_cols, a->rows, a->cols + b->cols, a, b,
                                           NULL));
}

/* ---- concat_rows: a over b ---- */
static void concat_rows_forward(dml_tensor *out)
{
    const dml_tensor *a = out->src[0], *b = out->src[1];
    size_t na = (size_t)a->rows * a->cols;
    memcpy(out->data, a->data, na * sizeof(float));
    memcpy(out->data + na, b->data, (size_t)b->rows * b->cols * sizeof(float));
}

static void concat_rows_backward(dml_tensor *out)
{
    size_t offset = 0;
    for (int s = 0; s < 2; s++) {
        dml_tensor *x = out->src[s];
        size_t n = (size_t)x->rows * x->cols;
        for (size_t k = 0; x->grad && k < n; k++)
            x->grad[k] += out->grad[offset + k];
        offset += n;
    }
}

const dml_op_def dml_op_concat_rows = {"concat_rows", concat_rows_forward, concat_rows_backward};

dml_tensor *dml_concat_rows(dml_graph *g, dml_tensor *a, dml_tensor *b)
{
    if (!a || !b)
        return NULL;
    DML_ASSERT(a->cols == b->cols);
    return dml_graph_run(g, dml_graph_node(g, &dml_op_concat_rows, a->rows + b->rows, a->cols, a, b,
                                           NULL));
}
