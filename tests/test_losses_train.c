/* Every loss of losses.md trains a small MLP on synthetic clusters to a clearly better retrieval
 * precision than its untrained start. The figure is precision@1 (leave-one-out nearest neighbour
 * under L2) on held-out rows, before and after, both printed. The data hides 8 classes in a 4-d
 * subspace under 28 dimensions of noise, so an untrained encoder retrieves by the noise and a
 * loss has something to learn; the signal also carries most of the variance, so an autoencoder's
 * bottleneck can find it without labels. */
#include "tests/testutil.h"

#include <math.h>
#include <string.h>

#include "losses/losses.h"
#include "optim/optim.h"

#define CLASSES 8
#define N_TRAIN (CLASSES * 64)
#define N_TEST (CLASSES * 32)
#define D_IN 32
#define D_SIGNAL 4
#define D_EMB 16
#define D_BOTTLENECK 4
#define PER_CLASS 8 /* rows of each class in a batch */
#define BATCH (CLASSES * PER_CLASS)
#define STEPS 300
#define STEPS_AUTOENCODER 1500 /* no labels to pull classes apart: slower to find them */
#define LR 3e-3f
#define MIN_GAIN 0.15 /* after - before, precision@1 */
#define MIN_AFTER 0.80
#define MIN_AFTER_AUTOENCODER 0.55 /* reconstruction keeps what has variance, not what has labels */

typedef struct rows {
    float x[N_TRAIN * D_IN];
    int32_t y[N_TRAIN];
    int n;
} rows;

static rows train_set, test_set;

/* Class centres N(0, 2^2) in the signal dimensions, N(0, 0.5^2) around them; noise N(0, 1)
 * elsewhere. unit: squashed into (0, 1) by a logistic, for the BCE reconstruction. Rows are
 * grouped by class. */
static void make_rows(rows *r, int n, uint64_t seed, int unit)
{
    dml_rng rng;
    dml_rng_seed(&rng, 5); /* the same centres for both sets */
    float centre[CLASSES][D_SIGNAL];
    for (int c = 0; c < CLASSES; c++)
        for (int t = 0; t < D_SIGNAL; t++)
            centre[c][t] = 2.0f * dml_rng_normal(&rng);
    dml_rng_seed(&rng, seed);
    r->n = n;
    for (int i = 0; i < n; i++) {
        int c = i / (n / CLASSES);
        float *xi = r->x + (size_t)i * D_IN;
        r->y[i] = c;
        for (int t = 0; t < D_IN; t++) {
            float v = dml_rng_normal(&rng);
            xi[t] = t < D_SIGNAL ? centre[c][t] + 0.5f * v : v;
            if (unit)
                xi[t] = 1.0f / (1.0f + expf(-xi[t]));
        }
    }
}

/* Leave-one-out precision@1 of emb[n, d] under L2, ties to the lower row. */
static double precision_at_1(const float *emb, const int32_t *y, int n, int d)
{
    int hits = 0;
    for (int i = 0; i < n; i++) {
        int best = -1;
        float best_d = INFINITY;
        for (int j = 0; j < n; j++) {
            if (j == i)
                continue;
            float s = 0.0f;
            for (int t = 0; t < d; t++) {
                float e = emb[(size_t)i * d + t] - emb[(size_t)j * d + t];
                s += e * e;
            }
            if (s < best_d) {
                best_d = s;
                best = j;
            }
        }
        hits += best >= 0 && y[best] == y[i];
    }
    return (double)hits / n;
}

/* ---- one training set-up: the encoder (and decoder), what the loss reads, the loss ---- */
typedef struct trainer trainer;
typedef dml_tensor *(*loss_fn)(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels);

struct trainer {
    const char *name;
    loss_fn loss;
    int autoencoder; /* encoder 32-64-4 and a decoder back; else an L2-normalised 32-64-16 */
    int bce;         /* reconstruction by BCE on (0, 1) inputs */
    int quantized;   /* precision of the PQ-decoded embeddings; the joint loss's codebooks */
    dml_mlp enc, dec;
    dml_pq pq;
    float *emb;      /* [N_TRAIN, D_EMB] scratch for the codebooks */
};

