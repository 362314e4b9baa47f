/* Linear-algebra ops: matmul, dense (x W^T + b), add, scale, reductions, mean squared error. */
#include <string.h>

#include "nn/nn.h"

#define N(t) ((size_t)(t)->rows * (t)->cols)

/* The element-wise loops below work on restrict locals: through `out` the compiler must assume
 * that a store to one array can change another (or out's own fields), and would not vectorise. */

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

/* The element-wise passes around dense's GEMMs, with wider-vector clones (nn.h). */
DML_SIMD_CLONES static void relu_in_place(float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

/* dy = 0 where relu clamped the output y (the gradient at exactly 0 taken as 0, as relu's) */
DML_SIMD_CLONES static void mask_clamped(float *restrict dy, const float *restrict y, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = dy[i]; /* loaded unconditionally, so the select vectorises */
        dy[i] = y[i] > 0.0f ? g : 0.0f;
    }
}

/* db[j] += dy_row[j]: the bias gradient summed row by row, so each sum keeps one order on
 * every machine */
DML_SIMD_CLONES static void add_row(float *restrict db, const float *restrict dy_row, size_t n)
{
    for (size_t j = 0; j < n; j++)
        db[j] += dy_row[j];
}

/* ---- dense: out = x W^T + b; x [n, in], W [out, in], b [1, out]. One node where a matmul and
 * a bias add would take two: the bias rows are written first and the GEMM adds onto them, so
 * the output is written once and there is no separate bias pass, forward or backward.
 * dense_relu is the same node with relu applied in place: the layer before an activation,
 * without the activation's own output and gradient buffers and passes. ---- */
extern const dml_op_def dml_op_dense_relu;

static int applies_relu(const dml_tensor *out)
{
    return out->op == &dml_op_dense_relu;
}

/* Rows [first, end) of the output set to the bias, before the GEMM adds onto them. */
static void bias_rows(void *ctx, int first, int end)
{
    dml_tensor *out = ctx;
    const size_t cols = (size_t)out->cols;
    for (size_t i = (size_t)first; i < (size_t)end; i++)
        memcpy(out->data + i * cols, out->src[2]->data, cols * sizeof(float));
}

static void relu_rows(void *ctx, int first, int end)
{
    dml_tensor *out = ctx;
    const size_t cols = (size_t)out->cols;
    relu_in_place(out->data + (size_t)first * cols, (size_t)(end - first) * cols);
}

static void dense_forward(dml_tensor *out)
{
    const dml_tensor *x = out->src[0], *w = out->src[1];
    dml_pool_run_rows(bias_rows, out, out->rows, out->cols);
    dml_gemm(0, 1, out->rows, out->cols, x->cols, 1.0f, x->data, x->cols, w->data, w->cols, 1.0f,
             out->data, out->cols);
    if (applies_relu(out))
        dml_pool_run_rows(relu_rows, out, out->rows, out->cols);
}

/* Through relu, dy masked in place (every consumer of this node has already run); then the bias
 * gradient, summed over the rows in order. Columns [c0, c1) of every row: a large layer's
 * columns are split between dml's threads, each bias sum on one thread. */
static void mask_and_bias_columns(dml_tensor *out, size_t c0, size_t c1)
{
    float *dy = out->grad, *db = out->src[2]->grad;
    const size_t cols = (size_t)out->cols;
    for (size_t i = 0; i < (size_t)out->rows; i++) {
        float *row = dy + i * cols + c0;
        if (applies_relu(out))
            mask_clamped(row, out->data + i * cols + c0, c1 - c0);
        if (db)
            add_row(db + c0, row, c1 - c0);
    }
}

static void mask_and_bias_part(void *ctx, int part, int parts)
{
    dml_tensor *out = ctx;
    size_t s, e;
    dml_pool_range((size_t)out->cols, DML_GEMM_BLOCK_ALIGN, part, parts, &s, &e);
    if (s < e)
        mask_and_bias_columns(out, s, e);
}

static void dense_backward(dml_tensor *out)
{
    dml_tensor *x = out->src[0], *w = out->src[1];
    int n = out->rows, d_out = out->cols, d_in = x->cols;
    float *dy = out->grad;
    if (applies_relu(out) || out->src[2]->grad) {
        if (dml_gemm_blocking(n, d_in, d_out) == DML_GEMM_WHOLE) /* a small layer */
            mask_and_bias_columns(out, 0, (size_t)d_out);
        else
            dml_pool_run(mask_and_bias_part, out);
    }
    if (x->grad) /* dx[n, in] += dy[n, out] @ W[out, in] */
        dml_gemm(0, 0, n, d_in, d_out, 1.0f, dy, d_out, w->data, d_in, 1.0f, x->grad, d_in);
    if (w->grad) /* dW[out, in] += dy^T[out, n] @ x[n, in] */
        dml_gemm(1, 0, d_out, d_in, n, 1.0f, dy, d_out, x->data, d_in, 1.0f, w->grad, d_in);
}

const dml_op_def dml_op_dense = {"dense", dense_forward, dense_backward};
const dml_op_def dml_op_dense_relu = {"dense_relu", dense_forward, dense_backward};

static dml_tensor *dense_node(dml_graph *g, const dml_op_def *def, dml_tensor *x, dml_tensor *w,
                              dml_tensor *b)
{
    if (!x || !w || !b)
        return NULL;
    DML_ASSERT(w->cols == x->cols && b->rows == 1 && b->cols == w->rows);
    return dml_graph_run(g, dml_graph_node(g, def, x->rows, w->rows, x, w, b));
}

