/* Finite-difference gradient checks for every loss, miner and option (through the shared
 * distance matrix), hand-computed values, and the edge cases of losses.h. */
#include "tests/testutil.h"

#include <math.h>
#include <string.h>

#include "losses/loss_table.h"

/* The rows under test (losses/loss_table.c lists them; they are declared there). */
extern const dml_loss_row dml_loss_row_multi_similarity, dml_loss_row_circle,
    dml_loss_row_supcon, dml_loss_row_arcface, dml_loss_row_cosface;

#define B 8
#define D 5

static const int32_t LABELS[B] = {0, 0, 1, 1, 2, 2, 0, 1};
static const int32_t ONE_CLASS[B] = {3, 3, 3, 3, 3, 3, 3, 3};
static const int32_t ALL_DIFFERENT[B] = {0, 1, 2, 3, 4, 5, 6, 7};
static const int32_t ONE_CLASS_1[B] = {1, 1, 1, 1, 1, 1, 1, 1};
/* A cross-batch memory of B rows: the batch's labels, then the memory's. */
static const int32_t WITH_MEMORY[2 * B] = {0, 0, 1, 1, 2, 2, 0, 1, 1, 2, 0, 0, 1, 2, 2, 0};

typedef struct loss_case {
    const char *op;
    const char *what;
    dml_distance dist;
    dml_miner miner;
    /* supcon: symmetric = two views (in[1] the second); margin_softmax: power = sub-centres
     * per class of the B weight rows in[2], soft = CosFace (else ArcFace) */
    int soft, power, symmetric;
    dml_reduction reduction;
    const int32_t *labels;
    int memory; /* in[2] as a cross-batch memory labelled WITH_MEMORY + B */
} loss_case;

static dml_pq test_pq;

/* Circle's weights are constants of its gradient (the authors detach them): during the gradient
 * check they are computed from these inputs, the point checked, so the finite differences see
 * the function whose gradient the op returns. NULL elsewhere: the weights follow S. */
static const float (*circle_at)[B * D];

static dml_tensor *similarity_loss(dml_graph *g, dml_tensor **in, const loss_case *c)
{
    dml_tensor *refs = c->memory ? in[2] : NULL;
    const int32_t *y = c->memory ? WITH_MEMORY : c->labels;
    dml_tensor *s = dml_cosine_sim_refs(g, in[0], refs);
    if (!strcmp(c->op, "multi_similarity"))
        return dml_loss_multi_similarity(g, s, c->labels, y, 2.0f, 50.0f, 0.5f,
                                         c->miner == DML_MINER_HARD, 0.1f, NULL);
    dml_tensor *at = NULL;
    if (circle_at)
        at = dml_cosine_sim_refs(g, dml_leaf_copy(g, circle_at[0], B, D, 0),
                                 refs ? dml_leaf_copy(g, circle_at[2], B, D, 0) : NULL);
    /* gamma 10, not the default 80: at 80 the logits reach ~100 and their float rounding,
     * over the step of the finite differences, is as large as the gradient's changes
     * (tests/test_losses_torch.c checks gamma 80 exactly) */
    return dml_loss_circle(g, s, at, c->labels, y, 0.4f, 10.0f, NULL);
}

static dml_tensor *build(dml_graph *g, dml_tensor **in, void *ctx)
{
    const loss_case *c = ctx;
    dml_tensor *z = in[0];
    if (!strcmp(c->op, "triplet") && c->memory)
        return dml_loss_triplet_refs(
            g, dml_concat_cols(g, dml_distance_matrix(g, z, z, c->dist),
                               dml_distance_matrix(g, z, in[2], c->dist)),
            c->labels, WITH_MEMORY, 0.3f, c->miner, c->soft, c->reduction, NULL);
    if (!strcmp(c->op, "triplet"))
        return dml_loss_triplet(g, dml_distance_matrix(g, z, z, c->dist), c->labels, 0.3f, c->miner,
                                c->soft, c->reduction);
    if (!strcmp(c->op, "contrastive") && c->memory)
        return dml_loss_contrastive_refs(
            g, dml_concat_cols(g, dml_distance_matrix(g, z, z, c->dist),
                               dml_distance_matrix(g, z, in[2], c->dist)),
            c->labels, WITH_MEMORY, 0.1f, 1.2f, c->power, c->reduction, NULL);
    if (!strcmp(c->op, "mnr") && c->memory)
        return dml_loss_mnr_extra(g, z, in[1], in[2], c->labels, WITH_MEMORY + B, 5.0f,
                                  c->symmetric, NULL);
    if (!strcmp(c->op, "contrastive"))
        return dml_loss_contrastive(g, dml_distance_matrix(g, z, z, c->dist), c->labels, 0.1f, 1.2f,
                                    c->power, c->reduction);
    if (!strcmp(c->op, "mnr"))
        return dml_loss_mnr(g, z, in[1], c->miner == DML_MINER_HARD ? in[2] : NULL, c->labels, 5.0f,
                            c->symmetric);
    if (!strcmp(c->op, "cosine_pair"))
        return dml_loss_cosine_pair(g, z, c->labels, NULL);
    if (!strcmp(c->op, "proxy_anchor")) /* in[1]: B proxies (classes 0..B-1); power: alpha */
        return dml_loss_proxy_anchor(g, z, in[1], c->labels, 0.1f, (float)c->power);
    if (!strcmp(c->op, "bce_logits"))
        return dml_loss_bce_logits(g, z, dml_sigmoid(g, in[1]));
    if (!strcmp(c->op, "supcon"))
        return dml_loss_supcon(g, z, c->symmetric ? in[1] : NULL, c->labels, 0.5f, NULL);
    if (!strcmp(c->op, "margin_softmax") && c->soft)
        return dml_loss_cosface(g, z, in[2], c->labels, B / c->power, c->power, 0.35f, 4.0f);
    if (!strcmp(c->op, "margin_softmax"))
        return dml_loss_arcface(g, z, in[2], c->labels, B / c->power, c->power, 0.5f, 4.0f);
    if (!strcmp(c->op, "quantization"))
        return dml_loss_quantization(g, z, &test_pq);
    if (!strcmp(c->op, "multi_similarity") || !strcmp(c->op, "circle"))
        return similarity_loss(g, in, c);
    return NULL;
}