static int emb_dim(const trainer *t)
{
    return t->autoencoder ? D_BOTTLENECK : D_EMB;
}

static dml_tensor *encode(trainer *t, dml_graph *g, dml_tensor *x)
{
    return t->autoencoder ? dml_mlp_body(g, &t->enc, x) : dml_mlp_forward(g, &t->enc, x);
}

/* The embeddings of every row of r into out[r->n, emb_dim]; PQ-decoded when quantized. */
static void embed(trainer *t, const rows *r, float *out)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 20);
    dml_tensor *z = encode(t, &g, dml_leaf(&g, (float *)r->x, NULL, r->n, D_IN));
    assert_non_null(z);
    memcpy(out, z->data, (size_t)r->n * emb_dim(t) * sizeof(float));
    dml_graph_free(&g);
    if (t->quantized) {
        int32_t idx[N_TRAIN * D_EMB];
        assert_int_equal(dml_pq_assign(&t->pq, out, (size_t)r->n, idx), DML_OK);
        dml_pq_decode_idx(&t->pq, idx, (size_t)r->n, out);
    }
}

/* Codebooks (M = 4, K = 16) fitted on the training embeddings: fresh, or refined. */
static void fit_codebooks(trainer *t, int fresh, dml_rng *rng)
{
    int keep = t->quantized;
    t->quantized = 0;
    embed(t, &train_set, t->emb);
    t->quantized = keep;
    if (fresh)
        assert_int_equal(dml_pq_train(&t->pq, t->emb, N_TRAIN, 10, DML_KMEANS_PLUSPLUS, rng, NULL),
                         DML_OK);
    else
        assert_int_equal(dml_pq_refine(&t->pq, t->emb, N_TRAIN, 3, NULL), DML_OK);
}

static double test_precision(trainer *t)
{
    static float out[N_TEST * D_EMB];
    embed(t, &test_set, out);
    return precision_at_1(out, test_set.y, test_set.n, emb_dim(t));
}

/* A batch of PER_CLASS random rows of every class, grouped by class. */
static void draw_batch(dml_rng *rng, float *x, int32_t *labels)
{
    int per_class_rows = N_TRAIN / CLASSES;
    for (int c = 0, b = 0; c < CLASSES; c++)
        for (int k = 0; k < PER_CLASS; k++, b++) {
            int row = c * per_class_rows + (int)dml_rng_below(rng, (uint32_t)per_class_rows);
            memcpy(x + (size_t)b * D_IN, train_set.x + (size_t)row * D_IN, D_IN * sizeof(float));
            labels[b] = train_set.y[row];
        }
}

