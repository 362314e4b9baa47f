/* Config files: defaults, a file setting every key, --set overrides, each kind of error with
 * its exact message and line:column, positions for later errors, and print -> load. */
#include "tests/testutil.h"

#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/size.h"
#include "train/config.h"

#define FIXTURES "tests/fixtures/config/"

static char dir[512];

static int setup(void **state)
{
    (void)state;
    tu_mkdtemp(dir, sizeof dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return tu_system("rm -rf '%s'", dir) == 0 ? 0 : -1;
}

/* Writes text to dir/name; the path is static storage. */
static const char *write_config(const char *name, const char *text)
{
    static char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    return path;
}

static dml_status load(const char *text, int n_sets, char *const *sets, dml_config *cfg,
                       dml_error *err)
{
    dml_error_clear(err);
    return dml_config_load(write_config("c.yaml", text), n_sets, sets, cfg, err);
}

/* One bad config: the YAML text, an optional --set, and the error expected. */
typedef struct bad_case {
    const char *yaml;
    const char *set; /* NULL: none */
    int line, col;   /* 0 for a --set or a default */
    const char *msg;
} bad_case;

static void check_bad(const bad_case *cases, int n)
{
    dml_config *cfg = malloc(sizeof *cfg);
    assert_non_null(cfg);
    for (int i = 0; i < n; i++) {
        const bad_case *b = &cases[i];
        char *sets[1] = {(char *)b->set};
        dml_error err;
        assert_int_equal(load(b->yaml, b->set ? 1 : 0, sets, cfg, &err), DML_ERR_CONFIG);
        assert_int_equal(err.code, DML_ERR_CONFIG);
        assert_string_equal(err.msg, b->msg);
        char file[600];
        snprintf(file, sizeof file, "%s/c.yaml", dir);
        assert_string_equal(err.file, b->set && !b->line ? "--set" : file);
        assert_int_equal(err.line, b->line);
        assert_int_equal(err.col, b->col);
    }
    free(cfg);
}
#define CHECK_BAD(cases) check_bad(cases, (int)(sizeof cases / sizeof cases[0]))

/* The settings of two configs compare equal (where they came from aside). */
static void assert_same_settings(const dml_config *a, const dml_config *b)
{
    dml_config *x = malloc(sizeof *x), *y = malloc(sizeof *y);
    assert_true(x && y);
    memcpy(x, a, sizeof *x);
    memcpy(y, b, sizeof *y);
    memset(x->path, 0, sizeof x->path);
    memset(y->path, 0, sizeof y->path);
    memset(x->keys, 0, sizeof x->keys);
    memset(y->keys, 0, sizeof y->keys);
    x->n_keys = y->n_keys = 0;
    assert_memory_equal(x, y, sizeof *x);
    free(x);
    free(y);
}

/* Parameter key of the config's loss (which must have it). */
static float lp(const dml_config *c, const char *key)
{
    int i = dml_loss_param_index(c->loss.row, key);
    assert_true(i >= 0);
    return c->loss.p[i];
}

static void test_defaults(void **state)
{
    (void)state;
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    assert_int_equal(dml_config_load(FIXTURES "defaults.yaml", 0, NULL, c, &err), DML_OK);
    assert_string_equal(c->name, "defaults");
    assert_int_equal(c->seed, 42);
    assert_string_equal(c->data.train, "fashion-mnist:train");
    assert_string_equal(c->data.test, "fashion-mnist:test");
    assert_float_equal(c->data.val_fraction, 0.1f, 0.0);
    assert_int_equal(c->data.labels_per_class, 0);
    assert_false(c->data.unlabelled);
    assert_int_equal(c->data.normalize, DML_NORM_UNIT);
    assert_int_equal(c->data.pairs, DML_PAIRS_NONE);
    assert_int_equal(c->model.type, DML_NET_MLP);
    assert_int_equal(c->model.n_hidden, 2);
    assert_int_equal(c->model.hidden[0], 512);
    assert_int_equal(c->model.hidden[1], 256);
    assert_int_equal(c->model.dim, 128);
    assert_int_equal(c->model.activation, DML_CFG_ACT_RELU);
    assert_int_equal(c->model.output, DML_CFG_OUT_L2);
    assert_int_equal(c->model.init_scheme, DML_INIT_TORCH);
    assert_string_equal(c->model.init, "");
    assert_int_equal(c->model.freeze, 0);
    assert_string_equal(c->loss.row->name, "triplet");
    assert_int_equal(c->loss.row->n_params, 5);
    assert_float_equal(lp(c, "distance"), DML_DIST_EUCLIDEAN, 0.0);
    assert_float_equal(lp(c, "margin"), 0.2f, 0.0);
    assert_float_equal(lp(c, "miner"), DML_MINER_ALL, 0.0);
    assert_float_equal(lp(c, "soft"), 0, 0.0);
    assert_float_equal(lp(c, "reduction"), DML_REDUCE_MEAN_NONZERO, 0.0); /* batch-all triplet */
    assert_int_equal(c->loss.reconstruction, DML_RECON_MSE);
    assert_float_equal(c->loss.reconstruction_weight, 0.0f, 0.0);
    assert_float_equal(c->loss.quantization.weight, 0.0f, 0.0);
    assert_int_equal(c->loss.quantization.warmup_epochs, 1);
    assert_int_equal(c->loss.quantization.codebook_every, 0);
    assert_false(c->loss.quantization.tanh);
    assert_int_equal(c->sampler.type, DML_SAMPLER_M_PER_CLASS);
    assert_int_equal(c->sampler.m, 4);
    assert_false(c->sampler.drop_last);
    assert_int_equal(c->train.batch_size, 256);
    assert_int_equal(c->train.epochs, 10);
    assert_int_equal(c->train.steps, 0);
    assert_int_equal(c->train.optimizer, DML_OPTIM_ADAM);
    assert_float_equal(c->train.lr, 1e-3f, 0.0);
    assert_float_equal(c->train.weight_decay, 0.0f, 0.0);
    assert_float_equal(c->train.momentum, 0.9f, 0.0);
    assert_int_equal(c->train.schedule, DML_SCHEDULE_CONSTANT);
    assert_int_equal(c->train.warmup_steps, 0);
    assert_float_equal(c->train.clip_grad_norm, 0.0f, 0.0);
    assert_int_equal(c->train.eval_every, 0);
    assert_int_equal(c->train.checkpoint_every, 0);
    assert_int_equal(c->train.early_stop_patience, 0);
    assert_int_equal(c->train.threads, 0);
    assert_int_equal(c->pq.m, 4);
    assert_int_equal(c->pq.k, 256);
    assert_int_equal(c->pq.iters, 25);
    static const char *const metrics[] = {"map_at_r", "precision_at_1", "r_precision",
                                          "map_all",  "knn_accuracy",   "nmi"};
    assert_int_equal(c->eval.n_metrics, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(c->eval.metrics[i], metrics[i]);
    assert_true(c->eval.pq);
    assert_int_equal(c->eval.knn_k, 5);
    assert_int_equal(c->n_keys, 0);

    /* The loaded defaults are dml_config_defaults plus what depends on other keys. */
    dml_config *d = malloc(sizeof *d);
    dml_config_defaults(d);
    snprintf(d->name, sizeof d->name, "defaults");
    d->loss.p[dml_loss_param_index(d->loss.row, "reduction")] = DML_REDUCE_MEAN_NONZERO;
    assert_same_settings(c, d);
    free(d);
    free(c);
}

static void test_defaults_depend_on_keys(void **state)
{
    (void)state;
    dml_config c;
    dml_error err;
    /* Name: the file name without .yaml or .yml. */
    assert_int_equal(dml_config_load(write_config("my-run.yml", ""), 0, NULL, &c, &err), DML_OK);
    assert_string_equal(c.name, "my-run");
    /* Reduction: mean_nonzero only for batch-all triplets, unless given. */
    assert_int_equal(load("loss:\n  miner: hard\n", 0, NULL, &c, &err), DML_OK);
    assert_float_equal(lp(&c, "reduction"), DML_REDUCE_MEAN, 0.0);
    assert_int_equal(load("loss:\n  type: contrastive\n", 0, NULL, &c, &err), DML_OK);
    assert_float_equal(lp(&c, "reduction"), DML_REDUCE_MEAN, 0.0);
    assert_int_equal(load("loss:\n  reduction: mean\n", 0, NULL, &c, &err), DML_OK);
    assert_float_equal(lp(&c, "reduction"), DML_REDUCE_MEAN, 0.0);
    /* ... settled once every key is read: a later --set loss.miner moves it too */
    char *hard[] = {"loss.miner=hard"};
    assert_int_equal(load("loss:\n  miner: all\n", 1, hard, &c, &err), DML_OK);
    assert_float_equal(lp(&c, "reduction"), DML_REDUCE_MEAN, 0.0);
    /* An empty section and YAML's null spellings: the defaults stay. */
    assert_int_equal(load("loss:\ntrain: ~\ndata:\n  test:\n", 0, NULL, &c, &err), DML_OK);
    assert_string_equal(c.loss.row->name, "triplet");
    assert_string_equal(c.data.test, "");
    /* Fashion-MNIST's test set is the default test set of Fashion-MNIST training data only. */
    assert_int_equal(load("data:\n  train: mine.csv\n", 0, NULL, &c, &err), DML_OK);
    assert_string_equal(c.data.test, "");
    assert_int_equal(load("data:\n  train: mine.csv\n  test: t.csv\n", 0, NULL, &c, &err), DML_OK);
    assert_string_equal(c.data.test, "t.csv");
    /* pq.m: the largest divisor of model.dim up to 4, unless given. */
    assert_int_equal(load("model:\n  dim: 102\n", 0, NULL, &c, &err), DML_OK);
    assert_int_equal(c.pq.m, 3);
    assert_int_equal(load("model:\n  dim: 31\n", 0, NULL, &c, &err), DML_OK);
    assert_int_equal(c.pq.m, 1);
    assert_int_equal(load("model:\n  dim: 64\n", 0, NULL, &c, &err), DML_OK);
    assert_int_equal(c.pq.m, 4);
}

static void test_full_file(void **state)
{
    (void)state;
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    assert_int_equal(dml_config_load(FIXTURES "full.yaml", 0, NULL, c, &err), DML_OK);
    assert_string_equal(c->path, FIXTURES "full.yaml");
    assert_string_equal(c->name, "full-run");
    assert_int_equal(c->seed, 7);
    assert_string_equal(c->data.train, "tests/fixtures/data/train.h5");
    assert_string_equal(c->data.test, "");
    assert_float_equal(c->data.val_fraction, 0.25f, 0.0);
    assert_int_equal(c->data.labels_per_class, 10);
    assert_false(c->data.unlabelled);
    assert_int_equal(c->data.normalize, DML_NORM_STANDARDIZE);
    assert_int_equal(c->data.pairs, DML_PAIRS_NONE);
    assert_int_equal(c->model.type, DML_NET_AUTOENCODER);
    assert_int_equal(c->model.n_hidden, 3);
    assert_int_equal(c->model.hidden[0], 64);
    assert_int_equal(c->model.hidden[1], 32);
    assert_int_equal(c->model.hidden[2], 16);
    assert_int_equal(c->model.dim, 8);
    assert_int_equal(c->model.activation, DML_CFG_ACT_LEAKY_RELU);
    assert_int_equal(c->model.output, DML_CFG_OUT_TANH);
    assert_int_equal(c->model.init_scheme, DML_INIT_HE);
    assert_string_equal(c->model.init, "runs/pretrain/model.h5");
    assert_int_equal(c->model.freeze, 2);
    assert_string_equal(c->loss.row->name, "contrastive");
    assert_float_equal(lp(c, "distance"), DML_DIST_COSINE, 0.0);
    assert_float_equal(lp(c, "reduction"), DML_REDUCE_MEAN_NONZERO, 0.0);
    assert_float_equal(lp(c, "pos_margin"), 0.1f, 0.0);
    assert_float_equal(lp(c, "neg_margin"), 0.8f, 0.0);
    assert_float_equal(lp(c, "power"), 1, 0.0);
    assert_int_equal(c->loss.reconstruction, DML_RECON_BCE);
    assert_float_equal(c->loss.reconstruction_weight, 0.5f, 0.0);
    assert_float_equal(c->loss.quantization.weight, 0.01f, 0.0);
    assert_int_equal(c->loss.quantization.warmup_epochs, 3);
    assert_int_equal(c->loss.quantization.codebook_every, 500);
    assert_true(c->loss.quantization.tanh);
    assert_int_equal(c->sampler.type, DML_SAMPLER_M_PER_CLASS);
    assert_int_equal(c->sampler.m, 8);
    assert_true(c->sampler.drop_last);
    assert_int_equal(c->train.batch_size, 64);
    assert_int_equal(c->train.epochs, 3);
    assert_int_equal(c->train.steps, 1000);
    assert_int_equal(c->train.optimizer, DML_OPTIM_SGD);
    assert_float_equal(c->train.lr, 0.05f, 0.0);
    assert_float_equal(c->train.weight_decay, 1e-4f, 0.0);
    assert_float_equal(c->train.momentum, 0.8f, 0.0);
    assert_int_equal(c->train.schedule, DML_SCHEDULE_STEP);
    assert_int_equal(c->train.warmup_steps, 100);
    assert_float_equal(c->train.clip_grad_norm, 5.0f, 0.0);
    assert_int_equal(c->train.eval_every, 200);
    assert_int_equal(c->train.checkpoint_every, 400);
    assert_int_equal(c->train.early_stop_patience, 4);
    assert_int_equal(c->train.threads, 2);
    assert_int_equal(c->pq.m, 2);
    assert_int_equal(c->pq.k, 16);
    assert_int_equal(c->pq.iters, 10);
    assert_int_equal(c->eval.n_metrics, 3);
    assert_string_equal(c->eval.metrics[0], "map_at_r");
    assert_string_equal(c->eval.metrics[1], "nmi");
    assert_string_equal(c->eval.metrics[2], "quantization_mse");
    assert_false(c->eval.pq);
    assert_int_equal(c->eval.knn_k, 10);
    free(c);
}

/* The ready-made configs of configs/ all validate. */
static void test_shipped_configs(void **state)
{
    (void)state;
    glob_t g;
    assert_int_equal(glob("configs/*.yaml", 0, NULL, &g), 0);
    assert_true(g.gl_pathc > 0);
    dml_config *c = malloc(sizeof *c);
    for (size_t i = 0; i < g.gl_pathc; i++) {
        dml_error err;
        char msg[1024] = "";
        if (dml_config_load(g.gl_pathv[i], 0, NULL, c, &err) != DML_OK)
            dml_error_format(&err, msg, sizeof msg);
        assert_string_equal(msg, "");
    }
    free(c);
    globfree(&g);
}

static void test_overrides(void **state)
{
    (void)state;
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    char *sets[] = {"train.lr=3e-4",
                    "loss.quantization.weight=0.5",
                    "model.hidden=[256,128]",
                    "loss.quantization={warmup_epochs: 2, tanh: true}",
                    "data.test=",
                    "eval.metrics=[nmi]",
                    "train.eval_every=50",
                    "train.lr=2e-4", /* the last one wins */
                    "name=override"};
    assert_int_equal(dml_config_load(FIXTURES "full.yaml", 9, sets, c, &err), DML_OK);
    assert_float_equal(c->train.lr, 2e-4f, 0.0);
    assert_float_equal(c->loss.quantization.weight, 0.5f, 0.0);
    assert_int_equal(c->model.n_hidden, 2);
    assert_int_equal(c->model.hidden[0], 256);
    assert_int_equal(c->model.hidden[1], 128);
    assert_int_equal(c->model.hidden[2], 0); /* the file's third width is gone */
    assert_int_equal(c->loss.quantization.warmup_epochs, 2);
    assert_true(c->loss.quantization.tanh);
    assert_int_equal(c->loss.quantization.codebook_every, 500); /* the file's value stays */
    assert_string_equal(c->data.test, "");
    assert_int_equal(c->eval.n_metrics, 1);
    assert_string_equal(c->eval.metrics[0], "nmi");
    assert_int_equal(c->train.eval_every, 50);
    assert_string_equal(c->name, "override");
    /* An override has no position; a key of the file keeps its own. */
    int line = -1, col = -1;
    assert_int_equal(dml_config_where(c, "train.lr", &line, &col), 1);
    assert_int_equal(line, 0);
    assert_int_equal(col, 0);
    assert_int_equal(dml_config_where(c, "loss.quantization.tanh", &line, &col), 1);
    assert_int_equal(line, 0);
    assert_int_equal(dml_config_where(c, "train.momentum", &line, &col), 1);
    assert_int_equal(line, 47);
    assert_int_equal(col, 13);
    free(c);
}

static void test_where_and_later_errors(void **state)
{
    (void)state;
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    char msg[1024];
    assert_int_equal(dml_config_load(FIXTURES "full.yaml", 0, NULL, c, &err), DML_OK);
    int line, col;
    assert_int_equal(dml_config_where(c, "pq.k", &line, &col), 1);
    assert_int_equal(line, 57);
    assert_int_equal(col, 6);
    assert_int_equal(dml_config_where(c, "loss.quantization", &line, &col), 1); /* a section */
    assert_int_equal(line, 31);
    assert_int_equal(col, 3);
    assert_int_equal(dml_config_where(c, "model.hidden", NULL, NULL), 1);
    assert_int_equal(dml_config_where(c, "train.nothing", &line, &col), 0);
    assert_int_equal(line, 0);
    assert_int_equal(col, 0);

    /* A later error names the key's position... */
    assert_int_equal(dml_config_error(c, "pq.k", &err, "%d centroids, but only %d training rows",
                                      16, 9),
                     DML_ERR_CONFIG);
    dml_error_format(&err, msg, sizeof msg);
    assert_string_equal(msg, FIXTURES "full.yaml:57:6: pq.k: 16 centroids, but only 9 training rows");
    /* ... and its arguments may come from the error record it fills. */
    dml_error_set(&err, DML_ERR_DATA, "x.h5", 0, 0, "no such file");
    dml_config_error(c, "model.init", &err, "cannot read it: %s", err.msg);
    dml_error_format(&err, msg, sizeof msg);
    assert_string_equal(msg, FIXTURES "full.yaml:20:9: model.init: cannot read it: no such file");

    /* A default names the file; an override names --set. */
    char *sets[] = {"pq.k=8"};
    assert_int_equal(dml_config_load(FIXTURES "defaults.yaml", 1, sets, c, &err), DML_OK);
    dml_config_error(c, "data.train", &err, "no labels");
    dml_error_format(&err, msg, sizeof msg);
    assert_string_equal(msg, FIXTURES "defaults.yaml: data.train: no labels");
    dml_config_error(c, "pq.k", &err, "8 centroids, but only 5 training rows");
    dml_error_format(&err, msg, sizeof msg);
    assert_string_equal(msg, "--set: pq.k: 8 centroids, but only 5 training rows");
    free(c);
}

/* design/config.md's example, byte for byte. */
static void test_error_example(void **state)
{
    (void)state;
    dml_config c;
    dml_error err;
    char msg[1024];
    assert_int_equal(dml_config_load(FIXTURES "bad.yaml", 0, NULL, &c, &err), DML_ERR_CONFIG);
    dml_error_format(&err, msg, sizeof msg);
    assert_string_equal(msg, FIXTURES "bad.yaml:12:7: train.lr: expected a positive number, got \"fast\"");
    assert_int_equal(dml_status_exit_code(err.code), 2);

    assert_int_equal(dml_config_load(FIXTURES "missing.yaml", 0, NULL, &c, &err), DML_ERR_CONFIG);
    dml_error_format(&err, msg, sizeof msg);
    assert_string_equal(msg, FIXTURES "missing.yaml: cannot open the config: No such file or directory");
}

static void test_syntax_errors(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"model:\n  hidden: [512, 256\n  dim: 64\n", NULL, 3, 6,
         "YAML syntax error: did not find expected ',' or ']' while parsing a flow sequence"},
        {"train:\n\tlr: 0.1\n", NULL, 2, 1,
         "YAML syntax error: found character that cannot start any token while scanning for the "
         "next token"},
        {"train:\n  lr: 0.1\n batch_size: 8\n", NULL, 3, 2,
         "YAML syntax error: did not find expected key while parsing a block mapping"},
        {"train:\n  lr: \xff\n", NULL, 2, 7, "YAML syntax error: invalid leading UTF-8 octet"},
        {"train:\n  lr: 0.1\n---\ntrain:\n  lr: 0.2\n", NULL, 3, 1,
         "expected one YAML document, got a second one"},
        {"", "model.hidden=[1, 2", 0, 0,
         "model.hidden: YAML syntax error: did not find expected ',' or ']' while parsing a flow "
         "sequence"},
    };
    CHECK_BAD(cases);
}