dml_tensor *dml_dense(dml_graph *g, dml_tensor *x, dml_tensor *w, dml_tensor *b)
{
    return dense_node(g, &dml_op_dense, x, w, b);
}

dml_tensor *dml_dense_relu(dml_graph *g, dml_tensor *x, dml_tensor *w, dml_tensor *b)
{
    return dense_node(g, &dml_op_dense_relu, x, w, b);
}

/* ---- add: out = a + b ---- */
static void add_forward(dml_tensor *out)
{
    const float *restrict a = out->src[0]->data, *restrict b = out->src[1]->data;
    float *restrict y = out->data;
    for (size_t i = 0, n = N(out); i < n; i++)
        y[i] = a[i] + b[i];
}

static void add_backward(dml_tensor *out)
{
    const float *restrict dy = out->grad;
    for (int s = 0; s < 2; s++) {
        float *restrict dx = out->src[s]->grad;
        if (dx)
            for (size_t i = 0, n = N(out); i < n; i++)
                dx[i] += dy[i];
    }
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
    const float *restrict x = out->src[0]->data;
    float *restrict y = out->data;
    const float s = out->fparam[0], b = out->fparam[1];
    for (size_t i = 0, n = N(out); i < n; i++)
        y[i] = s * x[i] + b;
}

static void scale_backward(dml_tensor *out)
{
    const float *restrict dy = out->grad;
    float *restrict dx = out->src[0]->grad;
    const float s = out->fparam[0];
    for (size_t i = 0, n = N(out); i < n; i++)
        dx[i] += s * dy[i];
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
    float *restrict dx = out->src[0]->grad;
    const float d = out->grad[0] * out->fparam[0];
    for (size_t i = 0, n = N(out->src[0]); i < n; i++)
        dx[i] += d;
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

/* sum (x - y)^2 over [0, n) in double, over LANES partial sums that do not wait on each other */
static double sum_sq_diff_stretch(const float *restrict x, const float *restrict y, size_t n)
{
    enum { LANES = 8 };
    double lane[LANES] = {0}, sum = 0.0;
    size_t k = 0;
    for (; k + LANES <= n; k += LANES)
        for (int l = 0; l < LANES; l++) {
            double d = (double)x[k + l] - y[k + l];
            lane[l] += d * d;
        }
    for (; k < n; k++) {
        double d = (double)x[k] - y[k];
        sum += d * d;
    }
    for (int l = 0; l < LANES; l++)
        sum += lane[l];
    return sum;
}

/* The sum is cut into a fixed number of stretches whatever the thread count, each summed on its
 * own and their sums added in order: the same bits on any number of threads (as the gradient
 * norm's, optim/optim.c). */
enum { SQ_DIFF_STRETCHES = 16 };
typedef struct {
    const float *x, *y;
    size_t n;
    double sums[SQ_DIFF_STRETCHES];
} sq_diff_job;

static void sq_diff_stretch(void *ctx, int k, int n_stretches)
{
    sq_diff_job *job = ctx;
    size_t s, e;
    dml_pool_range(job->n, 16, k, n_stretches, &s, &e);
    job->sums[k] = sum_sq_diff_stretch(job->x + s, job->y + s, e - s);
}

double dml_sum_sq_diff(const float *x, const float *y, size_t n)
{
    sq_diff_job job = {x, y, n, {0}};
    dml_pool_run_chunks(sq_diff_stretch, &job, SQ_DIFF_STRETCHES, n);
    double sum = 0.0;
    for (int k = 0; k < SQ_DIFF_STRETCHES; k++)
        sum += job.sums[k];
    return sum;
}

static void mse_forward(dml_tensor *out)
{
    dml_tensor *a = out->src[0], *b = out->src[1];
    double acc = dml_sum_sq_diff(a->data, b->data, N(a));
    out->data[0] = N(a) > 0 ? (float)(acc / (double)N(a)) : 0.0f;
}

/* The gradient of rows [first, end): element-wise, a row pass. */
static void mse_grad_rows(void *ctx, int first, int end)
{
    const dml_tensor *out = ctx, *a = out->src[0], *b = out->src[1];
    const size_t s = (size_t)first * a->cols, e = (size_t)end * a->cols;
    const float k = 2.0f * out->grad[0] / (float)N(a);
    const float *restrict x = a->data, *restrict t = b->data;
    float *restrict dx = a->grad, *restrict dt = b->grad;
    if (dx)
        for (size_t i = s; i < e; i++)
            dx[i] += k * (x[i] - t[i]);
    if (dt)
        for (size_t i = s; i < e; i++)
            dt[i] -= k * (x[i] - t[i]);
}

static void mse_backward(dml_tensor *out)
{
    const dml_tensor *a = out->src[0];
    if (N(a) == 0)
        return;
    dml_pool_run_rows(mse_grad_rows, out, a->rows, a->cols);
}

const dml_op_def dml_op_mse = {"mse", mse_forward, mse_backward};

dml_tensor *dml_mse(dml_graph *g, dml_tensor *a, dml_tensor *b)
{
    if (!a || !b)
        return NULL;
    DML_ASSERT(a->rows == b->rows && a->cols == b->cols);
    return dml_graph_run(g, dml_graph_node(g, &dml_op_mse, 1, 1, a, b, NULL));
}