static const loss_case CASES[] = {
    {"triplet", "all, euclidean", DML_DIST_EUCLIDEAN, DML_MINER_ALL, 0, 0, 0, DML_REDUCE_MEAN_NONZERO, LABELS, 0},
    {"triplet", "all, mean", DML_DIST_EUCLIDEAN, DML_MINER_ALL, 0, 0, 0, DML_REDUCE_MEAN, LABELS, 0},
    {"triplet", "hard, squared", DML_DIST_SQUARED_EUCLIDEAN, DML_MINER_HARD, 0, 0, 0, DML_REDUCE_MEAN, LABELS, 0},
    {"triplet", "semihard, euclidean", DML_DIST_EUCLIDEAN, DML_MINER_SEMIHARD, 0, 0, 0, DML_REDUCE_MEAN, LABELS, 0},
    {"triplet", "soft all, cosine", DML_DIST_COSINE, DML_MINER_ALL, 1, 0, 0, DML_REDUCE_MEAN, LABELS, 0},
    {"triplet", "one class only", DML_DIST_EUCLIDEAN, DML_MINER_ALL, 0, 0, 0, DML_REDUCE_MEAN_NONZERO, ONE_CLASS, 0},
    {"triplet", "no positive pair", DML_DIST_EUCLIDEAN, DML_MINER_HARD, 0, 0, 0, DML_REDUCE_MEAN, ALL_DIFFERENT, 0},
    /* mean: with the memory's triplets one sits within the step of the hinge, and
     * mean_nonzero's divisor jumps there */
    {"triplet", "memory, all", DML_DIST_EUCLIDEAN, DML_MINER_ALL, 0, 0, 0, DML_REDUCE_MEAN, LABELS, 1},
    {"triplet", "memory, hard, squared", DML_DIST_SQUARED_EUCLIDEAN, DML_MINER_HARD, 0, 0, 0, DML_REDUCE_MEAN, LABELS, 1},
    {"triplet", "memory, semihard", DML_DIST_EUCLIDEAN, DML_MINER_SEMIHARD, 0, 0, 0, DML_REDUCE_MEAN, LABELS, 1},
    {"contrastive", "p = 2, mean", DML_DIST_EUCLIDEAN, 0, 0, 2, 0, DML_REDUCE_MEAN, LABELS, 0},
    {"contrastive", "p = 1, mean_nonzero", DML_DIST_EUCLIDEAN, 0, 0, 1, 0, DML_REDUCE_MEAN_NONZERO, LABELS, 0},
    {"contrastive", "cosine", DML_DIST_COSINE, 0, 0, 2, 0, DML_REDUCE_MEAN, LABELS, 0},
    {"contrastive", "memory, squared", DML_DIST_SQUARED_EUCLIDEAN, 0, 0, 2, 0, DML_REDUCE_MEAN, LABELS, 1},
    {"contrastive", "memory, cosine, p = 1", DML_DIST_COSINE, 0, 0, 1, 0, DML_REDUCE_MEAN_NONZERO, LABELS, 1},
    {"mnr", "plain", 0, DML_MINER_ALL, 0, 0, 0, 0, NULL, 0},
    {"mnr", "symmetric, masked", 0, DML_MINER_ALL, 0, 0, 1, 0, LABELS, 0},
    {"mnr", "hard negatives", 0, DML_MINER_HARD, 0, 0, 0, 0, LABELS, 0},
    {"mnr", "memory, masked, symmetric", 0, DML_MINER_ALL, 0, 0, 1, 0, LABELS, 1},
    {"cosine_pair", "labels", 0, 0, 0, 0, 0, 0, LABELS, 0},
    /* proxies of classes absent from the batch (3..7) have negative terms only */
    {"proxy_anchor", "alpha 32", 0, 0, 0, 32, 0, 0, LABELS, 0},
    {"proxy_anchor", "alpha 4, one class", 0, 0, 0, 4, 0, 0, ONE_CLASS, 0},
    {"bce_logits", "soft targets", 0, 0, 0, 0, 0, 0, NULL, 0},
    {"quantization", "M = 5, K = 4", 0, 0, 0, 0, 0, 0, NULL, 0},
    /* multi_similarity: miner hard = the MS miner on, all = off */
    {"multi_similarity", "mined", 0, DML_MINER_HARD, 0, 0, 0, 0, LABELS, 0},
    {"multi_similarity", "all pairs", 0, DML_MINER_ALL, 0, 0, 0, 0, LABELS, 0},
    {"multi_similarity", "memory, mined", 0, DML_MINER_HARD, 0, 0, 0, 0, LABELS, 1},
    {"multi_similarity", "one class only", 0, DML_MINER_ALL, 0, 0, 0, 0, ONE_CLASS, 0},
    {"multi_similarity", "no positive pair", 0, DML_MINER_HARD, 0, 0, 0, 0, ALL_DIFFERENT, 0},
    {"circle", "labels", 0, 0, 0, 0, 0, 0, LABELS, 0},
    {"circle", "memory", 0, 0, 0, 0, 0, 0, LABELS, 1},
    {"circle", "one class only", 0, 0, 0, 0, 0, 0, ONE_CLASS, 0},
    {"circle", "no positive pair", 0, 0, 0, 0, 0, 0, ALL_DIFFERENT, 0},
    {"supcon", "labels", 0, 0, 0, 0, 0, 0, LABELS, 0},
    {"supcon", "two views, labels", 0, 0, 0, 0, 1, 0, LABELS, 0},
    {"supcon", "two views, NT-Xent", 0, 0, 0, 0, 1, 0, NULL, 0},
    {"supcon", "one class only", 0, 0, 0, 0, 0, 0, ONE_CLASS, 0},
    {"margin_softmax", "arcface, 8 classes", 0, 0, 0, 1, 0, 0, LABELS, 0},
    {"margin_softmax", "arcface, 4 x 2 sub-centres", 0, 0, 0, 2, 0, 0, LABELS, 0},
    {"margin_softmax", "cosface, 8 classes", 0, 0, 1, 1, 0, 0, ALL_DIFFERENT, 0},
    {"margin_softmax", "cosface, 2 x 4 sub-centres", 0, 0, 1, 4, 0, 0, ONE_CLASS_1, 0},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

static void setup_pq(void)
{
    dml_pq_init(&test_pq, D, 5, 2, NULL);
    tu_fill_normal(test_pq.centroids, (size_t)D * 4, 1.0f, 77);
}

static void test_every_loss_op_has_a_gradient_check(void **state)
{
    (void)state;
    setup_pq();
    float z[3][B * D];
    for (int k = 0; k < 3; k++)
        tu_fill_normal(z[k], B * D, 1.0f, 40 + (uint64_t)k);
    circle_at = (const float (*)[B * D])z;
    for (int i = 0; i < dml_loss_op_count; i++) {
        const dml_op_def *def = dml_loss_ops[i];
        assert_non_null(def->name);
        assert_non_null(def->forward);
        assert_non_null(def->backward);
        int checked = 0;
        for (int k = 0; k < N_CASES; k++) {
            if (strcmp(CASES[k].op, def->name) != 0)
                continue;
            tu_input in[3] = {{B, D, z[0], 0}, {B, D, z[1], 0}, {B, D, z[2], 0}};
            double worst = tu_gradcheck(build, (void *)&CASES[k], 3, in, 1e-3f, 5e-3);
            print_message("  %-12s %-22s worst scaled error %.2e\n", def->name, CASES[k].what, worst);
            checked = 1;
        }
        if (!checked)
            fail_msg("loss op '%s' has no gradient check in tests/test_losses.c", def->name);
    }
    circle_at = NULL;
    dml_pq_free(&test_pq);
}

/* A row of the loss table built as the trainer builds it (train/train_step.c), at its default
 * parameters: in[0] the batch (the anchors of a pair loss), in[1] the positives, in[2] the
 * references (a cross-batch memory labelled WITH_MEMORY + B) when refs, in[3] the learned
 * per-class rows when the row has some. */
typedef struct row_case {
    const dml_loss_row *row;
    float p[DML_LOSS_MAX_PARAMS];
    int refs;
} row_case;

static dml_tensor *build_row(dml_graph *g, dml_tensor **in, void *ctx)
{
    const row_case *c = ctx;
    int pairs = (c->row->needs & DML_LOSS_NEEDS_PAIRS) != 0;
    dml_loss_input li = {
        .g = g,
        .z = in[0],
        .zp = pairs ? in[1] : NULL,
        .refs = c->refs ? in[2] : NULL,
        .labels = LABELS,
        .ref_labels = c->refs ? WITH_MEMORY + B : NULL,
        .p = c->p,
        .class_params = c->row->class_rows > 0 ? in[3] : NULL,
        .n_classes = 3,
    };
    return c->row->build(&li);
}

/* Every row of the loss table: its ops are in dml_loss_ops (so the test above checks their
 * gradients), and the loss its build composes has a gradient that finite differences confirm,
 * with and without references where the row takes a cross-batch memory. */
/* Rows whose gradient is by design not the derivative of their value: circle holds its pair
 * weights constant (the authors' code detaches them), so finite differences of its build see
 * another function. Its op's check in CASES fixes the weights at the point checked, and
 * test_similarity_rows_build checks the row's build by value. */
static int detached_gradient(const dml_loss_row *row)
{
    return !strcmp(row->name, "circle");
}

static void test_every_loss_row(void **state)
{
    (void)state;
    for (int r = 0; r < dml_loss_row_count; r++) {
        const dml_loss_row *row = dml_loss_rows[r];
        assert_true(row->n_params <= DML_LOSS_MAX_PARAMS);
        for (int j = 0; j < row->n_ops; j++) {
            int listed = 0;
            for (int i = 0; i < dml_loss_op_count; i++)
                listed |= dml_loss_ops[i] == row->ops[j];
            if (!listed)
                fail_msg("loss row '%s': op '%s' is not in dml_loss_ops (losses/ops.c)", row->name,
                         row->ops[j]->name);
        }
        if (!row->build) /* reconstruction: composed by the trainer from the decoder */
            continue;
        if (detached_gradient(row)) {
            print_message("  row %-14s gradient checked through its op (weights held)\n",
                          row->name);
            continue;
        }
        int rows = row->class_rows > 0 ? 3 * row->class_rows : 1;
        float z[4][B * D];
        for (int k = 0; k < 4; k++)
            tu_fill_normal(z[k], B * D, 1.0f, 60 + (uint64_t)k);
        for (int refs = 0; refs <= ((row->combines & DML_LOSS_WITH_MEMORY) != 0); refs++) {
            row_case c = {row, {0}, refs};
            int given[DML_LOSS_MAX_PARAMS] = {0};
            dml_loss_defaults(row, c.p);
            if (row->fit_defaults)
                row->fit_defaults(c.p, given);
            tu_input in[4] = {{B, D, z[0], 0}, {B, D, z[1], 0}, {B, D, z[2], 0},
                              {rows, D, z[3], row->class_rows == 0}};
            double worst = tu_gradcheck(build_row, &c, 4, in, 1e-3f, 5e-3);
            print_message("  row %-14s %-9s worst scaled error %.2e\n", row->name,
                          refs ? "memory" : "", worst);
        }
    }
}

/* Runs a loss on fixed embeddings and returns its value (and checks the gradient is finite). */
static float loss_value(const loss_case *c, const float *z, int rows)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 16);
    dml_tensor *in[3];
    for (int k = 0; k < 3; k++)
        in[k] = dml_leaf_copy(&g, z, rows, 2, 1);
    dml_tensor *loss = build(&g, in, (void *)c);
    assert_non_null(loss);
    assert_int_equal(dml_backward(&g, loss), DML_OK);
    for (int i = 0; i < rows * 2; i++)
        assert_true(isfinite(in[0]->grad[i]));
    float v = loss->data[0];
    dml_graph_free(&g);
    return v;
}