static void test_unknown_keys(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"train:\n  lrr: 0.1\n", NULL, 2, 3, "train.lrr: unknown key (did you mean 'train.lr'?)"},
        {"train:\n  Batch_Size: 8\n", NULL, 2, 3,
         "train.Batch_Size: unknown key (did you mean 'train.batch_size'?)"},
        {"trian:\n  lr: 0.1\n", NULL, 1, 1, "trian: unknown key (did you mean 'train'?)"},
        {"loss:\n  quantisation:\n    weight: 1\n", NULL, 2, 3,
         "loss.quantisation: unknown key (did you mean 'loss.quantization'?)"},
        {"loss:\n  quantization:\n    wieght: 1\n", NULL, 3, 5,
         "loss.quantization.wieght: unknown key (did you mean 'loss.quantization.weight'?)"},
        /* The right key in the wrong section. */
        {"lr: 0.1\n", NULL, 1, 1, "lr: unknown key (did you mean 'train.lr'?)"},
        {"train:\n  margin: 0.1\n", NULL, 2, 3, "train.margin: unknown key (did you mean 'loss.margin'?)"},
        {"model:\n  zzz: 1\n", NULL, 2, 3, "model.zzz: unknown key"},
        /* A loss's parameters are the chosen loss's (loss.type may come after them). */
        {"loss:\n  margn: 0.1\n", NULL, 2, 3,
         "loss.margn: unknown key (did you mean 'loss.margin'?)"},
        {"loss:\n  margin: 0.1\n  type: contrastive\n", NULL, 2, 3,
         "loss.margin: not a parameter of loss.type contrastive, whose parameters are distance, "
         "pos_margin, neg_margin, power, reduction"},
        {"loss:\n  type: cosine_pair\n  zzz: 1\n", NULL, 3, 3,
         "loss.zzz: not a parameter of loss.type cosine_pair, which has none"},
        {"", "loss.scale=5", 0, 0,
         "loss.scale: not a parameter of loss.type triplet, whose parameters are distance, margin, "
         "miner, soft, reduction"},
        {"", "loss.scale.x=5", 0, 0, "loss.scale: unknown key"},
        {"", "train.lrr=0.1", 0, 0, "train.lrr: unknown key (did you mean 'train.lr'?)"},
        {"", "trian.lr=0.1", 0, 0, "trian: unknown key (did you mean 'train'?)"},
        {"", "train.lr.x=0.1", 0, 0, "train.lr.x: unknown key"},
        {"", "loss.quantization={weigth: 1}", 0, 0,
         "loss.quantization.weigth: unknown key (did you mean 'loss.quantization.weight'?)"},
        {"", "train.lr", 0, 0, "expected key.path=value, got \"train.lr\""},
    };
    CHECK_BAD(cases);
}

