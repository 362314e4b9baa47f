/* DQN's pairwise cosine loss (Cao et al. 2016): mean over i != j of (s_ij - cos_ij)^2. */
#include "losses/loss_table.h"

/* src[0] = C [B,B], the cosine matrix; ctx: cosine_pair_ctx. In a shard C is [n, B], the rows of
 * anchors lo .. lo + n, and the sum of squares is summed over the ranks (the divisor B (B - 1)
 * is the global batch's). */
typedef struct cosine_pair_ctx {
    const int32_t *labels;       /* [B] */
    const dml_loss_shard *shard; /* NULL: row i of C is the batch's row i */
} cosine_pair_ctx;

static void cosine_pair_forward(dml_tensor *out)
{
    const dml_tensor *c = out->src[0];
    const cosine_pair_ctx *x = out->ctx;
    const int32_t *y = x->labels;
    int b = c->cols, lo = x->shard ? x->shard->lo : 0;
    double sum = 0.0;
    for (int i = 0; i < c->rows; i++)
        for (int j = 0; j < b; j++)
            if (lo + i != j) {
                float e = (y[lo + i] == y[j] ? 1.0f : -1.0f) - c->data[(size_t)i * b + j];
                sum += (double)e * e;
            }
    if (x->shard) /* every rank's anchors: the global sum */
        x->shard->sum(x->shard->ctx, &sum, 1);
    out->data[0] = b > 1 ? (float)(sum / ((double)b * (b - 1))) : 0.0f;
}

static void cosine_pair_backward(dml_tensor *out)
{
    dml_tensor *c = out->src[0];
    const cosine_pair_ctx *x = out->ctx;
    const int32_t *y = x->labels;
    int b = c->cols, lo = x->shard ? x->shard->lo : 0;
    if (b < 2)
        return;
    float g = out->grad[0] / ((float)b * (float)(b - 1));
    for (int i = 0; i < c->rows; i++)
        for (int j = 0; j < b; j++)
            if (lo + i != j) {
                float e = (y[lo + i] == y[j] ? 1.0f : -1.0f) - c->data[(size_t)i * b + j];
                c->grad[(size_t)i * b + j] -= 2.0f * g * e;
            }
}

const dml_op_def dml_op_cosine_pair = {"cosine_pair", cosine_pair_forward, cosine_pair_backward};

dml_tensor *dml_loss_cosine_pair(dml_graph *g, dml_tensor *z, const int32_t *labels,
                                 const dml_loss_shard *shard)
{
    dml_tensor *zn = dml_l2_normalize(g, z);
    /* the shard's rows normalised on their own: the same rows as zn's */
    dml_tensor *an = shard ? dml_l2_normalize(g, dml_loss_shard_rows(g, z, shard)) : zn;
    dml_tensor *c = dml_matmul(g, an, zn, 1);
    if (!c)
        return NULL;
    dml_tensor *out = dml_graph_node(g, &dml_op_cosine_pair, 1, 1, c, NULL, NULL);
    cosine_pair_ctx *x = out ? dml_graph_alloc(g, sizeof *x) : NULL;
    if (!x)
        return NULL;
    *x = (cosine_pair_ctx){labels, shard};
    out->ctx = x;
    return dml_graph_run(g, out);
}

static dml_tensor *build(const dml_loss_input *in)
{
    return dml_loss_cosine_pair(in->g, in->z, in->labels, in->shard);
}

static const dml_op_def *const OPS[] = {&dml_op_cosine_pair};

const dml_loss_row dml_loss_row_cosine_pair = {
    .name = "cosine_pair",
    .doc = "DQN's pairwise cosine loss (Cao et al. 2016): cosine +1 within a class, -1 across",
    .needs = DML_LOSS_NEEDS_LABELS,
    .combines = DML_LOSS_WITH_QUANTIZATION | DML_LOSS_WITH_HEAD | DML_LOSS_WITH_MPI |
                DML_LOSS_WITH_SHARDING,
    .ops = OPS,
    .n_ops = 1,
    .build = build,
};
