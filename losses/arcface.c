/* Margin softmax losses over learned class weights: ArcFace (Deng et al. 2019, an additive
 * angular margin), CosFace (Wang et al. 2018, an additive cosine margin), each with optional
 * sub-centres (Deng et al. 2020: K weights per class, the closest counts). One op serves both:
 * they differ only in how the true class's cosine is moved. PML's ArcFaceLoss, CosFaceLoss and
 * SubCenterArcFaceLoss are the reference (margin in degrees for ArcFace, as PML takes it). */
#include <math.h>

#include "losses/loss_table.h"

enum { MARGIN_ARC, MARGIN_COS };

typedef struct margin_cache {
    float *p;     /* [B, C]: the softmax over the classes' logits */
    int32_t *arg; /* [B, C]: the sub-centre holding each class's largest cosine */
    float *dmod;  /* [B]: d(moved target cosine) / d(target cosine) */
} margin_cache;

/* The true class's cosine t moved by the margin; *d its derivative in t. */
static double moved_target(int kind, double t, double m, double *d)
{
    if (kind == MARGIN_COS) {
        *d = 1.0;
        return t - m;
    }
    /* PML clamps t to [-1, 1] before acos. The slope sin(theta + m) / sin(theta) is unbounded
     * as |t| reaches 1, where it is taken as 0 (the clamp's); a float t inside is at most
     * 1 - 2^-24 from it, so sin(theta) >= 3.4e-4 and the slope stays finite. */
    if (t <= -1.0 || t >= 1.0) {
        *d = 0.0;
        return cos((t < 0.0 ? 3.14159265358979323846 : 0.0) + m);
    }
    double theta = acos(t);
    *d = sin(theta + m) / sqrt(1.0 - t * t);
    return cos(theta + m);
}

/* src[0] = cos [B, C * K]; ctx = labels; iparam: K, kind, C; fparam: margin, scale. */
static void margin_forward(dml_tensor *out)
{
    const dml_tensor *s = out->src[0];
    const int32_t *y = out->ctx;
    margin_cache *mc = out->cache;
    int b = s->rows, k = out->iparam[0], kind = out->iparam[1], nc = out->iparam[2];
    double m = out->fparam[0], scale = out->fparam[1], total = 0.0;
    for (int i = 0; i < b; i++) {
        const float *row = s->data + (size_t)i * s->cols;
        float *p = mc->p + (size_t)i * nc;
        int32_t *arg = mc->arg + (size_t)i * nc;
        for (int c = 0; c < nc; c++) {
            int best = 0;
            for (int j = 1; j < k; j++)
                best = row[c * k + j] > row[c * k + best] ? j : best;
            arg[c] = best;
            p[c] = (float)(scale * row[c * k + best]);
        }
        double d;
        double target = scale * moved_target(kind, row[y[i] * k + arg[y[i]]], m, &d);
        mc->dmod[i] = (float)d;
        p[y[i]] = (float)target;
        float mx = p[0];
        for (int c = 1; c < nc; c++)
            mx = p[c] > mx ? p[c] : mx;
        double sum = 0.0;
        for (int c = 0; c < nc; c++) {
            p[c] = expf(p[c] - mx);
            sum += p[c];
        }
        float inv = (float)(1.0 / sum);
        for (int c = 0; c < nc; c++)
            p[c] *= inv;
        total += mx + log(sum) - target;
    }
    out->data[0] = b > 0 ? (float)(total / b) : 0.0f;
}

/* d/d logit_c = p_c - [c = y]; each class's share goes to its chosen sub-centre's cosine, the
 * true class's through the margin's derivative. */
static void margin_backward(dml_tensor *out)
{
    dml_tensor *s = out->src[0];
    const int32_t *y = out->ctx;
    const margin_cache *mc = out->cache;
    int b = s->rows, k = out->iparam[0], nc = out->iparam[2];
    if (b == 0 || !s->grad)
        return;
    float g = out->grad[0] * out->fparam[1] / (float)b;
    for (int i = 0; i < b; i++) {
        float *ds = s->grad + (size_t)i * s->cols;
        const float *p = mc->p + (size_t)i * nc;
        const int32_t *arg = mc->arg + (size_t)i * nc;
        for (int c = 0; c < nc; c++) {
            float d = g * p[c];
            if (c == y[i])
                d = g * (p[c] - 1.0f) * mc->dmod[i];
            ds[c * k + arg[c]] += d;
        }
    }
}

const dml_op_def dml_op_margin_softmax = {"margin_softmax", margin_forward, margin_backward};