static void test_wrong_types(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"train:\n  lr: fast\n", NULL, 2, 7, "train.lr: expected a positive number, got \"fast\""},
        {"train:\n  lr: \"0.1x\"\n", NULL, 2, 7, "train.lr: expected a positive number, got \"0.1x\""},
        {"train:\n  lr:\n", NULL, 2, 6, "train.lr: expected a positive number, got nothing"},
        {"model:\n  hidden: 512\n", NULL, 2, 11,
         "model.hidden: expected a list of layer widths like [512, 256], got \"512\""},
        {"model:\n  hidden: [512, wide]\n", NULL, 2, 17,
         "model.hidden[1]: expected an integer in 1..65536, got \"wide\""},
        {"model:\n  hidden: [512, [1]]\n", NULL, 2, 17,
         "model.hidden[1]: expected an integer in 1..65536, got a list"},
        {"train:\n  batch_size: [1, 2]\n", NULL, 2, 15,
         "train.batch_size: expected an integer >= 2, got a list"},
        {"train:\n  epochs: 2.5\n", NULL, 2, 11, "train.epochs: expected a positive integer, got \"2.5\""},
        {"data:\n  unlabelled: maybe\n", NULL, 2, 15,
         "data.unlabelled: expected true or false, got \"maybe\""},
        {"data:\n  train: {x: 1}\n", NULL, 2, 10, "data.train: expected a data spec, got a mapping"},
        {"data:\n  train: \"\"\n", NULL, 2, 10, "data.train: expected a data spec, got \"\""},
        {"train:\n  eval_every: sometimes\n", NULL, 2, 15,
         "train.eval_every: expected epoch, never (or 0) or a positive number of steps, got "
         "\"sometimes\""},
        {"train: 5\n", NULL, 1, 8, "train: expected a mapping of keys, got \"5\""},
        {"- train\n", NULL, 1, 1, "expected a mapping of keys like \"train:\", got a list"},
        {"eval:\n  metrics: nmi\n", NULL, 2, 12,
         "eval.metrics: expected a list of metric names like [map_at_r, nmi], got \"nmi\""},
        {"", "train.lr=[1]", 0, 0, "train.lr: expected a positive number, got a list"},
        {"", "loss=3", 0, 0, "loss: expected a mapping of keys, got \"3\""},
    };
    CHECK_BAD(cases);
}

