/* Contrastive loss (Hadsell, Chopra & LeCun 2006) over all ordered pairs of a batch, and of the
 * batch against extra references (a cross-batch memory). */
#include <math.h>

#include "losses/loss_table.h"

/* src[0] = d [B, N]: row i against reference j, the first B references being the batch itself
 * (so column i is row i's own distance, never a pair). fparam: pos_margin, neg_margin; iparam:
 * power, reduction; ctx: the row and reference labels; cache: a contrastive_cache.
 *
 * The pair term of d with s = 1 (same label) or 0: h = s (d - pm) + (1 - s) (nm - d), the loss
 * [h]+ or [h]+^2. Written with s as a number rather than a branch, one row at a time, so the
 * loops over a row vectorise. */
typedef struct pair_row {
    const float *d;  /* [B] distances of row i */
    const int32_t *y;
    int32_t yi;
    int b, i, power;
    float pm, nm;
} pair_row;

enum { LANES = 8 }; /* partial sums: a fixed order, whatever the vector width */

/* Loss terms of the row into t[B] (the diagonal's is 0). */
static void row_terms(const pair_row *r, float *restrict t)
{
    const float *restrict d = r->d;
    for (int j = 0; j < r->b; j++) {
        float s = (float)(r->y[j] == r->yi);
        float h = s * (d[j] - r->pm) + (1.0f - s) * (r->nm - d[j]);
        float hp = 0.5f * (h + fabsf(h)); /* [h]+, exact */
        t[j] = r->power == 2 ? hp * hp : hp;
    }
    t[r->i] = 0.0f;
}

/* d(term)/d(distance) of the row, times g, added to grad[B]. */
static void row_slopes(const pair_row *r, float g, float *restrict grad)
{
    const float *restrict d = r->d;
    const float per_h = r->power == 2 ? 2.0f : 0.0f, flat = r->power == 2 ? 0.0f : 1.0f;
    float keep = grad[r->i];
    for (int j = 0; j < r->b; j++) {
        float s = (float)(r->y[j] == r->yi), sign = 2.0f * s - 1.0f;
        float h = s * (d[j] - r->pm) + (1.0f - s) * (r->nm - d[j]);
        float active = (float)(h > 0.0f);
        grad[j] += g * active * sign * (per_h * h + flat); /* 2h for power 2, 1 for power 1 */
    }
    grad[r->i] = keep;
}

typedef struct pair_labels {
    const int32_t *rows; /* [B] */
    const int32_t *refs; /* [N] */
    const dml_loss_shard *shard; /* NULL: row i of d is the batch's row i */
} pair_labels;

/* Row i of d: the batch's row lo + i (lo = 0 but in a shard). */
static pair_row row_of(const dml_tensor *out, int i)
{
    const dml_tensor *d = out->src[0];
    const pair_labels *y = out->ctx;
    int self = y->shard ? y->shard->lo + i : i;
    return (pair_row){d->data + (size_t)i * d->cols, y->refs, y->rows[self], d->cols, self,
                      out->iparam[0], out->fparam[0], out->fparam[1]};
}

typedef struct contrastive_cache {
    float *terms;        /* [B, N]: each row's terms, scratch */
    float *part, *count; /* [B, LANES]: each row's partial sums and nonzero counts */
    float divisor;
} contrastive_cache;

/* Rows [first, end): each row's terms summed in LANES partial sums (a row pass: the rows' sums
 * are added in order afterwards, whatever the threads). */
static void sum_rows(void *ctx, int first, int end)
{
    const dml_tensor *out = ctx;
    const contrastive_cache *c = out->cache;
    int b = out->src[0]->cols;
    for (int i = first; i < end; i++) {
        pair_row r = row_of(out, i);
        float *restrict t = c->terms + (size_t)i * b;
        row_terms(&r, t);
        float part[LANES] = {0}, count[LANES] = {0};
        int j = 0;
        for (; j + LANES <= b; j += LANES)
            for (int k = 0; k < LANES; k++) {
                part[k] += t[j + k];
                count[k] += (float)(t[j + k] > 0.0f);
            }
        for (; j < b; j++) {
            part[0] += t[j];
            count[0] += (float)(t[j] > 0.0f);
        }
        for (int k = 0; k < LANES; k++) {
            c->part[(size_t)i * LANES + k] = part[k];
            c->count[(size_t)i * LANES + k] = count[k];
        }
    }
}

static void contrastive_forward(dml_tensor *out)
{
    int rows = out->src[0]->rows, b = out->src[0]->cols;
    contrastive_cache *c = out->cache;
    float *divisor = &c->divisor;
    dml_pool_run_rows(sum_rows, out, rows, b);
    double sum = 0.0;
    long nonzero = 0;
    for (size_t k = 0; k < (size_t)rows * LANES; k++) {
        sum += c->part[k];
        nonzero += (long)c->count[k];
    }
    long pairs = (long)rows * (b - 1);
    const pair_labels *y = out->ctx;
    if (y->shard) { /* every rank's anchors: the global sums and counts */
        double v[3] = {sum, (double)nonzero, (double)pairs};
        y->shard->sum(y->shard->ctx, v, 3);
        sum = v[0];
        nonzero = (long)v[1];
        pairs = (long)v[2];
    }
    *divisor = (float)(out->iparam[1] == DML_REDUCE_MEAN_NONZERO ? nonzero : pairs);
    out->data[0] = *divisor > 0.0f ? (float)(sum / *divisor) : 0.0f;
}

