/* Reconstruction losses for autoencoders: MSE is nn's dml_mse; BCE works on logits. */
#include <math.h>

#include "losses/loss_table.h"

/* max(x,0) - x t + log(1 + exp(-|x|)): the stable form of -t log s(x) - (1-t) log(1-s(x)). */
static void bce_forward(dml_tensor *out)
{
    const dml_tensor *x = out->src[0], *t = out->src[1];
    size_t n = (size_t)x->rows * x->cols;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = x->data[i];
        sum += (v > 0.0f ? v : 0.0f) - v * t->data[i] + log1pf(expf(-fabsf(v)));
    }
    out->data[0] = n > 0 ? (float)(sum / (double)n) : 0.0f;
}

static void bce_backward(dml_tensor *out)
{
    dml_tensor *x = out->src[0], *t = out->src[1];
    size_t n = (size_t)x->rows * x->cols;
    if (n == 0)
        return;
    float g = out->grad[0] / (float)n;
    for (size_t i = 0; i < n; i++) {
        float v = x->data[i];
        float s = v >= 0.0f ? 1.0f / (1.0f + expf(-v)) : expf(v) / (1.0f + expf(v));
        if (x->grad)
            x->grad[i] += g * (s - t->data[i]);
        if (t->grad)
            t->grad[i] -= g * v;
    }
}

const dml_op_def dml_op_bce_logits = {"bce_logits", bce_forward, bce_backward};

dml_tensor *dml_loss_bce_logits(dml_graph *g, dml_tensor *logits, dml_tensor *target)
{
    if (!logits || !target)
        return NULL;
    DML_ASSERT(logits->rows == target->rows && logits->cols == target->cols);
    return dml_graph_run(g, dml_graph_node(g, &dml_op_bce_logits, 1, 1, logits, target, NULL));
}

static const dml_op_def *const OPS[] = {&dml_op_bce_logits};

/* Its build is NULL: the trainer composes it from the decoder (loss.reconstruction, mse or
 * bce, is a key of its own: loss.reconstruction_weight's term uses it with any loss). */
const dml_loss_row dml_loss_row_reconstruction = {
    .name = "reconstruction",
    .doc = "an autoencoder's reconstruction of its input rows (loss.reconstruction: mse or bce)",
    .combines = DML_LOSS_WITH_QUANTIZATION | DML_LOSS_WITH_MPI,
    .ops = OPS,
    .n_ops = 1,
};