static void test_out_of_range(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"train:\n  lr: 0\n", NULL, 2, 7, "train.lr: expected a positive number, got \"0\""},
        {"train:\n  lr: -1e-3\n", NULL, 2, 7, "train.lr: expected a positive number, got \"-1e-3\""},
        {"train:\n  lr: 1e-50\n", NULL, 2, 7, "train.lr: expected a positive number, got \"1e-50\""},
        {"train:\n  lr: .inf\n", NULL, 2, 7, "train.lr: expected a positive number, got \".inf\""},
        {"train:\n  batch_size: 1\n", NULL, 2, 15, "train.batch_size: expected an integer >= 2, got \"1\""},
        {"train:\n  momentum: 1\n", NULL, 2, 13, "train.momentum: expected a number in [0, 1), got \"1\""},
        {"data:\n  val_fraction: 1\n", NULL, 2, 17,
         "data.val_fraction: expected a number in [0, 1), got \"1\""},
        {"data:\n  val_fraction: -0.1\n", NULL, 2, 17,
         "data.val_fraction: expected a number in [0, 1), got \"-0.1\""},
        {"pq:\n  k: 100\n", NULL, 2, 6, "pq.k: expected a power of two in 2..65536, got \"100\""},
        {"pq:\n  k: 1\n", NULL, 2, 6, "pq.k: expected a power of two in 2..65536, got \"1\""},
        {"pq:\n  k: 131072\n", NULL, 2, 6, "pq.k: expected a power of two in 2..65536, got \"131072\""},
        {"loss:\n  power: 3\n  type: contrastive\n", NULL, 2, 10,
         "loss.power: expected 1 or 2, got \"3\""},
        {"loss:\n  scale: 0\n  type: mnr\n", NULL, 2, 10,
         "loss.scale: expected a positive number, got \"0\""},
        {"", "loss.margin=-1", 0, 0, "loss.margin: expected a number >= 0, got \"-1\""},
        {"seed: -1\n", NULL, 1, 7, "seed: expected a non-negative integer, got \"-1\""},
        {"sampler:\n  m: 1\n", NULL, 2, 6, "sampler.m: expected an integer >= 2, got \"1\""},
        {"train:\n  threads: 5000\n", NULL, 2, 12, "train.threads: expected an integer in 0..1024, got \"5000\""},
        /* above the limit of the type, which the field's own words leave unsaid: the range */
        {"train:\n  steps: 2147483648\n", NULL, 2, 10,
         "train.steps: expected an integer from 0 to 2147483647, got \"2147483648\""},
        {"seed: 18446744073709551616\n", NULL, 1, 7,
         "seed: expected an integer from 0 to 9007199254740992, got \"18446744073709551616\""},
        {"", "train.batch_size=1e10", 0, 0,
         "train.batch_size: expected an integer from 2 to 2147483647, got \"1e10\""},
        {"train:\n  eval_every: 2147483648\n", NULL, 2, 15,
         "train.eval_every: expected epoch, never (or 0) or a number of steps from 1 to "
         "2147483647, got \"2147483648\""},
        {"model:\n  hidden: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]\n", NULL, 2,
         11, "model.hidden: expected at most 16 entries, got 17"},
        {"model:\n  hidden: [0]\n", NULL, 2, 12, "model.hidden[0]: expected an integer in 1..65536, got \"0\""},
        {"", "train.epochs=0", 0, 0, "train.epochs: expected a positive integer, got \"0\""},
    };
    CHECK_BAD(cases);
    /* A string longer than its buffer: said, not cut. */
    char yaml[400] = "name: ";
    memset(yaml + 6, 'a', 200);
    strcat(yaml, "\n");
    bad_case long_name = {yaml, NULL, 1, 7, "name: expected at most 127 characters, got 200"};
    check_bad(&long_name, 1);
}