/* Four points on a line: 0 and 1 class 0 at x = 0, 1; 2 and 3 class 1 at x = 3, 3.5. */
static const float LINE[8] = {0, 0, 1, 0, 3, 0, 3.5f, 0};
static const int32_t LINE_LABELS[4] = {0, 0, 1, 1};

static void test_triplet_hand_computed(void **state)
{
    (void)state;
    /* margin 0.3. Hard: anchor 0: pos 1 (d 1), neg 2 (d 3) -> 0; anchor 1: pos 0 (1), neg 2 (2)
     * -> 0; anchor 2: pos 3 (0.5), neg 1 (2) -> 0; anchor 3: pos 2 (0.5), neg 1 (2.5) -> 0. */
    loss_case c = {"triplet", "", DML_DIST_EUCLIDEAN, DML_MINER_HARD, 0, 0, 0, DML_REDUCE_MEAN, LINE_LABELS, 0};
    assert_float_equal(loss_value(&c, LINE, 4), 0.0f, 1e-6);
    /* All hinges inactive: mean_nonzero divides by nothing and gives 0, not NaN. */
    c.miner = DML_MINER_ALL;
    c.reduction = DML_REDUCE_MEAN_NONZERO;
    assert_float_equal(loss_value(&c, LINE, 4), 0.0f, 0.0);
    /* Move point 1 to x = 2.5: anchor 0 has d(0,1) = 2.5 against negatives at 3 and 3.5, so
     * [2.5 - 3 + 0.3]+ = 0 and [2.5 - 3.5 + 0.3]+ = 0; anchor 1 (x 2.5): d(1,0) = 2.5, negatives
     * at 0.5 and 1.0 -> 2.3 and 1.8. Anchors 2, 3: positive 0.5 away, negatives 2.5/3 and 1/3.5:
     * anchor 2 vs 1: [0.5 - 0.5 + 0.3]+ = 0.3; anchor 3 vs 1: [0.5 - 1 + 0.3]+ = 0. */
    float moved[8] = {0, 0, 2.5f, 0, 3, 0, 3.5f, 0};
    assert_float_equal(loss_value(&c, moved, 4), (2.3f + 1.8f + 0.3f) / 3.0f, 1e-5);
    c.reduction = DML_REDUCE_MEAN; /* 8 valid triplets */
    assert_float_equal(loss_value(&c, moved, 4), (2.3f + 1.8f + 0.3f) / 8.0f, 1e-5);
}