static void train_and_check(trainer *t)
{
    dml_rng rng;
    dml_rng_seed(&rng, 17);
    int enc_w[] = {D_IN, 64, emb_dim(t)}, dec_w[] = {D_BOTTLENECK, 64, D_IN};
    make_rows(&train_set, N_TRAIN, 1, t->bce);
    make_rows(&test_set, N_TEST, 2, t->bce);
    assert_int_equal(dml_mlp_init(&t->enc, 3, enc_w, DML_ACT_RELU,
                                  t->autoencoder ? DML_OUTPUT_NONE : DML_OUTPUT_L2, DML_INIT_HE,
                                  &rng, NULL),
                     DML_OK);
    dml_param_view params[8];
    int n_params = dml_mlp_params(&t->enc, params);
    if (t->autoencoder) {
        assert_int_equal(dml_mlp_init(&t->dec, 3, dec_w, DML_ACT_RELU, DML_OUTPUT_NONE,
                                      DML_INIT_HE, &rng, NULL),
                         DML_OK);
        n_params += dml_mlp_params(&t->dec, params + n_params);
    }
    static float emb[N_TRAIN * D_EMB];
    t->emb = emb;
    if (t->quantized) {
        assert_int_equal(dml_pq_init(&t->pq, D_EMB, 4, 4, NULL), DML_OK);
        fit_codebooks(t, 1, &rng);
    }
    double before = test_precision(t);

    dml_optim opt;
    dml_optim_spec spec = {.kind = DML_OPTIM_ADAM};
    assert_int_equal(dml_optim_init(&opt, &spec, params, n_params, NULL), DML_OK);
    dml_graph g;
    dml_graph_init(&g, 1 << 20);
    static float x[BATCH * D_IN];
    int32_t labels[BATCH];
    float first = 0.0f, last = 0.0f;
    int steps = t->autoencoder ? STEPS_AUTOENCODER : STEPS;
    for (int step = 0; step < steps; step++) {
        if (t->quantized && step > 0 && step % 50 == 0)
            fit_codebooks(t, 0, &rng); /* the trainer's codebook_every */
        draw_batch(&rng, x, labels);
        dml_optim_zero_grad(&opt);
        dml_tensor *loss = t->loss(t, &g, dml_leaf(&g, x, NULL, BATCH, D_IN), labels);
        assert_non_null(loss);
        assert_int_equal(dml_backward(&g, loss), DML_OK);
        assert_true(isfinite(loss->data[0]));
        first = step == 0 ? loss->data[0] : first;
        last = loss->data[0];
        dml_optim_step(&opt, LR);
        dml_graph_reset(&g);
    }
    double after = test_precision(t);
    print_message("  %-34s precision@1 %.3f -> %.3f (loss %.4f -> %.4f, %d steps)\n", t->name,
                  before, after, first, last, steps);
    assert_true(after >= before + MIN_GAIN);
    assert_true(after >= (t->autoencoder ? MIN_AFTER_AUTOENCODER : MIN_AFTER));
    dml_graph_free(&g);
    dml_optim_free(&opt);
    dml_mlp_free(&t->enc);
    if (t->autoencoder)
        dml_mlp_free(&t->dec);
    if (t->quantized)
        dml_pq_free(&t->pq);
}

/* ---- the losses ---- */
static dml_tensor *distances(trainer *t, dml_graph *g, dml_tensor *x, dml_distance dist)
{
    dml_tensor *z = encode(t, g, x);
    return dml_distance_matrix(g, z, z, dist);
}

static dml_tensor *contrastive(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    return dml_loss_contrastive(g, distances(t, g, x, DML_DIST_EUCLIDEAN), labels, 0.0f, 1.0f, 2,
                                DML_REDUCE_MEAN);
}

static dml_tensor *triplet_all(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    return dml_loss_triplet(g, distances(t, g, x, DML_DIST_EUCLIDEAN), labels, 0.2f, DML_MINER_ALL,
                            0, DML_REDUCE_MEAN_NONZERO);
}

static dml_tensor *triplet_hard(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    return dml_loss_triplet(g, distances(t, g, x, DML_DIST_SQUARED_EUCLIDEAN), labels, 0.2f,
                            DML_MINER_HARD, 0, DML_REDUCE_MEAN);
}

static dml_tensor *triplet_semihard(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    return dml_loss_triplet(g, distances(t, g, x, DML_DIST_EUCLIDEAN), labels, 0.2f,
                            DML_MINER_SEMIHARD, 0, DML_REDUCE_MEAN);
}

static dml_tensor *triplet_soft(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    return dml_loss_triplet(g, distances(t, g, x, DML_DIST_COSINE), labels, 0.0f, DML_MINER_ALL, 1,
                            DML_REDUCE_MEAN);
}

/* Explicit triplets: row i, its neighbour in the class (batch rows are grouped by class), and
 * the row at the same place in the next class. */
static dml_tensor *triplet_explicit(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    (void)labels;
    static int32_t a[BATCH], p[BATCH], n[BATCH]; /* the loss reads them until backward */
    for (int i = 0; i < BATCH; i++) {
        a[i] = i;
        p[i] = i ^ 1;
        n[i] = (i + PER_CLASS) % BATCH;
    }
    return dml_loss_triplet_explicit(g, distances(t, g, x, DML_DIST_EUCLIDEAN), a, p, n, BATCH,
                                     0.2f, 0, DML_REDUCE_MEAN);
}