static void test_bad_choices(void **state)
{
    (void)state;
    /* loss.type's choices are the loss table's rows, in its order */
    char types[512] = "loss.type: expected one of ";
    for (int i = 0; i < dml_loss_row_count; i++) {
        strcat(types, i ? " | " : "");
        strcat(types, dml_loss_rows[i]->name);
    }
    strcat(types, ", got \"tripplet\"");
    bad_case type = {"loss:\n  type: tripplet\n", NULL, 2, 9, types};
    check_bad(&type, 1);
    static const bad_case cases[] = {
        {"data:\n  normalize: [unit]\n", NULL, 2, 14,
         "data.normalize: expected one of none | unit | standardize, got a list"},
        {"eval:\n  metrics: [map_at_r, top5]\n", NULL, 2, 23,
         "eval.metrics[1]: expected one of precision_at_1 | r_precision | map_at_r | map_all | "
         "recall_at_k | mrr_at_10 | knn_accuracy | nmi | quantization_mse | pq_recall_at_r, got "
         "\"top5\""},
        {"eval:\n  metrics: [nn_recall_at_k]\n", NULL, 2, 13,
         "eval.metrics[0]: nn_recall_at_k needs ground-truth neighbours, which a training run "
         "does not have (dml eval --truth computes it)"},
        {"eval:\n  metrics: [nmi, map_at_r, nmi]\n", NULL, 2, 28,
         "eval.metrics[2]: expected each metric once, got \"nmi\" again"},
        {"", "train.optimizer=lion", 0, 0,
         "train.optimizer: expected one of sgd | adam | adamw, got \"lion\""},
    };
    CHECK_BAD(cases);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        {"train:\n  lr: 0.1\n  epochs: 2\n  lr: 0.2\n", NULL, 4, 3,
         "train.lr: duplicate key (first given at line 2)"},
        {"train:\n  lr: 0.1\nseed: 1\ntrain:\n  epochs: 2\n", NULL, 4, 1,
         "train: duplicate key (first given at line 1)"},
        {"", "train={lr: 0.1, lr: 0.2}", 0, 0, "train.lr: duplicate key"},
    };
    CHECK_BAD(cases);
}

#define HN "data:\n  pairs: halves\nmodel:\n  type: dual\nloss:\n  type: mnr\n"

static void test_impossible_combinations(void **state)
{
    (void)state;
    static const bad_case cases[] = {
        /* Each points at the key given, not at a default. */
        {"pq:\n  m: 3\n", NULL, 2, 6, "pq.m: expected a divisor of model.dim (128), got 3"},
        {"model:\n  dim: 102\npq:\n  m: 4\n", NULL, 4, 6,
         "pq.m: expected a divisor of model.dim (102), got 4"},
        {"model:\n  dim: 64\npq:\n  m: 5\n", NULL, 4, 6, "pq.m: expected a divisor of model.dim (64), got 5"},
        {"sampler:\n  m: 3\n", NULL, 2, 6,
         "sampler.m: expected a divisor of train.batch_size (256) for the m_per_class sampler, got 3"},
        {"train:\n  batch_size: 250\nsampler:\n  m: 4\n", NULL, 4, 6,
         "sampler.m: expected a divisor of train.batch_size (250) for the m_per_class sampler, got "
         "4"},
        {"loss:\n  type: mnr\n", NULL, 2, 9,
         "loss.type: mnr needs pairs: set data.pairs to same_class, halves, file or augment"},
        {"data:\n  pairs: augment\nloss:\n  type: mnr\n", NULL, 2, 10,
         "data.pairs: augment pairs are two augmented views of a row: set data.augment (shift, "
         "rotate, scale, flip, cutout, brightness, contrast, noise or dropout)"},
        {"data:\n  augment:\n    height: 28\n", NULL, 3, 13,
         "data.augment.height: expected both data.augment.height and width, or neither"},
        {"data:\n  augment: {flip: 2}\n", NULL, 2, 19,
         "data.augment.flip: expected a probability in [0, 1], got \"2\""},
        {"model:\n  type: dual\n", NULL, 2, 9,
         "model.type: a dual encoder needs pairs: set data.pairs to halves or file"},
        {"data:\n  pairs: halves\n", NULL, 2, 10,
         "data.pairs: pairs train with loss.type mnr and supcon: set data.pairs to none for this "
         "loss"},
        {"loss:\n  type: reconstruction\n", NULL, 2, 9,
         "loss.type: reconstruction needs a decoder: set model.type to autoencoder"},
        /* what a loss combines with: its row's combines, the losses that do named */
        {"loss:\n  type: cosine_pair\n  memory:\n    size: 64\n", NULL, 3, 3,
         "loss.memory: cross-batch memory serves loss.type contrastive, triplet, mnr, "
         "multi_similarity and circle: set loss.memory.size to 0 for this loss"},
        {"train:\n  chunk_size: 8\n", NULL, 2, 15,
         "train.chunk_size: GradCache chunks serve loss.type mnr: set train.chunk_size to 0 for "
         "this loss"},
        {"loss:\n  reconstruction_weight: 0.5\n", NULL, 2, 26,
         "loss.reconstruction_weight: needs a decoder: set model.type to autoencoder, or this to 0"},
        {"data:\n  unlabelled: true\n", NULL, 2, 15,
         "data.unlabelled: this loss.type needs labels: unlabelled data train with reconstruction, "
         "or with mnr on halves, file or augment pairs"},
        {"data:\n  unlabelled: true\n  pairs: same_class\nloss:\n  type: mnr\n", NULL, 2, 15,
         "data.unlabelled: this loss.type needs labels: unlabelled data train with reconstruction, "
         "or with mnr on halves, file or augment pairs"},
        {"data:\n  unlabelled: true\n  labels_per_class: 5\nmodel:\n  type: autoencoder\nloss:\n"
         "  type: reconstruction\n",
         NULL, 3, 21, "data.labels_per_class: expected 0 with data.unlabelled: true, got 5"},
        {"model:\n  hidden: [64]\n  init: a.h5\n  freeze: 2\n", NULL, 4, 11,
         "model.freeze: expected at most 1 (the encoder has 2 layers and one must train), got 2"},
        {"model:\n  type: autoencoder\n  hidden: [64]\n  init: a.h5\n  freeze: 3\n", NULL, 5, 11,
         "model.freeze: expected at most 2 (the encoder has 2 layers), got 3"},
        {"model:\n  freeze: 1\n", NULL, 2, 11,
         "model.freeze: frozen layers need pretrained weights: set model.init"},
        {"data:\n  val_fraction: 0\ntrain:\n  early_stop_patience: 3\n", NULL, 4, 24,
         "train.early_stop_patience: early stopping needs a validation split: set "
         "data.val_fraction > 0 (the test set never picks the model)"},
        {"name: \"..\"\n", NULL, 1, 7, "name: expected a run folder name without '/', got \"..\""},
        /* loss.hard_negatives: mnr on two views of a row, one process's plain steps */
        {"loss:\n  hard_negatives:\n    k: 2\n", NULL, 3, 8,
         "loss.hard_negatives.k: mined hard negatives serve loss.type mnr on data.pairs halves or "
         "file: set loss.hard_negatives.k to 0"},
        {"data:\n  pairs: same_class\nloss:\n  type: mnr\n", "loss.hard_negatives.k=2", 0, 0,
         "loss.hard_negatives.k: mined hard negatives serve loss.type mnr on data.pairs halves or "
         "file: set loss.hard_negatives.k to 0"},
        {HN "  mask_same_label: false\n  hard_negatives:\n    k: 2\n", NULL, 7, 20,
         "loss.mask_same_label: mined hard negatives drop an anchor's own positive from the other "
         "anchors' negatives through this mask: leave it true"},
        {HN "  hard_negatives:\n    k: 12\n", NULL, 8, 8,
         "loss.hard_negatives.k: expected at most loss.hard_negatives.candidates (10), got 12"},
        {HN, "loss.hard_negatives.relative_margin=1", 0, 0,
         "loss.hard_negatives.relative_margin: expected a number in [0, 1), got \"1\""},
        {HN, "loss.hard_negatives.candidates=128", 0, 0,
         "loss.hard_negatives.candidates: expected an integer in 1..127, got \"128\""},
        /* Made impossible by an override: the error names --set. */
        {"", "loss.type=mnr", 0, 0,
         "loss.type: mnr needs pairs: set data.pairs to same_class, halves, file or augment"},
    };
    CHECK_BAD(cases);
}