static void test_contrastive_hand_computed(void **state)
{
    (void)state;
    /* pos_margin 0.1, neg_margin 1.2, p = 2 over 12 ordered pairs: positives (0,1) d 1 ->
     * 0.81, (2,3) d 0.5 -> 0.16, each twice; negatives all >= 2 apart -> 0. */
    loss_case c = {"contrastive", "", DML_DIST_EUCLIDEAN, 0, 0, 2, 0, DML_REDUCE_MEAN, LINE_LABELS, 0};
    assert_float_equal(loss_value(&c, LINE, 4), 2.0f * (0.81f + 0.16f) / 12.0f, 1e-5);
    c.reduction = DML_REDUCE_MEAN_NONZERO;
    assert_float_equal(loss_value(&c, LINE, 4), 2.0f * (0.81f + 0.16f) / 4.0f, 1e-5);
}

static void test_mnr_hand_computed(void **state)
{
    (void)state;
    /* B = 2, a = p: cosines [[1, c], [c, 1]], c = cos(row 0, row 1). Loss per row:
     * log(e^s + e^(s c)) - s, with s = 5. */
    float z[4] = {1, 0, 0.6f, 0.8f};
    loss_case c = {"mnr", "", 0, DML_MINER_ALL, 0, 0, 0, 0, NULL, 0};
    float expect = logf(expf(5.0f) + expf(5.0f * 0.6f)) - 5.0f;
    assert_float_equal(loss_value(&c, z, 2), expect, 1e-5);
    /* Masking a same-label candidate leaves only the positive: loss 0. */
    static const int32_t same[2] = {4, 4};
    c.labels = same;
    assert_float_equal(loss_value(&c, z, 2), 0.0f, 1e-6);
}

/* The loss of rows z[b, 2] against the batch and memory rows mem[k, 2]. */
static float memory_loss(const char *op, const float *z, int b, const int32_t *labels,
                         const float *mem, int k, const int32_t *refs)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 16);
    dml_tensor *x = dml_leaf_copy(&g, z, b, 2, 1), *m = dml_leaf_copy(&g, mem, k, 2, 0);
    dml_tensor *d = dml_concat_cols(&g, dml_distance_matrix(&g, x, x, DML_DIST_EUCLIDEAN),
                                    dml_distance_matrix(&g, x, m, DML_DIST_EUCLIDEAN));
    dml_tensor *loss =
        !strcmp(op, "contrastive")
            ? dml_loss_contrastive_refs(&g, d, labels, refs, 0.0f, 1.0f, 2, DML_REDUCE_MEAN, NULL)
        : !strcmp(op, "triplet")
            ? dml_loss_triplet_refs(&g, d, labels, refs, 1.0f, DML_MINER_ALL, 0, DML_REDUCE_MEAN,
                                    NULL)
            : dml_loss_mnr_extra(&g, x, x, m, labels, refs ? refs + b : NULL, 5.0f, 0, NULL);
    assert_non_null(loss);
    assert_int_equal(dml_backward(&g, loss), DML_OK);
    float v = loss->data[0];
    dml_graph_free(&g);
    return v;
}

/* ---- sharded losses (docs/scale.md): two ranks simulated in one process. Each rank's sum hook
 * adds the other's partial sums, recorded in a first pass, as the ranks' allreduce would. */
typedef struct two_ranks {
    double part[2][4]; /* each shard's partial sums */
    int me, recording;
} two_ranks;

static void two_ranks_sum(void *ctx, double *v, int n)
{
    two_ranks *t = ctx;
    assert_true(n <= 4);
    if (t->recording) {
        memcpy(t->part[t->me], v, (size_t)n * sizeof *v);
        return;
    }
    for (int i = 0; i < n; i++)
        v[i] += t->part[1 - t->me][i];
}

/* row's loss over z [B, D] (zp, refs [B, D] when not NULL) labelled labels (NULL: unlabelled)
 * with shard (NULL: the whole loss); the gradients of z and zp added into gz and gzp. */
static float row_loss(const dml_loss_row *row, const float *p, const int32_t *labels,
                      const float *z, const float *zp, const float *refs,
                      const dml_loss_shard *shard, float *gz, float *gzp)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 18);
    dml_tensor *x = dml_leaf_copy(&g, z, B, D, 1);
    dml_tensor *xp = zp ? dml_leaf_copy(&g, zp, B, D, 1) : NULL;
    dml_tensor *m = refs ? dml_leaf_copy(&g, refs, B, D, 0) : NULL;
    dml_loss_input in = {.g = &g, .z = x, .zp = xp, .refs = m, .labels = labels,
                         .ref_labels = m ? WITH_MEMORY + B : NULL, .p = p, .shard = shard};
    dml_tensor *loss = row->build(&in);
    assert_non_null(loss);
    assert_int_equal(dml_backward(&g, loss), DML_OK);
    for (int i = 0; i < B * D; i++) {
        gz[i] += x->grad[i];
        if (xp)
            gzp[i] += xp->grad[i];
    }
    float v = loss->data[0];
    dml_graph_free(&g);
    return v;
}

