/* dml's losses against PyTorch: tests/fixtures/losses/torch.txt holds each loss of losses.md
 * computed by PyTorch in float64 on fixed float32 inputs (written by
 * tests/scripts/torch_loss_fixtures.py, whose header describes the format). Every value and every
 * gradient element must match within 1e-5 relative: |dml - torch| <= 1e-5 * max(1, |torch|).
 * Torch is never needed here: the fixture is committed. */
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "losses/losses.h"

#define FIXTURE "tests/fixtures/losses/torch.txt"
#define TOLERANCE 1e-5
#define MAX_INPUTS 4
#define MAX_OPTS 12
#define MAX_ROWS 64

typedef struct input {
    char name[16];
    int rows, cols;
    float *x;
    double *grad; /* expected; NULL when the fixture gives none */
} input;

typedef struct fixture_case {
    char name[64];
    char opt_key[MAX_OPTS][24], opt_val[MAX_OPTS][24];
    int n_opts, n_labels, n_inputs, n_list;
    int32_t labels[MAX_ROWS], anchor[MAX_ROWS], positive[MAX_ROWS], negative[MAX_ROWS];
    input in[MAX_INPUTS];
    double value;
} fixture_case;

static const char *opt(const fixture_case *c, const char *key)
{
    for (int i = 0; i < c->n_opts; i++)
        if (!strcmp(c->opt_key[i], key))
            return c->opt_val[i];
    fail_msg("%s: option '%s' missing from the fixture", c->name, key);
    return "";
}

static double num(const fixture_case *c, const char *key)
{
    return strtod(opt(c, key), NULL);
}

static input *find(fixture_case *c, const char *name)
{
    for (int i = 0; i < c->n_inputs; i++)
        if (!strcmp(c->in[i].name, name))
            return &c->in[i];
    return NULL;
}

static void read_ints(FILE *f, int32_t *out, int *n)
{
    assert_int_equal(fscanf(f, "%d", n), 1);
    assert_true(*n >= 0 && *n <= MAX_ROWS);
    for (int i = 0; i < *n; i++)
        assert_int_equal(fscanf(f, "%d", &out[i]), 1);
}

/* One block "case ... end"; 0 at the end of the file. */
static int read_case(FILE *f, fixture_case *c)
{
    char word[64];
    memset(c, 0, sizeof *c);
    if (fscanf(f, "%63s", word) != 1)
        return 0;
    assert_string_equal(word, "case");
    assert_int_equal(fscanf(f, "%63s", c->name), 1);
    while (fscanf(f, "%63s", word) == 1 && strcmp(word, "end") != 0) {
        if (!strcmp(word, "opt")) {
            assert_true(c->n_opts < MAX_OPTS);
            assert_int_equal(fscanf(f, "%23s %23s", c->opt_key[c->n_opts], c->opt_val[c->n_opts]), 2);
            c->n_opts++;
        } else if (!strcmp(word, "labels")) {
            read_ints(f, c->labels, &c->n_labels);
        } else if (!strcmp(word, "anchor")) {
            read_ints(f, c->anchor, &c->n_list);
        } else if (!strcmp(word, "positive")) {
            read_ints(f, c->positive, &c->n_list);
        } else if (!strcmp(word, "negative")) {
            read_ints(f, c->negative, &c->n_list);
        } else if (!strcmp(word, "input")) {
            assert_true(c->n_inputs < MAX_INPUTS);
            input *in = &c->in[c->n_inputs++];
            assert_int_equal(fscanf(f, "%15s %d %d", in->name, &in->rows, &in->cols), 3);
            size_t n = (size_t)in->rows * in->cols;
            in->x = malloc(n * sizeof *in->x);
            assert_non_null(in->x);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(fscanf(f, "%f", &in->x[i]), 1);
        } else if (!strcmp(word, "value")) {
            assert_int_equal(fscanf(f, "%lf", &c->value), 1);
        } else if (!strcmp(word, "grad")) {
            assert_int_equal(fscanf(f, "%63s", word), 1);
            input *in = find(c, word);
            assert_non_null(in);
            size_t n = (size_t)in->rows * in->cols;
            in->grad = malloc(n * sizeof *in->grad);
            assert_non_null(in->grad);
            for (size_t i = 0; i < n; i++)
                assert_int_equal(fscanf(f, "%lf", &in->grad[i]), 1);
        } else {
            fail_msg("%s: unknown line '%s' in " FIXTURE, c->name, word);
        }
    }
    return 1;
}