static dml_tensor *margin_softmax(dml_graph *g, dml_tensor *z, dml_tensor *w,
                                  const int32_t *labels, int n_classes, int sub_centers,
                                  int kind, float margin, float scale)
{
    dml_tensor *cos = dml_matmul(g, dml_l2_normalize(g, z), dml_l2_normalize(g, w), 1);
    if (!cos)
        return NULL;
    dml_tensor *out = dml_graph_node(g, &dml_op_margin_softmax, 1, 1, cos, NULL, NULL);
    margin_cache *mc = out ? dml_graph_alloc(g, sizeof *mc) : NULL;
    if (!mc)
        return NULL;
    size_t n = (size_t)cos->rows * (size_t)n_classes;
    mc->p = dml_graph_alloc(g, n * sizeof(float));
    mc->arg = dml_graph_alloc(g, n * sizeof(int32_t));
    mc->dmod = dml_graph_alloc(g, (size_t)cos->rows * sizeof(float));
    if (!mc->p || !mc->arg || !mc->dmod)
        return NULL;
    out->cache = mc;
    out->ctx = labels;
    out->iparam[0] = sub_centers;
    out->iparam[1] = kind;
    out->iparam[2] = n_classes;
    out->fparam[0] = margin;
    out->fparam[1] = scale;
    return dml_graph_run(g, out);
}

dml_tensor *dml_loss_arcface(dml_graph *g, dml_tensor *z, dml_tensor *w, const int32_t *labels,
                             int n_classes, int sub_centers, float margin, float scale)
{
    return margin_softmax(g, z, w, labels, n_classes, sub_centers, MARGIN_ARC, margin, scale);
}

dml_tensor *dml_loss_cosface(dml_graph *g, dml_tensor *z, dml_tensor *w, const int32_t *labels,
                             int n_classes, int sub_centers, float margin, float scale)
{
    return margin_softmax(g, z, w, labels, n_classes, sub_centers, MARGIN_COS, margin, scale);
}

/* ---- the rows: parameters in this order (build reads them by index) ---- */
#define SUB_CENTERS_PARAM                                                                      \
    {"sub_centers", DML_LP_INT, 1.0f, 1.0f, 64.0f, 0, NULL,                                    \
     "weights per class (sub-centre ArcFace, Deng et al. 2020: the closest counts); 1: one"}
#define LR_MULTIPLIER_PARAM                                                                    \
    {"lr_multiplier", DML_LP_FLOAT, 1.0f, 0.0f, 10000.0f, 1, NULL,                             \
     "learning rate of the class weights as a multiple of train.lr"}

static const dml_loss_param arcface_params[] = {
    {"margin", DML_LP_FLOAT, 28.6f, 0.0f, 90.0f, 0, NULL,
     "additive angular margin on the true class, in degrees (28.6: 0.5 radians)"},
    {"scale", DML_LP_FLOAT, 64.0f, 0.0f, 1024.0f, 1, NULL, "the logits' scale s"},
    SUB_CENTERS_PARAM,
    LR_MULTIPLIER_PARAM,
};

static const dml_loss_param cosface_params[] = {
    {"margin", DML_LP_FLOAT, 0.35f, 0.0f, 2.0f, 0, NULL,
     "additive cosine margin subtracted from the true class's cosine"},
    {"scale", DML_LP_FLOAT, 64.0f, 0.0f, 1024.0f, 1, NULL, "the logits' scale s"},
    SUB_CENTERS_PARAM,
    LR_MULTIPLIER_PARAM,
};

static const dml_op_def *const margin_ops[] = {&dml_op_margin_softmax};

static dml_tensor *arcface_build(const dml_loss_input *in)
{
    const double to_radians = 3.14159265358979323846 / 180.0;
    return dml_loss_arcface(in->g, in->z, in->class_params, in->labels, in->n_classes,
                            (int)in->p[2], (float)(in->p[0] * to_radians), in->p[1]);
}

static dml_tensor *cosface_build(const dml_loss_input *in)
{
    return dml_loss_cosface(in->g, in->z, in->class_params, in->labels, in->n_classes,
                            (int)in->p[2], in->p[0], in->p[1]);
}

const dml_loss_row dml_loss_row_arcface = {
    .name = "arcface",
    .doc = "additive angular margin softmax over learned class weights (Deng et al. 2019), optional "
        "sub-centres (Deng et al. 2020)",
    .needs = DML_LOSS_NEEDS_LABELS,
    .combines = DML_LOSS_WITH_HEAD | DML_LOSS_WITH_MPI,
    .params = arcface_params,
    .n_params = (int)(sizeof arcface_params / sizeof arcface_params[0]),
    .class_rows = 1,
    .class_rows_key = "sub_centers",
    .class_rows_std = 1.0f,
    .ops = margin_ops,
    .n_ops = 1,
    .build = arcface_build,
};

const dml_loss_row dml_loss_row_cosface = {
    .name = "cosface",
    .doc = "additive cosine margin softmax over learned class weights (Wang et al. 2018), optional "
        "sub-centres",
    .needs = DML_LOSS_NEEDS_LABELS,
    .combines = DML_LOSS_WITH_HEAD | DML_LOSS_WITH_MPI,
    .params = cosface_params,
    .n_params = (int)(sizeof cosface_params / sizeof cosface_params[0]),
    .class_rows = 1,
    .class_rows_key = "sub_centers",
    .class_rows_std = 1.0f,
    .ops = margin_ops,
    .n_ops = 1,
    .build = cosface_build,
};