static float max_abs_diff(const float *a, const float *b, int n)
{
    float m = 0.0f;
    for (int i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

/* The loss of each of two shards (anchors 0..3 and 4..7) is the whole loss, and the sum of
 * their gradients (what the reduce-scatter adds up) is the whole loss's gradient; with views,
 * over a second view zp as well (the rows that need pairs always have it), on labels (NULL:
 * unlabelled). */
static void check_two_shards_views(const char *name, const char *key, float value, int memory,
                                   int views, const int32_t *labels)
{
    const dml_loss_row *row = dml_loss_find(name);
    assert_non_null(row);
    assert_true(row->combines & DML_LOSS_WITH_SHARDING);
    float p[DML_LOSS_MAX_PARAMS];
    int given[DML_LOSS_MAX_PARAMS] = {0};
    dml_loss_defaults(row, p);
    if (key) {
        int k = dml_loss_param_index(row, key);
        assert_true(k >= 0);
        p[k] = value;
        given[k] = 1;
    }
    if (row->fit_defaults)
        row->fit_defaults(p, given);
    int pairs = views || (row->needs & DML_LOSS_NEEDS_PAIRS);
    float z[B * D], zp[B * D], refs[B * D];
    tu_fill_normal(z, B * D, 1.0f, 11);
    tu_fill_normal(zp, B * D, 1.0f, 12);
    tu_fill_normal(refs, B * D, 1.0f, 13);
    float gz[B * D] = {0}, gzp[B * D] = {0}, sz[B * D] = {0}, szp[B * D] = {0};
    float scratch[2][B * D] = {{0}};
    const float *zp_in = pairs ? zp : NULL, *refs_in = memory ? refs : NULL;
    float whole = row_loss(row, p, labels, z, zp_in, refs_in, NULL, gz, gzp);
    two_ranks t = {.recording = 1};
    dml_loss_shard shard[2] = {{0, B / 2, two_ranks_sum, &t}, {B / 2, B / 2, two_ranks_sum, &t}};
    for (t.me = 0; t.me < 2; t.me++)
        row_loss(row, p, labels, z, zp_in, refs_in, &shard[t.me], scratch[0], scratch[1]);
    t.recording = 0;
    float v[2];
    for (t.me = 0; t.me < 2; t.me++)
        v[t.me] = row_loss(row, p, labels, z, zp_in, refs_in, &shard[t.me], sz, szp);
    char what[96];
    const char *form = !labels ? " (two views, unlabelled)" : views ? " (two views)" : "";
    snprintf(what, sizeof what, "%s%s %s=%g: loss of 2 shards vs whole", name, form,
             key ? key : "", value);
    assert_true(whole > 0.0f);
    assert_true(v[0] == v[1]);
    tu_assert_measured(what, fabsf(v[0] - whole) / whole, 1e-5);
    float scale = 0.0f;
    for (int i = 0; i < B * D; i++)
        scale = fmaxf(scale, fmaxf(fabsf(gz[i]), fabsf(gzp[i])));
    assert_true(scale > 0.0f);
    snprintf(what, sizeof what, "%s%s %s=%g: summed gradient of 2 shards vs whole", name, form,
             key ? key : "", value);
    tu_assert_measured(what, fmaxf(max_abs_diff(gz, sz, B * D), max_abs_diff(gzp, szp, B * D)) /
                                 scale, 1e-5);
}

static void check_two_shards(const char *name, const char *key, float value, int memory)
{
    check_two_shards_views(name, key, value, memory, 0, LABELS);
}

static void test_sharded_rows_add_up_to_the_whole_loss(void **state)
{
    (void)state;
    check_two_shards("contrastive", NULL, 0, 0); /* the defaults */
    check_two_shards("contrastive", "distance", DML_DIST_COSINE, 0);
    check_two_shards("contrastive", "reduction", DML_REDUCE_MEAN_NONZERO, 1);
    check_two_shards("triplet", NULL, 0, 0);
    check_two_shards("triplet", "miner", DML_MINER_HARD, 0);
    check_two_shards("triplet", "miner", DML_MINER_SEMIHARD, 0);
    check_two_shards("triplet", "soft", 1, 1);
    check_two_shards("mnr", NULL, 0, 0);
    check_two_shards("mnr", "symmetric", 1, 0);
    check_two_shards("mnr", "mask_same_label", 0, 1);
    check_two_shards("multi_similarity", NULL, 0, 0);
    check_two_shards("multi_similarity", "miner", 0, 0); /* every pair */
    check_two_shards("multi_similarity", "epsilon", 0.3f, 1);
    check_two_shards("circle", NULL, 0, 0);
    check_two_shards("circle", "gamma", 256.0f, 0);
    check_two_shards("circle", "m", 0.25f, 1);
    check_two_shards("supcon", NULL, 0, 0);
    check_two_shards_views("supcon", NULL, 0, 0, 1, LABELS);
    check_two_shards_views("supcon", "temperature", 0.5f, 0, 1, LABELS);
    check_two_shards_views("supcon", NULL, 0, 0, 1, NULL); /* SimCLR's NT-Xent */
    check_two_shards("cosine_pair", NULL, 0, 0);
}

static void test_memory_hand_computed(void **state)
{
    (void)state;
    /* Contrastive, pos_margin 0, neg_margin 1, p = 2: rows x = 0 (class 0) and x = 1 (class
     * 1), one memory row at x = 0.5 of class 0. Row 0: row 1 is a negative 1 away (0), the
     * memory a positive 0.5 away (0.25); row 1: row 0 a negative 1 away (0), the memory a
     * negative 0.5 away ([1 - 0.5]^2 = 0.25). Four pairs: 0.5 / 4. */
    float z[4] = {0, 0, 1, 0}, mem[2] = {0.5f, 0};
    static const int32_t labels[2] = {0, 1}, refs[3] = {0, 1, 0};
    assert_float_equal(memory_loss("contrastive", z, 2, labels, mem, 1, refs), 0.125f, 1e-6);
    /* MNR, a = p, s = 5: a memory row of another class is one more candidate, as a hard
     * negative is; one of the anchor's own class is dropped. Rows (1, 0) and (0.6, 0.8) of
     * classes 0 and 1; memory (0, 1) of class 0: row 0's candidates are cos 1 (target), 0.6
     * and the dropped memory row; row 1's are 0.6, 1 (target) and the memory's 0.8. */
    float a[4] = {1, 0, 0.6f, 0.8f}, m1[2] = {0, 1};
    static const int32_t mnr_refs[3] = {0, 1, 0};
    float row0 = logf(expf(5.0f) + expf(3.0f)) - 5.0f;
    float row1 = logf(expf(3.0f) + expf(5.0f) + expf(4.0f)) - 5.0f;
    assert_float_equal(memory_loss("mnr", a, 2, labels, m1, 1, mnr_refs), (row0 + row1) / 2.0f,
                       1e-5);
    /* Batch-all triplet, margin 1, mean over triplets: rows x = 0 (class 0) and x = 1 (class 1),
     * memory rows x = 0.5 (class 0) and x = 3 (class 1). Anchor 0: positive the memory's 0.5,
     * negatives row 1 (1 away) and the memory's 3: [0.5 - 1 + 1]+ + [0.5 - 3 + 1]+ = 0.5 + 0.
     * Anchor 1: positive the memory's 3 (2 away), negatives row 0 (1) and 0.5 (0.5):
     * [2 - 1 + 1]+ + [2 - 0.5 + 1]+ = 2 + 2.5. Four triplets: 5 / 4. */
    float mem2[4] = {0.5f, 0, 3, 0};
    static const int32_t tri_refs[4] = {0, 1, 0, 1};
    assert_float_equal(memory_loss("triplet", z, 2, labels, mem2, 2, tri_refs), 1.25f, 1e-5);
    /* Unlabelled: nothing is dropped, row 0 gains the memory's cos 0 too. */
    float row0_all = logf(expf(5.0f) + expf(3.0f) + expf(0.0f)) - 5.0f;
    float un = memory_loss("mnr", a, 2, NULL, m1, 1, NULL);
    assert_float_equal(un, (row0_all + row1) / 2.0f, 1e-5);
}

static void test_cosine_pair_hand_computed(void **state)
{
    (void)state;
    /* cos = 0.6 between two rows of one class: (1 - 0.6)^2 for both ordered pairs. */
    float z[4] = {1, 0, 0.6f, 0.8f};
    static const int32_t same[2] = {0, 0};
    loss_case c = {"cosine_pair", "", 0, 0, 0, 0, 0, 0, same, 0};
    assert_float_equal(loss_value(&c, z, 2), 0.16f, 1e-5);
}

static void test_proxy_anchor_hand_computed(void **state)
{
    (void)state;
    /* Rows (1, 0) of class 0 and (0, 1) of class 1, which are also the proxies: s = I. Each
     * proxy's positive term log(1 + e^(-32 (1 - 0.1))), its negative term log(1 + e^(32 (0 +
     * 0.1))); both classes are in the batch, so each sum is divided by 2. */
    float z[4] = {1, 0, 0, 1};
    static const int32_t two[2] = {0, 1};
    loss_case c = {"proxy_anchor", "", 0, 0, 0, 32, 0, 0, two, 0};
    float expect = (float)(log1p(exp(-28.8)) + log1p(exp(3.2)));
    assert_float_equal(loss_value(&c, z, 2), expect, 1e-5);
    /* Both rows of class 0: proxy 1 has no positive, so P+ = {0}; proxy 0's positives are
     * s = 1 and 0, proxy 1's negatives s = 0 and 1. */
    static const int32_t same[2] = {0, 0};
    c.labels = same;
    expect = (float)(log(1.0 + exp(-28.8) + exp(3.2)) + log(1.0 + exp(3.2) + exp(35.2)) / 2.0);
    assert_float_equal(loss_value(&c, z, 2), expect, 1e-4);
}

/* Duplicate rows give distance 0 and a finite gradient; B = 2 works. */
static void test_duplicates_and_two_rows(void **state)
{
    (void)state;
    float dup[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    loss_case c = {"triplet", "", DML_DIST_EUCLIDEAN, DML_MINER_ALL, 0, 0, 0, DML_REDUCE_MEAN_NONZERO, LINE_LABELS, 0};
    assert_float_equal(loss_value(&c, dup, 4), 0.3f, 1e-6); /* every hinge at the margin */
    loss_case k = {"contrastive", "", DML_DIST_EUCLIDEAN, 0, 0, 2, 0, DML_REDUCE_MEAN, LINE_LABELS, 0};
    assert_true(isfinite(loss_value(&k, dup, 4)));
    static const int32_t two[2] = {0, 1};
    c.labels = two;
    assert_float_equal(loss_value(&c, LINE, 2), 0.0f, 0.0); /* no positive pair */
}

/* Four unit rows: a (1, 0) and b (0.6, 0.8) of class 0, c (0, 1) and d (-1, 0) of class 1.
 * Cosines: ab 0.6, ac 0, ad -1, bc 0.8, bd -0.6, cd 0. */
static const float SQUARE[8] = {1, 0, 0.6f, 0.8f, 0, 1, -1, 0};
static const int32_t SQUARE_LABELS[4] = {0, 0, 1, 1};

/* Multi-Similarity, alpha 2, beta 50, base 0.5, each row's loss
 * (1/2) log(1 + sum_P e^(-2 (s - 0.5))) + (1/50) log(1 + sum_N e^(50 (s - 0.5))). */
static double ms_term(double pos_sum, double neg_sum)
{
    return 0.5 * log(1.0 + pos_sum) + log(1.0 + neg_sum) / 50.0;
}

/* Circle (m 0.4, gamma 80): a row's loss is softplus(lse_P + lse_N) = log(1 + sum_P e^lp *
 * sum_N e^ln), lp = -80 [1.4 - s]+ (s - 0.6), ln = 80 [s + 0.4]+ (s - 0.4). Logits: a's positive
 * b (0.6) 0, negatives c (0) -12.8 and d (-1) 0 (weight 0); b's positive 0, negatives c (0.8)
 * 38.4 and d (-0.6) 0; c's positive d (0) 67.2, negatives a -12.8 and b 38.4; d's positive c
 * 67.2, negatives a and b 0 (weights 0). */
static double circle_row_loss(int i)
{
    switch (i) {
    case 0: return log(2.0 + exp(-12.8));
    case 1: return log(2.0 + exp(38.4));
    case 2: return log(1.0 + exp(67.2) * (exp(-12.8) + exp(38.4)));
    default: return log(1.0 + 2.0 * exp(67.2));
    }
}

static float similarity_value(const char *op, int mine, const float *z, int rows,
                              const int32_t *labels, double *grad_abs_sum)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 16);
    dml_tensor *x = dml_leaf_copy(&g, z, rows, 2, 1);
    dml_tensor *s = dml_cosine_sim_refs(&g, x, NULL);
    dml_tensor *loss = !strcmp(op, "circle")
                           ? dml_loss_circle(&g, s, NULL, labels, labels, 0.4f, 80.0f, NULL)
                           : dml_loss_multi_similarity(&g, s, labels, labels, 2.0f, 50.0f, 0.5f,
                                                       mine, 0.1f, NULL);
    assert_non_null(loss);
    assert_int_equal(dml_backward(&g, loss), DML_OK);
    *grad_abs_sum = 0.0;
    for (int i = 0; i < rows * 2; i++) {
        assert_true(isfinite(x->grad[i]));
        *grad_abs_sum += fabs(x->grad[i]);
    }
    float v = loss->data[0];
    dml_graph_free(&g);
    return v;
}

/* The loss of rows z[b, 2] (and views zp, and class weights w[nw, 2]) through the direct call
 * or through a row's build with its default parameters; the gradients must be finite. */
typedef struct row_call {
    const dml_loss_row *row; /* NULL: the direct call below */
    const char *direct;      /* "supcon", "arcface" (margin in radians), "cosface" */
    const float *z, *zp, *w;
    int b, nw, n_classes;
    const int32_t *labels;
    float p0, p1; /* direct: temperature, or margin and scale */
} row_call;

static float call_loss(const row_call *c)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 16);
    dml_tensor *z = dml_leaf_copy(&g, c->z, c->b, 2, 1);
    dml_tensor *zp = c->zp ? dml_leaf_copy(&g, c->zp, c->b, 2, 1) : NULL;
    dml_tensor *w = c->w ? dml_leaf_copy(&g, c->w, c->nw, 2, 1) : NULL;
    dml_tensor *loss;
    if (c->row) {
        float p[DML_LOSS_MAX_PARAMS];
        for (int i = 0; i < c->row->n_params; i++)
            p[i] = c->row->params[i].def;
        int k = c->row->class_rows_key ? dml_loss_param_index(c->row, c->row->class_rows_key) : -1;
        if (k >= 0)
            p[k] = (float)(c->nw / c->n_classes);
        dml_loss_input in = {&g, z, zp, NULL, c->labels, NULL, p, w, c->n_classes, NULL};
        loss = c->row->build(&in);
    } else if (!strcmp(c->direct, "supcon")) {
        loss = dml_loss_supcon(&g, z, zp, c->labels, c->p0, NULL);
    } else {
        loss = (!strcmp(c->direct, "arcface") ? dml_loss_arcface : dml_loss_cosface)(
            &g, z, w, c->labels, c->n_classes, c->nw / c->n_classes, c->p0, c->p1);
    }
    assert_non_null(loss);
    assert_int_equal(dml_backward(&g, loss), DML_OK);
    for (int i = 0; i < c->b * 2; i++) {
        assert_true(isfinite(z->grad[i]));
        assert_true(!zp || isfinite(zp->grad[i]));
    }
    for (int i = 0; w && i < c->nw * 2; i++)
        assert_true(isfinite(w->grad[i]));
    float v = loss->data[0];
    dml_graph_free(&g);
    return v;
}