/* Pairs: even rows are anchors, the next (odd) row of the same class their positive. */
static dml_tensor *mnr(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    static float xa[BATCH / 2 * D_IN], xp[BATCH / 2 * D_IN];
    static int32_t pair_labels[BATCH / 2];
    for (int i = 0; i < BATCH / 2; i++) {
        memcpy(xa + (size_t)i * D_IN, x->data + (size_t)(2 * i) * D_IN, D_IN * sizeof(float));
        memcpy(xp + (size_t)i * D_IN, x->data + (size_t)(2 * i + 1) * D_IN, D_IN * sizeof(float));
        pair_labels[i] = labels[2 * i];
    }
    dml_tensor *za = encode(t, g, dml_leaf(g, xa, NULL, BATCH / 2, D_IN));
    dml_tensor *zp = encode(t, g, dml_leaf(g, xp, NULL, BATCH / 2, D_IN));
    return dml_loss_mnr(g, za, zp, NULL, pair_labels, 20.0f, 1);
}

static dml_tensor *cosine_pair(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    return dml_loss_cosine_pair(g, encode(t, g, x), labels, NULL);
}

/* Multi-Similarity with its miner and Circle, at PML's defaults, on the batch's cosines. */
static dml_tensor *multi_similarity(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    dml_tensor *s = dml_cosine_sim_refs(g, encode(t, g, x), NULL);
    return dml_loss_multi_similarity(g, s, labels, labels, 2.0f, 50.0f, 0.5f, 1, 0.1f, NULL);
}

static dml_tensor *circle(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    dml_tensor *s = dml_cosine_sim_refs(g, encode(t, g, x), NULL);
    return dml_loss_circle(g, s, NULL, labels, labels, 0.4f, 80.0f, NULL);
}

/* DQN: the cosine loss plus lambda times the quantization error of the current codebooks. */
static dml_tensor *joint(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    dml_tensor *z = encode(t, g, x);
    dml_tensor *sim = dml_loss_cosine_pair(g, z, labels, NULL);
    return dml_add(g, sim, dml_scale(g, dml_loss_quantization(g, z, &t->pq), 0.1f));
}

static dml_tensor *reconstruction(trainer *t, dml_graph *g, dml_tensor *x, const int32_t *labels)
{
    (void)labels;
    dml_tensor *out = dml_mlp_forward(g, &t->dec, encode(t, g, x));
    return t->bce ? dml_loss_bce_logits(g, out, x) : dml_mse(g, out, x);
}

#define CASE(fn_name, label, ...)                                        \
    static void test_##fn_name(void **state)                             \
    {                                                                    \
        (void)state;                                                     \
        static trainer t = {.name = label, .loss = fn_name, __VA_ARGS__}; \
        train_and_check(&t);                                             \
    }

CASE(contrastive, "contrastive (p = 2)")
CASE(triplet_all, "triplet, batch-all")
CASE(triplet_hard, "triplet, batch-hard (squared L2)")
CASE(triplet_semihard, "triplet, semihard")
CASE(triplet_soft, "triplet, soft margin (cosine)")
CASE(triplet_explicit, "triplet, explicit triplets")
CASE(mnr, "multiple negatives ranking")
CASE(cosine_pair, "DQN pairwise cosine")
CASE(multi_similarity, "multi-similarity, MS miner")
CASE(circle, "circle (m = 0.4, gamma = 80)")
CASE(joint, "joint quantization (PQ M = 4, K = 16)", .quantized = 1)
CASE(reconstruction, "reconstruction, MSE (bottleneck 4)", .autoencoder = 1)

static void test_reconstruction_bce(void **state)
{
    (void)state;
    static trainer t = {.name = "reconstruction, BCE (bottleneck 4)", .loss = reconstruction,
                        .autoencoder = 1, .bce = 1};
    train_and_check(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contrastive),      cmocka_unit_test(test_triplet_all),
        cmocka_unit_test(test_triplet_hard),     cmocka_unit_test(test_triplet_semihard),
        cmocka_unit_test(test_triplet_soft),     cmocka_unit_test(test_triplet_explicit),
        cmocka_unit_test(test_mnr),              cmocka_unit_test(test_cosine_pair),
        cmocka_unit_test(test_multi_similarity), cmocka_unit_test(test_circle),
        cmocka_unit_test(test_joint),            cmocka_unit_test(test_reconstruction),
        cmocka_unit_test(test_reconstruction_bce),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