static void free_case(fixture_case *c)
{
    for (int i = 0; i < c->n_inputs; i++) {
        free(c->in[i].x);
        free(c->in[i].grad);
    }
}

static dml_distance distance(const fixture_case *c)
{
    const char *d = opt(c, "dist");
    return !strcmp(d, "cosine")              ? DML_DIST_COSINE
           : !strcmp(d, "squared_euclidean") ? DML_DIST_SQUARED_EUCLIDEAN
                                             : DML_DIST_EUCLIDEAN;
}

static dml_reduction reduction(const fixture_case *c)
{
    return !strcmp(opt(c, "reduction"), "mean_nonzero") ? DML_REDUCE_MEAN_NONZERO : DML_REDUCE_MEAN;
}

/* The dml loss the case names, over leaves t[] made from its inputs (in the fixture's order). */
static dml_tensor *build(dml_graph *g, fixture_case *c, dml_tensor **t, dml_pq *pq)
{
    const char *loss = opt(c, "loss");
    dml_tensor *z = t[find(c, "z") - c->in];
    if (!strcmp(loss, "triplet") || !strcmp(loss, "triplet_explicit") ||
        !strcmp(loss, "contrastive")) {
        dml_tensor *d = dml_distance_matrix(g, z, z, distance(c));
        if (!strcmp(loss, "contrastive"))
            return dml_loss_contrastive(g, d, c->labels, (float)num(c, "pos_margin"),
                                        (float)num(c, "neg_margin"), (int)num(c, "power"),
                                        reduction(c));
        if (!strcmp(loss, "triplet_explicit"))
            return dml_loss_triplet_explicit(g, d, c->anchor, c->positive, c->negative, c->n_list,
                                             (float)num(c, "margin"), (int)num(c, "soft"),
                                             reduction(c));
        const char *m = opt(c, "miner");
        dml_miner miner = !strcmp(m, "hard") ? DML_MINER_HARD
                          : !strcmp(m, "semihard") ? DML_MINER_SEMIHARD
                                                   : DML_MINER_ALL;
        return dml_loss_triplet(g, d, c->labels, (float)num(c, "margin"), miner, (int)num(c, "soft"),
                                reduction(c));
    }
    if (!strcmp(loss, "mnr")) {
        input *n = find(c, "n");
        return dml_loss_mnr(g, z, t[find(c, "p") - c->in], n ? t[n - c->in] : NULL,
                            num(c, "masked") ? c->labels : NULL, (float)num(c, "scale"),
                            (int)num(c, "symmetric"));
    }
    if (!strcmp(loss, "multi_similarity") || !strcmp(loss, "circle")) {
        /* a memory "m" is labelled by the labels after the batch's */
        input *m = find(c, "m");
        dml_tensor *s = dml_cosine_sim_refs(g, z, m ? t[m - c->in] : NULL);
        if (!strcmp(loss, "circle"))
            return dml_loss_circle(g, s, NULL, c->labels, c->labels, (float)num(c, "m"),
                                   (float)num(c, "gamma"), NULL);
        return dml_loss_multi_similarity(g, s, c->labels, c->labels, (float)num(c, "alpha"),
                                         (float)num(c, "beta"), (float)num(c, "base"),
                                         (int)num(c, "miner"), (float)num(c, "epsilon"), NULL);
    }
    if (!strcmp(loss, "supcon")) {
        input *p = find(c, "p");
        return dml_loss_supcon(g, z, p ? t[p - c->in] : NULL, c->n_labels ? c->labels : NULL,
                               (float)num(c, "temperature"), NULL);
    }
    if (!strcmp(loss, "arcface") || !strcmp(loss, "cosface")) {
        dml_tensor *w = t[find(c, "w") - c->in];
        int classes = (int)num(c, "classes"), k = (int)num(c, "sub_centers");
        float scale = (float)num(c, "scale");
        if (!strcmp(loss, "cosface"))
            return dml_loss_cosface(g, z, w, c->labels, classes, k, (float)num(c, "margin"), scale);
        /* the fixture's margin is PML's, in degrees */
        return dml_loss_arcface(g, z, w, c->labels, classes, k,
                                (float)(num(c, "margin") * 3.14159265358979323846 / 180.0), scale);
    }
    if (!strcmp(loss, "cosine_pair"))
        return dml_loss_cosine_pair(g, z, c->labels, NULL);
    if (!strcmp(loss, "proxy_anchor"))
        return dml_loss_proxy_anchor(g, z, t[find(c, "proxies") - c->in], c->labels,
                                     (float)num(c, "margin"), (float)num(c, "alpha"));
    if (!strcmp(loss, "bce_logits"))
        return dml_loss_bce_logits(g, z, t[find(c, "t") - c->in]);
    if (!strcmp(loss, "mse"))
        return dml_mse(g, z, t[find(c, "t") - c->in]);
    if (!strcmp(loss, "quantization")) {
        input *cent = find(c, "centroids");
        int m = (int)num(c, "m"), k = (int)num(c, "k");
        assert_int_equal(dml_pq_init(pq, z->cols, m, __builtin_ctz((unsigned)k), NULL), DML_OK);
        memcpy(pq->centroids, cent->x, (size_t)cent->rows * cent->cols * sizeof(float));
        return dml_loss_quantization(g, z, pq);
    }
    fail_msg("%s: unknown loss '%s'", c->name, loss);
    return NULL;
}