static void test_multi_similarity_hand_computed(void **state)
{
    (void)state;
    double grad;
    /* All pairs: a: P {0.6}, N {0, -1}; b: P {0.6}, N {0.8, -0.6}; c: P {0}, N {0, 0.8};
     * d: P {0}, N {-1, -0.6}. */
    double all = ms_term(exp(-0.2), exp(-25.0) + exp(-75.0)) +
                 ms_term(exp(-0.2), exp(15.0) + exp(-55.0)) +
                 ms_term(exp(1.0), exp(-25.0) + exp(15.0)) +
                 ms_term(exp(1.0), exp(-75.0) + exp(-55.0));
    assert_float_equal(similarity_value("multi_similarity", 0, SQUARE, 4, SQUARE_LABELS, &grad),
                       all / 4.0, 1e-5);
    /* Mined, epsilon 0.1: a keeps nothing (its positive 0.6 is not below its hardest negative
     * 0 + 0.1; no negative is above 0.6 - 0.1); b keeps its positive and the negative c (0.8);
     * c keeps everything; d nothing (positive 0 against negatives at most -0.6). */
    double mined = ms_term(exp(-0.2), exp(15.0)) + ms_term(exp(1.0), exp(-25.0) + exp(15.0));
    assert_float_equal(similarity_value("multi_similarity", 1, SQUARE, 4, SQUARE_LABELS, &grad),
                       mined / 4.0, 1e-5);
}