/* The combinations the checks must let through. */
static void test_possible_combinations(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "data:\n  pairs: same_class\nloss:\n  type: mnr\ntrain:\n  batch_size: 250\n",
        "data:\n  pairs: halves\n  unlabelled: true\nmodel:\n  type: dual\nloss:\n  type: mnr\n",
        "data:\n  unlabelled: true\nmodel:\n  type: autoencoder\nloss:\n  type: reconstruction\n",
        "model:\n  type: autoencoder\n  hidden: [64]\n  init: a.h5\n  freeze: 2\n",
        "sampler:\n  type: random\n  m: 3\n",
        "data:\n  val_fraction: 0\n  test: \"\"\n",
        /* defaults that fit what was set: pq.m and sampler.m follow dim and batch_size */
        "model:\n  dim: 102\n",
        "train:\n  batch_size: 250\n",
        HN "  hard_negatives: {k: 2, every: 50, relative_margin: 0, candidates: 2}\n",
        HN "  hard_negatives: {k: 2}\n  memory: {size: 512}\n",
        HN "  hard_negatives: {k: 2}\ntrain:\n  chunk_size: 64\n",
        "data:\n  pairs: file\nloss:\n  type: mnr\n  hard_negatives: {k: 4}\n",
    };
    dml_config c;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        dml_error err;
        char msg[1024] = "";
        if (load(ok[i], 0, NULL, &c, &err) != DML_OK)
            dml_error_format(&err, msg, sizeof msg);
        assert_string_equal(msg, "");
    }
}

/* print -> load gives the same settings. */
static void check_round_trip(const dml_config *c)
{
    char *yaml = dml_config_to_yaml(c);
    assert_non_null(yaml);
    dml_config *back = malloc(sizeof *back);
    dml_error err;
    char msg[1024] = "";
    if (load(yaml, 0, NULL, back, &err) != DML_OK)
        dml_error_format(&err, msg, sizeof msg);
    assert_string_equal(msg, "");
    assert_same_settings(c, back);
    free(back);
    free(yaml);
}

static void test_round_trip(void **state)
{
    (void)state;
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    assert_int_equal(dml_config_load(FIXTURES "defaults.yaml", 0, NULL, c, &err), DML_OK);
    check_round_trip(c);
    assert_int_equal(dml_config_load(FIXTURES "full.yaml", 0, NULL, c, &err), DML_OK);
    check_round_trip(c);
    /* Strings that need quoting, floats that need every digit, the largest seed, and the keys
     * full.yaml leaves at their defaults. */
    char *sets[] = {"name='it''s \"quoted\" \\ # not a comment'", "data.train='a: b, [c]'",
                    "train.lr=0.1234567", "loss.margin=3.4028234e38", "seed=9007199254740992",
                    "data.val_fraction=1e-7", "model.hidden=[]", "data.unlabelled=true",
                    "data.pairs=halves", "model.type=dual", "loss.type=mnr", "sampler.type=random"};
    assert_int_equal(dml_config_load(FIXTURES "defaults.yaml", 12, sets, c, &err), DML_OK);
    assert_true(c->data.unlabelled);
    assert_int_equal(c->data.pairs, DML_PAIRS_HALVES);
    assert_int_equal(c->sampler.type, DML_SAMPLER_RANDOM);
    assert_string_equal(c->name, "it's \"quoted\" \\ # not a comment");
    assert_int_equal(c->model.n_hidden, 0);
    check_round_trip(c);
    /* A default sampler.m that does not divide the batch was printed as given, and the printed
     * config then failed its own check (found by fuzz_config): it is the next divisor. */
    char *batch[] = {"train.batch_size=250"}, *tiny[] = {"train.batch_size=3"};
    assert_int_equal(dml_config_load(FIXTURES "defaults.yaml", 1, batch, c, &err), DML_OK);
    assert_int_equal(c->sampler.m, 5);
    check_round_trip(c);
    assert_int_equal(dml_config_load(FIXTURES "defaults.yaml", 1, tiny, c, &err), DML_OK);
    assert_int_equal(c->sampler.m, 3);
    check_round_trip(c);
    /* Characters libyaml refuses unescaped, or reads as line breaks or a byte order mark. */
    char *odd[] = {"name=\"a\\x7fb\\x85c\\u2028d\\u2029e\\uFFFEf\\uFEFFg\\th\\u00e9\\U0001F600\""};
    assert_int_equal(dml_config_load(FIXTURES "defaults.yaml", 1, odd, c, &err), DML_OK);
    assert_string_equal(c->name, "a\x7f" "b\xc2\x85" "c\xe2\x80\xa8" "d\xe2\x80\xa9" "e\xef\xbf\xbe"
                                 "f\xef\xbb\xbf" "g\th\xc3\xa9\xf0\x9f\x98\x80");
    check_round_trip(c);
    free(c);
}