static double rel_err(double got, double want)
{
    return fabs(got - want) / fmax(1.0, fabs(want));
}

/* Runs one case; returns the worst relative error over the value and the gradients. */
static double check_case(fixture_case *c)
{
    dml_graph g;
    dml_graph_init(&g, 1 << 20);
    dml_pq pq = {0};
    dml_tensor *t[MAX_INPUTS];
    for (int i = 0; i < c->n_inputs; i++) /* a leaf with a gradient for every input torch differentiated */
        t[i] = dml_leaf_copy(&g, c->in[i].x, c->in[i].rows, c->in[i].cols, c->in[i].grad != NULL);
    dml_tensor *loss = build(&g, c, t, &pq);
    assert_non_null(loss);
    assert_int_equal(dml_backward(&g, loss), DML_OK);
    double worst = rel_err(loss->data[0], c->value);
    if (worst > TOLERANCE)
        fail_msg("%s: loss %.9g, torch %.9g", c->name, loss->data[0], c->value);
    for (int i = 0; i < c->n_inputs; i++) {
        if (!c->in[i].grad)
            continue;
        for (int k = 0; k < c->in[i].rows * c->in[i].cols; k++) {
            float got = t[i]->grad ? t[i]->grad[k] : 0.0f;
            double e = rel_err(got, c->in[i].grad[k]);
            if (e > TOLERANCE)
                fail_msg("%s: d loss / d %s[%d] = %.9g, torch %.9g", c->name, c->in[i].name, k, got,
                         c->in[i].grad[k]);
            worst = fmax(worst, e);
        }
    }
    dml_pq_free(&pq);
    dml_graph_free(&g);
    return worst;
}

static void test_losses_match_torch(void **state)
{
    (void)state;
    FILE *f = fopen(FIXTURE, "r");
    if (!f)
        fail_msg("cannot open " FIXTURE " (run from the repository root)");
    char header[256];
    assert_non_null(fgets(header, sizeof header, f)); /* the "# ..." line */
    fixture_case *c = malloc(sizeof *c);
    assert_non_null(c);
    int n = 0;
    while (read_case(f, c)) {
        double worst = check_case(c);
        char what[160];
        snprintf(what, sizeof what, "%s against PyTorch, worst relative error", c->name);
        tu_assert_measured(what, worst, TOLERANCE);
        free_case(c);
        n++;
    }
    fclose(f);
    free(c);
    print_message("  %d cases from " FIXTURE "\n", n);
    assert_true(n >= 20);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_losses_match_torch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