static void test_circle_hand_computed(void **state)
{
    (void)state;
    double grad, sum = 0.0;
    for (int i = 0; i < 4; i++)
        sum += circle_row_loss(i);
    assert_float_equal(similarity_value("circle", 0, SQUARE, 4, SQUARE_LABELS, &grad), sum / 4.0,
                       1e-3);
}

/* No positive pair, or no negative, in the batch: zero loss and an all-zero gradient, never
 * NaN, for both losses and both miner settings; B = 2 too. */
static void test_similarity_losses_without_pairs(void **state)
{
    (void)state;
    static const int32_t same[4] = {5, 5, 5, 5}, apart[4] = {0, 1, 2, 3}, two[2] = {0, 1};
    const char *ops[3] = {"multi_similarity", "multi_similarity", "circle"};
    for (int k = 0; k < 3; k++) {
        double grad;
        int mine = k == 0;
        assert_float_equal(similarity_value(ops[k], mine, SQUARE, 4, same, &grad), 0.0f, 0.0);
        assert_float_equal(grad, 0.0, 0.0);
        assert_float_equal(similarity_value(ops[k], mine, SQUARE, 4, apart, &grad), 0.0f, 0.0);
        assert_float_equal(grad, 0.0, 0.0);
        assert_float_equal(similarity_value(ops[k], mine, SQUARE, 2, two, &grad), 0.0f, 0.0);
        assert_float_equal(grad, 0.0, 0.0);
    }
}

/* The rows' build through a dml_loss_input at the rows' defaults, with a cross-batch memory: the
 * batch is a and b (class 0), the references c and d (class 1). Each batch row sees the other
 * three as in the four-row batch, and only a and b are anchors: (L_a + L_b) / 2. */
static void test_similarity_rows_build(void **state)
{
    (void)state;
    const dml_loss_row *rows[2] = {&dml_loss_row_multi_similarity, &dml_loss_row_circle};
    double expect[2] = {ms_term(exp(-0.2), exp(15.0)) / 2.0,
                        (circle_row_loss(0) + circle_row_loss(1)) / 2.0};
    for (int r = 0; r < 2; r++) {
        const dml_loss_row *row = rows[r];
        assert_true(row->needs & DML_LOSS_NEEDS_LABELS);
        assert_true(row->n_params <= DML_LOSS_MAX_PARAMS);
        assert_int_equal(row->n_ops, 1);
        float p[DML_LOSS_MAX_PARAMS];
        for (int i = 0; i < row->n_params; i++)
            p[i] = row->params[i].def;
        dml_graph g;
        dml_graph_init(&g, 1 << 16);
        dml_tensor *z = dml_leaf_copy(&g, SQUARE, 2, 2, 1);
        dml_tensor *refs = dml_leaf_copy(&g, SQUARE + 4, 2, 2, 0);
        dml_loss_input in = {.g = &g, .z = z, .refs = refs, .labels = SQUARE_LABELS,
                             .ref_labels = SQUARE_LABELS + 2, .p = p};
        dml_tensor *loss = row->build(&in);
        assert_non_null(loss);
        assert_ptr_equal(g.tape[g.n_tape - 1]->op, row->ops[0]);
        print_message("  %s through its row: %.6f (expected %.6f)\n", row->name, loss->data[0],
                      expect[r]);
        assert_float_equal(loss->data[0], expect[r], 1e-3 * fmax(1.0, expect[r]));
        assert_int_equal(dml_backward(&g, loss), DML_OK);
        dml_graph_free(&g);
    }
}