/* The sets that make loss.type row valid on its own: pairs, a decoder. */
static int row_sets(const dml_loss_row *row, char sets[][128])
{
    int n = 0;
    snprintf(sets[n++], 128, "loss.type=%s", row->name);
    if (row->needs & DML_LOSS_NEEDS_PAIRS)
        snprintf(sets[n++], 128, "data.pairs=same_class");
    if (!row->build) /* reconstruction */
        snprintf(sets[n++], 128, "model.type=autoencoder");
    return n;
}

/* A value of prm other than its default, and one it refuses (NULL: none, a float without
 * bounds), as YAML text; *v gets the first one's value. */
static const char *other_value(const dml_loss_param *prm, float *v, char *text, size_t size,
                               char *bad, size_t bad_size)
{
    double cands[] = {prm->def + 1.0, prm->def * 2.0 + 0.25, prm->def - 1.0,
                      (prm->def + prm->min) / 2.0};
    *v = prm->def;
    for (int i = 0; i < 4 && *v == prm->def; i++)
        if ((float)cands[i] != prm->def && dml_loss_param_ok(prm, (float)cands[i]))
            *v = (float)cands[i];
    if (prm->kind == DML_LP_CHOICE)
        snprintf(text, size, "%s", prm->choices[(int)*v]);
    else if (prm->kind == DML_LP_FLAG)
        snprintf(text, size, "%s", *v != 0.0f ? "true" : "false");
    else
        snprintf(text, size, "%.9g", (double)*v);
    switch (prm->kind) {
    case DML_LP_FLAG: snprintf(bad, bad_size, "maybe"); return bad;
    case DML_LP_CHOICE: snprintf(bad, bad_size, "no_such_choice"); return bad;
    case DML_LP_INT:
    case DML_LP_FLOAT:
        if (isfinite(prm->max))
            snprintf(bad, bad_size, "%.9g", prm->max + 1.0);
        else if (isfinite(prm->min))
            snprintf(bad, bad_size, "%.9g", prm->open_min ? prm->min : prm->min - 1.0);
        else
            return NULL;
        return bad;
    }
    return NULL;
}

/* docs/config.md's line for a loss ("| `name` | the loss ...") or for one of its parameters
 * ("| `name` | `loss.key` | `default` | ..."). */
static int docs_have(const char *docs, const char *name, const char *key, const char *def)
{
    char line[200];
    if (!key) {
        snprintf(line, sizeof line, "\n| `%s` | ", name);
        for (const char *at = strstr(docs, line); at; at = strstr(at + 1, line))
            if (strncmp(at + strlen(line), "`loss.", 6) != 0)
                return 1;
        return 0;
    }
    snprintf(line, sizeof line, "\n| `%s` | `loss.%s` | `%s` | ", name, key, def);
    return strstr(docs, line) != NULL;
}

/* Every row of the loss table: loss.type finds it; each parameter is set by an override to a
 * value other than its default and read back, printed and loaded again, and refused out of
 * range; docs/config.md has a line for the loss and for each parameter with its default. */
static void test_loss_rows(void **state)
{
    (void)state;
    FILE *f = fopen("docs/config.md", "rb");
    assert_non_null(f);
    static char docs[1 << 18];
    size_t len = fread(docs, 1, sizeof docs - 1, f);
    fclose(f);
    docs[len] = '\0';
    dml_config *c = malloc(sizeof *c);
    for (int r = 0; r < dml_loss_row_count; r++) {
        const dml_loss_row *row = dml_loss_rows[r];
        assert_ptr_equal(dml_loss_find(row->name), row);
        assert_non_null(row->doc);
        assert_true(row->n_params <= DML_LOSS_MAX_PARAMS);
        if (row->class_rows > 0) { /* the learned rows' learning rate */
            int i = dml_loss_param_index(row, "lr_multiplier");
            assert_true(i >= 0);
            assert_int_equal(row->params[i].kind, DML_LP_FLOAT);
        }
        if (!docs_have(docs, row->name, NULL, NULL))
            fail_msg("docs/config.md: no line \"| `%s` | ...\" for the loss", row->name);
        char sets[4][128];
        char *argv[4];
        int n = row_sets(row, sets);
        for (int i = 0; i < 4; i++)
            argv[i] = sets[i];
        dml_error err;
        for (int i = 0; i < row->n_params; i++) {
            const dml_loss_param *prm = &row->params[i];
            char def[64], text[64], bad[64], msg[1024] = "";
            float v;
            assert_int_equal(dml_loss_param_index(row, prm->key), i);
            assert_true(dml_loss_param_ok(prm, prm->def));
            if (prm->kind == DML_LP_CHOICE)
                snprintf(def, sizeof def, "%s", prm->choices[(int)prm->def]);
            else if (prm->kind == DML_LP_FLAG)
                snprintf(def, sizeof def, "%s", prm->def != 0.0f ? "true" : "false");
            else
                snprintf(def, sizeof def, "%g", (double)prm->def);
            if (!docs_have(docs, row->name, prm->key, def))
                fail_msg("docs/config.md: no line \"| `%s` | `loss.%s` | `%s` | ...\"", row->name,
                         prm->key, def);
            const char *refused = other_value(prm, &v, text, sizeof text, bad, sizeof bad);
            assert_true(v != prm->def);
            snprintf(sets[n], 128, "loss.%s=%s", prm->key, text);
            if (load("", n + 1, argv, c, &err) != DML_OK)
                dml_error_format(&err, msg, sizeof msg);
            assert_string_equal(msg, "");
            assert_ptr_equal(c->loss.row, row);
            assert_float_equal(c->loss.p[i], v, 0.0);
            check_round_trip(c);
            char *yaml = dml_config_to_yaml(c);
            char line[128];
            snprintf(line, sizeof line, "\n  %s: ", prm->key); /* printed in the loss section */
            assert_non_null(strstr(yaml, line));
            free(yaml);
            if (!refused)
                continue;
            snprintf(sets[n], 128, "loss.%s=%s", prm->key, refused);
            assert_int_equal(load("", n + 1, argv, c, &err), DML_ERR_CONFIG);
            snprintf(line, sizeof line, "loss.%s: expected ", prm->key);
            assert_memory_equal(err.msg, line, strlen(line));
        }
    }
    free(c);
}

/* eval_every and checkpoint_every: epoch, never (or 0), or N steps; the codebooks' refits know
 * no never. */