static void slope_rows(void *ctx, int first, int end)
{
    const dml_tensor *out = ctx;
    const contrastive_cache *c = out->cache;
    dml_tensor *d = out->src[0];
    float g = out->grad[0] / c->divisor;
    for (int i = first; i < end; i++) {
        pair_row r = row_of(out, i);
        row_slopes(&r, g, d->grad + (size_t)i * d->cols);
    }
}

static void contrastive_backward(dml_tensor *out)
{
    const dml_tensor *d = out->src[0];
    if (((const contrastive_cache *)out->cache)->divisor == 0.0f)
        return;
    dml_pool_run_rows(slope_rows, out, d->rows, d->cols);
}

const dml_op_def dml_op_contrastive = {"contrastive", contrastive_forward, contrastive_backward};

dml_tensor *dml_loss_contrastive_refs(dml_graph *g, dml_tensor *d, const int32_t *labels,
                                      const int32_t *ref_labels, float pos_margin,
                                      float neg_margin, int power, dml_reduction reduction,
                                      const dml_loss_shard *shard)
{
    if (!d)
        return NULL;
    DML_ASSERT(d->rows <= d->cols && (power == 1 || power == 2));
    dml_tensor *out = dml_graph_node(g, &dml_op_contrastive, 1, 1, d, NULL, NULL);
    pair_labels *y = out ? dml_graph_alloc(g, sizeof *y) : NULL;
    contrastive_cache *c = y ? dml_graph_alloc(g, sizeof *c) : NULL;
    size_t rows = (size_t)d->rows;
    if (!c || !(c->terms = dml_graph_alloc(g, rows * (size_t)d->cols * sizeof(float))) ||
        !(c->part = dml_graph_alloc(g, rows * LANES * sizeof(float))) ||
        !(c->count = dml_graph_alloc(g, rows * LANES * sizeof(float))))
        return NULL;
    out->cache = c;
    *y = (pair_labels){labels, ref_labels, shard};
    out->ctx = y;
    out->fparam[0] = pos_margin;
    out->fparam[1] = neg_margin;
    out->iparam[0] = power;
    out->iparam[1] = reduction;
    return dml_graph_run(g, out);
}

dml_tensor *dml_loss_contrastive(dml_graph *g, dml_tensor *d, const int32_t *labels,
                                 float pos_margin, float neg_margin, int power,
                                 dml_reduction reduction)
{
    DML_ASSERT(!d || d->rows == d->cols);
    return dml_loss_contrastive_refs(g, d, labels, labels, pos_margin, neg_margin, power,
                                     reduction, NULL);
}

/* loss.type contrastive: the row's parameters in the order of p. */
enum { P_DISTANCE, P_POS_MARGIN, P_NEG_MARGIN, P_POWER, P_REDUCTION, N_PARAMS };

static const dml_loss_param PARAMS[N_PARAMS] = {
    [P_DISTANCE] = DML_LOSS_PARAM_DISTANCE,
    [P_POS_MARGIN] = {"pos_margin", DML_LP_FLOAT, 0.0f, 0.0f, INFINITY, 0, NULL,
                      "positives cost [d - pos_margin]+^power"},
    [P_NEG_MARGIN] = {"neg_margin", DML_LP_FLOAT, 1.0f, 0.0f, INFINITY, 0, NULL,
                      "negatives cost [neg_margin - d]+^power"},
    [P_POWER] = {"power", DML_LP_INT, 2, 1, 2, 0, NULL, "the hinges' power"},
    [P_REDUCTION] = DML_LOSS_PARAM_REDUCTION(DML_REDUCE_MEAN,
                                             "mean over all pairs, or mean_nonzero over the "
                                             "pairs with a nonzero term"),
};

/* Every batch row (this rank's, in a shard) against the batch and the cross-batch memory's
 * rows. */
static dml_tensor *build(const dml_loss_input *in)
{
    const float *p = in->p;
    const int32_t *ref_labels;
    dml_tensor *d = dml_distance_refs(in, (dml_distance)p[P_DISTANCE], &ref_labels);
    return dml_loss_contrastive_refs(in->g, d, in->labels, ref_labels, p[P_POS_MARGIN],
                                     p[P_NEG_MARGIN], (int)p[P_POWER],
                                     (dml_reduction)p[P_REDUCTION], in->shard);
}

static const dml_op_def *const OPS[] = {&dml_op_contrastive};

const dml_loss_row dml_loss_row_contrastive = {
    .name = "contrastive",
    .doc = "contrastive loss (Hadsell et al. 2006) over every pair of the batch",
    .needs = DML_LOSS_NEEDS_LABELS,
    .combines = DML_LOSS_WITH_MEMORY | DML_LOSS_WITH_QUANTIZATION | DML_LOSS_WITH_HEAD |
                DML_LOSS_WITH_MPI | DML_LOSS_WITH_SHARDING,
    .params = PARAMS,
    .n_params = N_PARAMS,
    .ops = OPS,
    .n_ops = 1,
    .build = build,
};