static void test_supcon_hand_computed(void **state)
{
    (void)state;
    /* Rows (1, 0), (0.6, 0.8), (0, 1) of classes 0, 0, 1, t = 0.1: cosines 0.6 (0, 1), 0 (0, 2),
     * 0.8 (1, 2). Anchor 0: positive 1 (logit 6) against 2 (0); anchor 1: positive 0 (6)
     * against 2 (8); anchor 2 has no positive and is left out of the mean. */
    static const float z[6] = {1, 0, 0.6f, 0.8f, 0, 1};
    static const int32_t y[3] = {0, 0, 1};
    row_call c = {NULL, "supcon", z, NULL, NULL, 3, 0, 0, y, 0.1f, 0};
    float l0 = logf(expf(6.0f) + 1.0f) - 6.0f, l1 = logf(expf(6.0f) + expf(8.0f)) - 6.0f;
    assert_float_equal(call_loss(&c), (l0 + l1) / 2.0f, 1e-5);
    /* Two unlabelled views, the second view of every row the row itself: each of the 6
     * anchors has its twin (cos 1, logit 10) as the one positive among 5 candidates. */
    c.zp = z;
    c.labels = NULL;
    float a0 = logf(expf(10.0f) + 2.0f * expf(6.0f) + 2.0f) - 10.0f;
    float a1 = logf(expf(10.0f) + 2.0f * expf(6.0f) + 2.0f * expf(8.0f)) - 10.0f;
    float a2 = logf(expf(10.0f) + 2.0f + 2.0f * expf(8.0f)) - 10.0f;
    assert_float_equal(call_loss(&c), (a0 + a1 + a2) / 3.0f, 1e-5);
    /* One class: no negative pair, loss 0 with a zero (finite) gradient, as PML's. */
    static const int32_t one[3] = {5, 5, 5};
    c.zp = NULL;
    c.labels = one;
    assert_float_equal(call_loss(&c), 0.0f, 0.0);
    /* Duplicate rows and a zero row: finite. */
    static const float dup[6] = {1, 1, 1, 1, 0, 0};
    c.z = dup;
    c.labels = y;
    assert_true(isfinite(call_loss(&c)));
}

static void test_margin_softmax_hand_computed(void **state)
{
    (void)state;
    /* z = (1, 0) of class 0; class 0's weight (0.6, 0.8) (cos 0.6), class 1's (0, 2) (cos 0).
     * ArcFace, m 0.5, s 4: logits 4 cos(acos(0.6) + 0.5) and 0; CosFace, m 0.35: 4 (0.6 - 0.35)
     * and 0. */
    static const float z[2] = {1, 0}, w[4] = {0.6f, 0.8f, 0, 2};
    static const int32_t y[1] = {0};
    row_call c = {NULL, "arcface", z, NULL, w, 1, 2, 2, y, 0.5f, 4.0f};
    float t = 4.0f * cosf(acosf(0.6f) + 0.5f);
    assert_float_equal(call_loss(&c), logf(expf(t) + 1.0f) - t, 1e-5);
    c.direct = "cosface";
    c.p0 = 0.35f;
    assert_float_equal(call_loss(&c), logf(expf(1.0f) + 1.0f) - 1.0f, 1e-5);
    /* Two sub-centres per class, the closest counts: class 0 (0.6, 0.8) and (0, -1), class 1
     * (0, 2) and (-1, 0): the same cosines 0.6 and 0. */
    static const float w2[8] = {0.6f, 0.8f, 0, -1, 0, 2, -1, 0};
    c.w = w2;
    c.nw = 4;
    assert_float_equal(call_loss(&c), logf(expf(1.0f) + 1.0f) - 1.0f, 1e-5);
    /* z on its class's weight (cos exactly 1, where acos' slope is infinite) and a zero row:
     * finite gradients. */
    static const float on[4] = {0.6f, 0.8f, 0, 0};
    static const int32_t y2[2] = {0, 1};
    row_call e = {NULL, "arcface", on, NULL, w, 2, 2, 2, y2, 0.5f, 64.0f};
    assert_true(isfinite(call_loss(&e)));
}

/* Each row's build through a dml_loss_input, with the row's defaults (PML's), equals the direct
 * call with the same parameters. */
static void test_rows_build_through_loss_input(void **state)
{
    (void)state;
    float z[16], zp[16], w[12];
    tu_fill_normal(z, 16, 1.0f, 5);
    tu_fill_normal(zp, 16, 1.0f, 6);
    tu_fill_normal(w, 12, 1.0f, 7);
    static const int32_t y[8] = {0, 1, 2, 0, 1, 2, 0, 1};
    row_call r = {&dml_loss_row_supcon, NULL, z, zp, NULL, 8, 0, 0, y, 0, 0};
    row_call d = {NULL, "supcon", z, zp, NULL, 8, 0, 0, y, 0.1f, 0};
    assert_float_equal(call_loss(&r), call_loss(&d), 1e-6);
    assert_true(dml_loss_row_supcon.needs & DML_LOSS_NEEDS_LABELS_OR_PAIRS);
    /* 3 classes x 2 sub-centres; ArcFace's default margin is 28.6 degrees */
    row_call ra = {&dml_loss_row_arcface, NULL, z, NULL, w, 8, 6, 3, y, 0, 0};
    row_call da = {NULL, "arcface", z, NULL, w, 8, 6, 3, y, 28.6f * 3.14159265f / 180.0f, 64.0f};
    assert_float_equal(call_loss(&ra), call_loss(&da), 1e-4);
    row_call rc = {&dml_loss_row_cosface, NULL, z, NULL, w, 8, 6, 3, y, 0, 0};
    row_call dc = {NULL, "cosface", z, NULL, w, 8, 6, 3, y, 0.35f, 64.0f};
    assert_float_equal(call_loss(&rc), call_loss(&dc), 1e-4);
    const dml_loss_row *rows[2] = {&dml_loss_row_arcface, &dml_loss_row_cosface};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(rows[i]->class_rows, 1);
        assert_true(dml_loss_param_index(rows[i], "sub_centers") >= 0);
        assert_true(dml_loss_param_index(rows[i], "lr_multiplier") >= 0);
        assert_true(rows[i]->needs & DML_LOSS_NEEDS_LABELS);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_loss_op_has_a_gradient_check),
        cmocka_unit_test(test_every_loss_row),
        cmocka_unit_test(test_triplet_hand_computed),
        cmocka_unit_test(test_contrastive_hand_computed),
        cmocka_unit_test(test_mnr_hand_computed),
        cmocka_unit_test(test_memory_hand_computed),
        cmocka_unit_test(test_sharded_rows_add_up_to_the_whole_loss),
        cmocka_unit_test(test_cosine_pair_hand_computed),
        cmocka_unit_test(test_proxy_anchor_hand_computed),
        cmocka_unit_test(test_duplicates_and_two_rows),
        cmocka_unit_test(test_multi_similarity_hand_computed),
        cmocka_unit_test(test_circle_hand_computed),
        cmocka_unit_test(test_similarity_losses_without_pairs),
        cmocka_unit_test(test_similarity_rows_build),
        cmocka_unit_test(test_supcon_hand_computed),
        cmocka_unit_test(test_margin_softmax_hand_computed),
        cmocka_unit_test(test_rows_build_through_loss_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