static void test_every(void **state)
{
    (void)state;
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    assert_int_equal(load("train:\n  eval_every: never\n  checkpoint_every: 0\n", 0, NULL, c, &err),
                     DML_OK);
    assert_int_equal(c->train.eval_every, DML_EVERY_NEVER);
    assert_int_equal(c->train.checkpoint_every, DML_EVERY_NEVER);
    char *yaml = dml_config_to_yaml(c);
    assert_non_null(strstr(yaml, "  eval_every: never\n  checkpoint_every: never\n"));
    free(yaml);
    check_round_trip(c);
    char *sets[] = {"train.eval_every=0", "train.checkpoint_every=epoch"};
    assert_int_equal(load("train:\n  eval_every: 30\n  checkpoint_every: 7\n", 2, sets, c, &err),
                     DML_OK);
    assert_int_equal(c->train.eval_every, DML_EVERY_NEVER);
    assert_int_equal(c->train.checkpoint_every, DML_EVERY_EPOCH);
    free(c);
    static const bad_case cases[] = {
        {"train:\n  checkpoint_every: -1\n", NULL, 2, 21,
         "train.checkpoint_every: expected epoch, never (or 0) or a positive number of steps, got "
         "\"-1\""},
        {"train:\n  eval_every: 0.5\n", NULL, 2, 15,
         "train.eval_every: expected epoch, never (or 0) or a positive number of steps, got "
         "\"0.5\""},
        {"loss:\n  quantization:\n    codebook_every: never\n", NULL, 3, 21,
         "loss.quantization.codebook_every: expected epoch or a positive number of steps, got "
         "\"never\""},
        {"", "loss.quantization.codebook_every=0", 0, 0,
         "loss.quantization.codebook_every: expected epoch or a positive number of steps, got "
         "\"0\""},
        {"train:\n  eval_every: never\n  early_stop_patience: 2\n", NULL, 3, 24,
         "train.early_stop_patience: early stopping counts validations, and train.eval_every is "
         "never: set train.eval_every, or this to 0"},
    };
    CHECK_BAD(cases);
}

/* data.memory_limit and dml eval --memory-limit read sizes through one parser: a bare number is
 * MB in both. */
static void test_sizes(void **state)
{
    (void)state;
    static const struct { const char *text; double bytes; } ok[] = {
        {"300", 300.0 * 1048576}, {"512MB", 512.0 * 1048576}, {"4GB", 4.0 * 1073741824},
        {"1.5 GiB", 1.5 * 1073741824}, {"64k", 65536}, {"100B", 100}, {"2t", 2 * 0x1p40}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        double b = -1;
        assert_true(dml_size_parse(ok[i].text, &b));
        assert_true(b == ok[i].bytes);
    }
    static const char *const bad[] = {"", "MB", "-1MB", "12 parsecs", "1e999", "nan"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double b;
        assert_false(dml_size_parse(bad[i], &b));
    }
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    assert_int_equal(load("data:\n  memory_limit: 300\n", 0, NULL, c, &err), DML_OK);
    assert_int_equal(c->data.memory_limit_mb, 300);
    assert_int_equal(load("data:\n  memory_limit: 1.5GiB\n", 0, NULL, c, &err), DML_OK);
    assert_int_equal(c->data.memory_limit_mb, 1536);
    free(c);
}

/* Multi-Similarity's and Circle's keys: defaults, overrides over a shipped config, refusals. */
static void test_similarity_loss_keys(void **state)
{
    (void)state;
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    char *sets[] = {"loss.miner=all", "loss.beta=40"};
    assert_int_equal(dml_config_load("configs/fmnist-multi-similarity.yaml", 2, sets, c, &err),
                     DML_OK);
    assert_string_equal(c->loss.row->name, "multi_similarity");
    assert_float_equal(lp(c, "alpha"), 2.0f, 0.0);
    assert_float_equal(lp(c, "beta"), 40.0f, 0.0);
    assert_float_equal(lp(c, "base"), 0.7f, 0.0); /* the shipped config's */
    assert_float_equal(lp(c, "miner"), 0, 0.0); /* all */
    assert_float_equal(lp(c, "epsilon"), 0.1f, 0.0);
    assert_int_equal(load("loss:\n  type: multi_similarity\n", 0, NULL, c, &err), DML_OK);
    assert_float_equal(lp(c, "miner"), 1, 0.0); /* multi_similarity, the paper's mining */
    assert_int_equal(load("loss:\n  type: circle\n", 0, NULL, c, &err), DML_OK);
    assert_float_equal(lp(c, "m"), 0.4f, 0.0);
    assert_float_equal(lp(c, "gamma"), 80.0f, 0.0);
    free(c);
    static const bad_case bad[] = {
        {"loss:\n  type: multi_similarity\n  miner: hard\n", NULL, 3, 10,
         "loss.miner: expected one of all | multi_similarity, got \"hard\""},
        {"loss:\n  type: circle\n  gamma: 0\n", NULL, 3, 10,
         "loss.gamma: expected a positive number, got \"0\""},
    };
    check_bad(bad, (int)(sizeof bad / sizeof bad[0]));
}

static void test_print(void **state)
{
    (void)state;
    dml_config *c = malloc(sizeof *c);
    dml_error err;
    assert_int_equal(dml_config_load(FIXTURES "defaults.yaml", 0, NULL, c, &err), DML_OK);
    char *yaml = dml_config_to_yaml(c);
    assert_non_null(yaml);
    /* config.md's order, sections and defaults. */
    static const char *const in_order[] = {
        "name: \"defaults\"\nseed: 42\n",
        "\ndata:\n  train: \"fashion-mnist:train\"\n  test: \"fashion-mnist:test\"\n"
        "  val_fraction: 0.1\n",
        "\nmodel:\n  type: mlp\n  hidden: [512, 256]\n  dim: 128\n",
        "\nloss:\n  type: triplet\n",
        "  reduction: mean_nonzero\n",
        "  quantization:\n    weight: 0\n    warmup_epochs: 1\n    codebook_every: epoch\n"
        "    tanh: false\n",
        "\nsampler:\n  type: m_per_class\n  m: 4\n",
        "\ntrain:\n  batch_size: 256\n",
        "  lr: 0.001\n",
        "  eval_every: epoch\n",
        "\npq:\n  m: 4\n  k: 256\n  iters: 25\n",
        "\neval:\n  metrics: [map_at_r, precision_at_1, r_precision, map_all, knn_accuracy, nmi]\n"
        "  pq: true\n  knn_k: 5\n",
    };
    const char *at = yaml;
    for (size_t i = 0; i < sizeof in_order / sizeof in_order[0]; i++) {
        const char *found = strstr(at, in_order[i]);
        if (!found)
            fail_msg("not found after offset %td: %s\nin:\n%s", at - yaml, in_order[i], yaml);
        at = found + strlen(in_order[i]);
    }
    assert_string_equal(at, "");
    /* dml_config_print writes the same text. */
    char *printed = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&printed, &len);
    dml_config_print(c, f);
    fclose(f);
    assert_string_equal(printed, yaml);
    free(printed);
    free(yaml);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_defaults_depend_on_keys),
        cmocka_unit_test(test_full_file),
        cmocka_unit_test(test_shipped_configs),
        cmocka_unit_test(test_similarity_loss_keys),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_where_and_later_errors),
        cmocka_unit_test(test_error_example),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_bad_choices),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_impossible_combinations),
        cmocka_unit_test(test_possible_combinations),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_loss_rows),
        cmocka_unit_test(test_every),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
