/* Config files: libyaml's document tree walked against one schema table, which also drives
 * defaults' printing, so the keys, their types and their order are written down once. */
#include "train/config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "nn/nn.h"

typedef enum { F_INT, F_INT64, F_FLOAT, F_BOOL, F_STRING, F_ENUM, F_INT_LIST, F_NAME_LIST, F_EVERY } ftype;

typedef struct field {
    const char *path;
    ftype type;
    size_t offset;
    const char *const *choices; /* F_ENUM, F_NAME_LIST: NULL-terminated */
    double min, max;            /* numbers (inclusive); F_STRING: max = buffer size */
    const char *expect;         /* what the error message says was expected */
} field;

#define OFF(member) offsetof(dml_config, member)

static const char *const NORMALIZE[] = {"none", "unit", "standardize", NULL};
static const char *const PAIRS[] = {"none", "same_class", "halves", "file", NULL};
static const char *const MODEL_TYPE[] = {"mlp", "autoencoder", "dual", NULL};
static const char *const ACTIVATION[] = {"relu", "tanh", "gelu", "leaky_relu", NULL};
static const char *const OUTPUT[] = {"l2", "tanh", "none", NULL};
static const char *const LOSS[] = {"contrastive", "triplet", "mnr", "cosine_pair", "reconstruction", NULL};
static const char *const DISTANCE[] = {"euclidean", "squared_euclidean", "cosine", NULL};
static const char *const MINER[] = {"all", "hard", "semihard", NULL};
static const char *const REDUCTION[] = {"auto", "mean", "mean_nonzero", NULL};
static const char *const RECON[] = {"mse", "bce", NULL};
static const char *const SAMPLER[] = {"random", "m_per_class", NULL};
static const char *const OPTIMIZER[] = {"sgd", "adam", "adamw", NULL};
static const char *const SCHEDULE[] = {"constant", "cosine", "step", NULL};
static const char *const METRICS[] = {"map_at_r", "precision_at_1", "r_precision", "map_all",
                                      "recall_at_k", "mrr_at_10", "knn_accuracy", "nmi",
                                      "quantization_mse", "pq_recall_at_r", NULL};

#define BIG 1e9
static const field FIELDS[] = {
    {"name", F_STRING, OFF(name), NULL, 0, sizeof(((dml_config *)0)->name), "a name"},
    {"seed", F_INT64, OFF(seed), NULL, 0, 9.0e15, "a non-negative integer"},
    {"data.train", F_STRING, OFF(data.train), NULL, 1, DML_CONFIG_PATH, "a data spec"},
    {"data.test", F_STRING, OFF(data.test), NULL, 0, DML_CONFIG_PATH, "a data spec"},
    {"data.val_fraction", F_FLOAT, OFF(data.val_fraction), NULL, 0, 0.9, "a number in [0, 0.9]"},
    {"data.labels_per_class", F_INT, OFF(data.labels_per_class), NULL, 0, BIG, "an integer >= 0"},
    {"data.unlabelled", F_BOOL, OFF(data.unlabelled), NULL, 0, 0, "true or false"},
    {"data.normalize", F_ENUM, OFF(data.normalize), NORMALIZE, 0, 0, NULL},
    {"data.pairs", F_ENUM, OFF(data.pairs), PAIRS, 0, 0, NULL},
    {"model.type", F_ENUM, OFF(model.type), MODEL_TYPE, 0, 0, NULL},
    {"model.hidden", F_INT_LIST, OFF(model.hidden), NULL, 1, 65536, "a list of widths in 1..65536"},
    {"model.dim", F_INT, OFF(model.dim), NULL, 1, 65536, "an integer in 1..65536"},
    {"model.activation", F_ENUM, OFF(model.activation), ACTIVATION, 0, 0, NULL},
    {"model.output", F_ENUM, OFF(model.output), OUTPUT, 0, 0, NULL},
    {"model.init", F_STRING, OFF(model.init), NULL, 0, DML_CONFIG_PATH, "a path"},
    {"model.freeze", F_INT, OFF(model.freeze), NULL, 0, 64, "an integer in 0..64"},
    {"loss.type", F_ENUM, OFF(loss.type), LOSS, 0, 0, NULL},
    {"loss.distance", F_ENUM, OFF(loss.distance), DISTANCE, 0, 0, NULL},
    {"loss.margin", F_FLOAT, OFF(loss.margin), NULL, 0, BIG, "a number >= 0"},
    {"loss.miner", F_ENUM, OFF(loss.miner), MINER, 0, 0, NULL},
    {"loss.soft", F_BOOL, OFF(loss.soft), NULL, 0, 0, "true or false"},
    {"loss.reduction", F_ENUM, OFF(loss.reduction), REDUCTION, 0, 0, NULL},
    {"loss.pos_margin", F_FLOAT, OFF(loss.pos_margin), NULL, 0, BIG, "a number >= 0"},
    {"loss.neg_margin", F_FLOAT, OFF(loss.neg_margin), NULL, 0, BIG, "a number >= 0"},
    {"loss.power", F_INT, OFF(loss.power), NULL, 1, 2, "1 or 2"},
    {"loss.scale", F_FLOAT, OFF(loss.scale), NULL, 1e-6, 1e6, "a positive number"},
    {"loss.symmetric", F_BOOL, OFF(loss.symmetric), NULL, 0, 0, "true or false"},
    {"loss.mask_same_label", F_BOOL, OFF(loss.mask_same_label), NULL, 0, 0, "true or false"},
    {"loss.reconstruction", F_ENUM, OFF(loss.reconstruction), RECON, 0, 0, NULL},
    {"loss.reconstruction_weight", F_FLOAT, OFF(loss.reconstruction_weight), NULL, 0, BIG,
     "a number >= 0"},
    {"loss.quantization.weight", F_FLOAT, OFF(loss.quantization.weight), NULL, 0, BIG,
     "a number >= 0"},
    {"loss.quantization.warmup_epochs", F_INT, OFF(loss.quantization.warmup_epochs), NULL, 0, BIG,
     "an integer >= 0"},
    {"loss.quantization.codebook_every", F_EVERY, OFF(loss.quantization.codebook_every), NULL, 1,
     BIG, "'epoch' or a positive number of steps"},
    {"sampler.type", F_ENUM, OFF(sampler.type), SAMPLER, 0, 0, NULL},
    {"sampler.m", F_INT, OFF(sampler.m), NULL, 1, 4096, "an integer in 1..4096"},
    {"train.batch_size", F_INT, OFF(train.batch_size), NULL, 2, 1 << 20, "an integer >= 2"},
    {"train.epochs", F_INT, OFF(train.epochs), NULL, 1, BIG, "a positive integer"},
    {"train.steps", F_INT64, OFF(train.steps), NULL, 0, BIG, "an integer >= 0"},
    {"train.optimizer", F_ENUM, OFF(train.optimizer), OPTIMIZER, 0, 0, NULL},
    {"train.lr", F_FLOAT, OFF(train.lr), NULL, 1e-12, 10, "a positive number"},
    {"train.weight_decay", F_FLOAT, OFF(train.weight_decay), NULL, 0, 10, "a number in [0, 10]"},
    {"train.momentum", F_FLOAT, OFF(train.momentum), NULL, 0, 0.999999, "a number in [0, 1)"},
    {"train.schedule", F_ENUM, OFF(train.schedule), SCHEDULE, 0, 0, NULL},
    {"train.warmup_steps", F_INT, OFF(train.warmup_steps), NULL, 0, BIG, "an integer >= 0"},
    {"train.clip_grad_norm", F_FLOAT, OFF(train.clip_grad_norm), NULL, 0, BIG, "a number >= 0"},
    {"train.eval_every", F_EVERY, OFF(train.eval_every), NULL, 1, BIG,
     "'epoch' or a positive number of steps"},
    {"train.checkpoint_every", F_EVERY, OFF(train.checkpoint_every), NULL, 1, BIG,
     "'epoch' or a positive number of steps"},
    {"train.early_stop_patience", F_INT, OFF(train.early_stop_patience), NULL, 0, BIG,
     "an integer >= 0"},
    {"train.threads", F_INT, OFF(train.threads), NULL, 0, 1024, "an integer in 0..1024"},
    {"pq.m", F_INT, OFF(pq.m), NULL, 1, 4096, "an integer in 1..4096"},
    {"pq.k", F_INT, OFF(pq.k), NULL, 2, 65536, "a power of two in 2..65536"},
    {"pq.iters", F_INT, OFF(pq.iters), NULL, 1, 10000, "an integer in 1..10000"},
    {"eval.metrics", F_NAME_LIST, OFF(eval.metrics), METRICS, 0, 0, NULL},
    {"eval.pq", F_BOOL, OFF(eval.pq), NULL, 0, 0, "true or false"},
    {"eval.knn_k", F_INT, OFF(eval.knn_k), NULL, 1, 1000, "an integer in 1..1000"},
};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

static const char *const SECTIONS[] = {"data", "model", "loss", "sampler", "train", "pq", "eval",
                                       "loss.quantization", NULL};

void dml_config_defaults(dml_config *c)
{
    memset(c, 0, sizeof *c);
    c->seed = 42;
    snprintf(c->data.train, sizeof c->data.train, "fashion-mnist:train");
    snprintf(c->data.test, sizeof c->data.test, "fashion-mnist:test");
    c->data.val_fraction = 0.1f;
    c->data.normalize = DML_NORM_UNIT;
    c->model.type = DML_NET_MLP;
    c->model.hidden[0] = 512;
    c->model.hidden[1] = 256;
    c->model.n_hidden = 2;
    c->model.dim = 128;
    c->loss.type = DML_LOSS_TRIPLET;
    c->loss.margin = 0.2f;
    c->loss.neg_margin = 1.0f;
    c->loss.power = 2;
    c->loss.scale = 20.0f;
    c->loss.mask_same_label = 1;
    c->loss.quantization.warmup_epochs = 1;
    c->sampler.type = DML_CFG_SAMPLER_M_PER_CLASS;
    c->sampler.m = 4;
    c->train.batch_size = 256;
    c->train.epochs = 10;
    c->train.optimizer = 1; /* adam */
    c->train.lr = 1e-3f;
    c->train.momentum = 0.9f;
    c->train.schedule = 1; /* cosine */
    c->pq.m = 4;
    c->pq.k = 256;
    c->pq.iters = 25;
    const char *metrics[] = {"map_at_r", "precision_at_1", "r_precision", "map_all", "knn_accuracy",
                             "nmi"};
    for (int i = 0; i < 6; i++)
        snprintf(c->eval.metrics[i], sizeof c->eval.metrics[i], "%s", metrics[i]);
    c->eval.n_metrics = 6;
    c->eval.pq = 1;
    c->eval.knn_k = 5;
}

/* ---- error helpers ---- */
typedef struct where {
    const char *file;
    int line, col; /* 1-based */
} where;

static where at(const char *file, const yaml_node_t *node)
{
    where w = {file, (int)node->start_mark.line + 1, (int)node->start_mark.column + 1};
    return w;
}

static dml_status fail(dml_error *err, where w, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static dml_status fail(dml_error *err, where w, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dml_error_set(err, DML_ERR_CONFIG, w.file, w.line, w.col, "%s", msg);
}

static const char *scalar_text(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
}

static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b), row[64];
    if (lb >= 63)
        return 99;
    for (int j = 0; j <= lb; j++)
        row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[lb];
}

/* The nearest known key under prefix ("" for the top level), as " (did you mean 'x'?)". */
static void suggest(const char *prefix, const char *key, char *out, size_t n)
{
    const char *best = NULL;
    int best_d = 4;
    size_t plen = strlen(prefix);
    char cand[64];
    for (int i = 0; i < N_FIELDS; i++) {
        /* Candidates: the next path component of every key under prefix (sections too). */
        const char *path = FIELDS[i].path;
        if (plen && (strncmp(path, prefix, plen) != 0 || path[plen] != '.'))
            continue;
        const char *rest = plen ? path + plen + 1 : path;
        snprintf(cand, sizeof cand, "%.*s", (int)strcspn(rest, "."), rest);
        int d = edit_distance(key, cand);
        if (d < best_d) {
            best_d = d;
            best = path + (plen ? plen + 1 : 0);
        }
    }
    if (best)
        snprintf(out, n, " (did you mean '%.*s'?)", (int)strcspn(best, "."), best);
    else
        out[0] = '\0';
}

/* ---- values ---- */
static int parse_number(const char *s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return *s && *end == '\0' && errno == 0 && isfinite(*v);
}

static int parse_bool(const char *s, int *v)
{
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
        *v = 1;
        return 1;
    }
    if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
        *v = 0;
        return 1;
    }
    return 0;
}

static void choices_text(const char *const *choices, char *out, size_t n)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; choices[i] && used < n; i++)
        used += (size_t)snprintf(out + used, n - used, "%s%s", i ? " | " : "", choices[i]);
}

static int choice_index(const char *const *choices, const char *s)
{
    for (int i = 0; choices[i]; i++)
        if (!strcmp(choices[i], s))
            return i;
    return -1;
}

static dml_status set_scalar(const field *f, dml_config *cfg, yaml_node_t *node, where w,
                             dml_error *err)
{
    void *dst = (char *)cfg + f->offset;
    const char *s = scalar_text(node);
    double v;
    int b;
    if (node->type != YAML_SCALAR_NODE && f->type != F_INT_LIST && f->type != F_NAME_LIST)
        return fail(err, w, "%s: expected %s, got a %s", f->path,
                    f->expect ? f->expect : "one value", node->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
    switch (f->type) {
    case F_INT:
    case F_INT64:
        if (!parse_number(s, &v) || v != floor(v))
            return fail(err, w, "%s: expected %s, got \"%s\"", f->path, f->expect, s);
        if (v < f->min || v > f->max)
            return fail(err, w, "%s: expected %s, got %s", f->path, f->expect, s);
        if (f->type == F_INT)
            *(int *)dst = (int)v;
        else
            *(int64_t *)dst = (int64_t)v;
        return DML_OK;
    case F_FLOAT:
        if (!parse_number(s, &v))
            return fail(err, w, "%s: expected %s, got \"%s\"", f->path, f->expect, s);
        if (v < f->min || v > f->max)
            return fail(err, w, "%s: expected %s, got %s", f->path, f->expect, s);
        *(float *)dst = (float)v;
        return DML_OK;
    case F_BOOL:
        if (!parse_bool(s, &b))
            return fail(err, w, "%s: expected true or false, got \"%s\"", f->path, s);
        *(int *)dst = b;
        return DML_OK;
    case F_STRING:
        if (strlen(s) >= (size_t)f->max || (f->min > 0 && !*s))
            return fail(err, w, "%s: expected %s%s", f->path, f->expect,
                        *s ? " (this one is too long)" : ", got nothing");
        snprintf(dst, (size_t)f->max, "%s", s);
        return DML_OK;
    case F_ENUM: {
        int i = choice_index(f->choices, s);
        char list[256];
        choices_text(f->choices, list, sizeof list);
        if (i < 0)
            return fail(err, w, "%s: expected one of %s, got \"%s\"", f->path, list, s);
        *(int *)dst = i;
        return DML_OK;
    }
    case F_EVERY:
        if (!strcmp(s, "epoch")) {
            *(int *)dst = 0;
            return DML_OK;
        }
        if (!parse_number(s, &v) || v != floor(v) || v < 1 || v > f->max)
            return fail(err, w, "%s: expected %s, got \"%s\"", f->path, f->expect, s);
        *(int *)dst = (int)v;
        return DML_OK;
    case F_INT_LIST:
    case F_NAME_LIST:
        break;
    }
    return DML_OK;
}

static dml_status set_list(const field *f, dml_config *cfg, yaml_document_t *doc, yaml_node_t *node,
                           where w, dml_error *err)
{
    if (node->type != YAML_SEQUENCE_NODE)
        return fail(err, w, "%s: expected a list like [a, b], got \"%s\"", f->path, scalar_text(node));
    int n = (int)(node->data.sequence.items.top - node->data.sequence.items.start);
    int cap = f->type == F_INT_LIST ? DML_CONFIG_MAX_HIDDEN : DML_CONFIG_MAX_METRICS;
    if (n > cap)
        return fail(err, w, "%s: at most %d entries, got %d", f->path, cap, n);
    for (int i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(doc, node->data.sequence.items.start[i]);
        where wi = at(w.file, item);
        const char *s = scalar_text(item);
        double v;
        if (f->type == F_INT_LIST) {
            if (item->type != YAML_SCALAR_NODE || !parse_number(s, &v) || v != floor(v) ||
                v < f->min || v > f->max)
                return fail(err, wi, "%s[%d]: expected an integer in 1..65536, got \"%s\"", f->path,
                            i, s);
            cfg->model.hidden[i] = (int)v;
        } else {
            char list[512];
            choices_text(f->choices, list, sizeof list);
            if (choice_index(f->choices, s) < 0)
                return fail(err, wi, "%s[%d]: expected one of %s, got \"%s\"", f->path, i, list, s);
            snprintf(cfg->eval.metrics[i], sizeof cfg->eval.metrics[i], "%s", s);
        }
    }
    if (f->type == F_INT_LIST)
        cfg->model.n_hidden = n;
    else
        cfg->eval.n_metrics = n;
    return DML_OK;
}

static void remember(dml_config *cfg, const char *path, where w)
{
    for (int i = 0; i < cfg->n_keys; i++)
        if (!strcmp(cfg->keys[i].path, path)) {
            cfg->keys[i].line = w.line;
            cfg->keys[i].col = w.col;
            snprintf(cfg->keys[i].file, sizeof cfg->keys[i].file, "%s", w.file);
            return;
        }
    if (cfg->n_keys == DML_CONFIG_MAX_KEYS)
        return;
    dml_config_key *k = &cfg->keys[cfg->n_keys++];
    snprintf(k->path, sizeof k->path, "%s", path);
    snprintf(k->file, sizeof k->file, "%s", w.file);
    k->line = w.line;
    k->col = w.col;
}

static const field *find_field(const char *path)
{
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(FIELDS[i].path, path))
            return &FIELDS[i];
    return NULL;
}

static int is_section(const char *path)
{
    for (int i = 0; SECTIONS[i]; i++)
        if (!strcmp(SECTIONS[i], path))
            return 1;
    return 0;
}

static dml_status set_value(dml_config *cfg, const char *path, yaml_document_t *doc,
                            yaml_node_t *value, where w, dml_error *err)
{
    const field *f = find_field(path);
    dml_status st = f->type == F_INT_LIST || f->type == F_NAME_LIST
                        ? set_list(f, cfg, doc, value, w, err)
                        : set_scalar(f, cfg, value, w, err);
    if (st == DML_OK)
        remember(cfg, path, w);
    return st;
}

/* Walks a mapping under prefix ("" at the top level). */
static dml_status walk(dml_config *cfg, const char *file, yaml_document_t *doc, yaml_node_t *map,
                       const char *prefix, dml_error *err)
{
    if (map->type != YAML_MAPPING_NODE)
        return fail(err, at(file, map), "%s: expected a mapping of keys (key: value)",
                    *prefix ? prefix : "the top level");
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        yaml_node_t *value = yaml_document_get_node(doc, p->value);
        char path[128];
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", scalar_text(key));
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (!strcmp(scalar_text(yaml_document_get_node(doc, q->key)), scalar_text(key)))
                return fail(err, at(file, key), "%s: duplicate key", path);
        dml_status st;
        if (is_section(path))
            st = walk(cfg, file, doc, value, path, err);
        else if (find_field(path))
            st = set_value(cfg, path, doc, value, at(file, value), err);
        else {
            char hint[128];
            suggest(prefix, scalar_text(key), hint, sizeof hint);
            st = fail(err, at(file, key), "%s: unknown key%s", path, hint);
        }
        if (st != DML_OK)
            return st;
    }
    return DML_OK;
}

/* Parses text (a file's contents or an override's value) into doc. */
static dml_status parse(yaml_document_t *doc, const unsigned char *text, size_t len, const char *file,
                        int line_offset, dml_error *err)
{
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, text, len);
    dml_status st = DML_OK;
    if (!yaml_parser_load(&parser, doc)) {
        st = dml_error_set(err, DML_ERR_CONFIG, file, (int)parser.problem_mark.line + 1 + line_offset,
                           (int)parser.problem_mark.column + 1, "YAML syntax error: %s%s%s",
                           parser.problem ? parser.problem : "unreadable",
                           parser.context ? " " : "", parser.context ? parser.context : "");
    }
    yaml_parser_delete(&parser);
    return st;
}

static dml_status apply_set(dml_config *cfg, const char *set, dml_error *err)
{
    const char *eq = strchr(set, '=');
    where w = {"--set", 0, 0};
    if (!eq || eq == set)
        return fail(err, w, "\"%s\": expected key.path=value", set);
    char path[128];
    snprintf(path, sizeof path, "%.*s", (int)(eq - set), set);
    if (!find_field(path)) {
        const char *dot = strrchr(path, '.');
        char prefix[128], hint[128];
        snprintf(prefix, sizeof prefix, "%.*s", dot ? (int)(dot - path) : 0, path);
        suggest(prefix, dot ? dot + 1 : path, hint, sizeof hint);
        return fail(err, w, "%s: unknown key%s", path, hint);
    }
    yaml_document_t doc;
    dml_status st = parse(&doc, (const unsigned char *)eq + 1, strlen(eq + 1), "--set", 0, err);
    if (st != DML_OK)
        return st;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root)
        st = fail(err, w, "%s: expected a value after '='", path);
    else
        st = set_value(cfg, path, &doc, root, w, err);
    yaml_document_delete(&doc);
    return st;
}

/* ---- combinations ---- */
static where key_where(const dml_config *cfg, const char *path)
{
    for (int i = 0; i < cfg->n_keys; i++)
        if (!strcmp(cfg->keys[i].path, path)) {
            where w = {cfg->keys[i].file, cfg->keys[i].line, cfg->keys[i].col};
            return w;
        }
    where w = {cfg->path, 0, 0};
    return w;
}

static dml_status validate(const dml_config *c, dml_error *err)
{
    if (c->model.dim % c->pq.m != 0)
        return fail(err, key_where(c, "pq.m"), "pq.m: %d does not divide model.dim = %d", c->pq.m,
                    c->model.dim);
    if (c->pq.k & (c->pq.k - 1))
        return fail(err, key_where(c, "pq.k"), "pq.k: expected a power of two in 2..65536, got %d",
                    c->pq.k);
    if (c->sampler.type == DML_CFG_SAMPLER_M_PER_CLASS && c->train.batch_size % c->sampler.m != 0)
        return fail(err, key_where(c, "sampler.m"),
                    "sampler.m: %d does not divide train.batch_size = %d", c->sampler.m,
                    c->train.batch_size);
    int pairs = c->data.pairs != DML_PAIRS_NONE;
    if (c->loss.type == DML_LOSS_MNR && !pairs)
        return fail(err, key_where(c, "loss.type"),
                    "loss.type: mnr needs pairs: set data.pairs to same_class, halves or file");
    if (c->model.type == DML_NET_DUAL && !pairs)
        return fail(err, key_where(c, "model.type"),
                    "model.type: a dual encoder needs pairs: set data.pairs to halves or file");
    if (c->model.type == DML_NET_DUAL && c->loss.type != DML_LOSS_MNR)
        return fail(err, key_where(c, "loss.type"), "loss.type: a dual encoder trains with mnr");
    if (pairs && c->loss.type != DML_LOSS_MNR)
        return fail(err, key_where(c, "data.pairs"),
                    "data.pairs: pairs are for loss.type mnr (this config uses another loss)");
    if (c->loss.type == DML_LOSS_RECONSTRUCTION && c->model.type != DML_NET_AUTOENCODER)
        return fail(err, key_where(c, "loss.type"),
                    "loss.type: reconstruction needs model.type: autoencoder");
    if (c->loss.reconstruction_weight > 0 && c->model.type != DML_NET_AUTOENCODER)
        return fail(err, key_where(c, "loss.reconstruction_weight"),
                    "loss.reconstruction_weight: needs model.type: autoencoder");
    int supervised = c->loss.type != DML_LOSS_RECONSTRUCTION &&
                     !(c->loss.type == DML_LOSS_MNR && c->data.pairs != DML_PAIRS_SAME_CLASS);
    if (c->data.unlabelled && supervised)
        return fail(err, key_where(c, "data.unlabelled"),
                    "data.unlabelled: the %s loss needs labels", LOSS[c->loss.type]);
    if (c->data.unlabelled && c->data.labels_per_class > 0)
        return fail(err, key_where(c, "data.labels_per_class"),
                    "data.labels_per_class: cannot be combined with data.unlabelled");
    if (c->model.freeze > c->model.n_hidden + 1)
        return fail(err, key_where(c, "model.freeze"),
                    "model.freeze: %d layers, but the encoder has %d", c->model.freeze,
                    c->model.n_hidden + 1);
    if (c->model.freeze > 0 && !c->model.init[0])
        return fail(err, key_where(c, "model.freeze"),
                    "model.freeze: frozen layers need pretrained weights (model.init)");
    if (c->data.pairs == DML_PAIRS_SAME_CLASS && c->data.unlabelled)
        return fail(err, key_where(c, "data.pairs"), "data.pairs: same_class needs labels");
    return DML_OK;
}

static void name_from_path(dml_config *cfg, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".yaml"))
        n -= 5;
    else if (n > 4 && !strcmp(base + n - 4, ".yml"))
        n -= 4;
    snprintf(cfg->name, sizeof cfg->name, "%.*s", (int)n, base);
}

static dml_status read_file(const char *path, unsigned char **text, size_t *len, dml_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dml_error_set(err, DML_ERR_CONFIG, path, 0, 0, "cannot open the config: %s",
                             strerror(errno));
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    *text = malloc((size_t)(size > 0 ? size : 1));
    *len = *text ? fread(*text, 1, (size_t)(size > 0 ? size : 0), f) : 0;
    fclose(f);
    if (!*text)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
    return DML_OK;
}

dml_status dml_config_load(const char *path, int n_sets, char *const *sets, dml_config *cfg,
                           dml_error *err)
{
    dml_config_defaults(cfg);
    snprintf(cfg->path, sizeof cfg->path, "%s", path);
    name_from_path(cfg, path);
    unsigned char *text;
    size_t len;
    dml_status st = read_file(path, &text, &len, err);
    if (st != DML_OK)
        return st;
    yaml_document_t doc;
    st = parse(&doc, text, len, path, 0, err);
    free(text);
    if (st != DML_OK)
        return st;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root)
        st = walk(cfg, path, &doc, root, "", err);
    yaml_document_delete(&doc);
    for (int i = 0; st == DML_OK && i < n_sets; i++)
        st = apply_set(cfg, sets[i], err);
    if (st == DML_OK)
        st = validate(cfg, err);
    return st;
}

dml_status dml_config_error(const dml_config *cfg, const char *key_path, dml_error *err,
                            const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return fail(err, key_where(cfg, key_path), "%s: %s", key_path, msg);
}

/* ---- printing ---- */
/* The shortest of %.6g .. %.9g that reads back as the same float. */
static void print_float(float v, FILE *out)
{
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (strtof(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
}

static void print_value(const field *f, const dml_config *cfg, FILE *out)
{
    const void *src = (const char *)cfg + f->offset;
    switch (f->type) {
    case F_INT: fprintf(out, "%d", *(const int *)src); break;
    case F_INT64: fprintf(out, "%lld", (long long)*(const int64_t *)src); break;
    case F_FLOAT: print_float(*(const float *)src, out); break;
    case F_BOOL: fputs(*(const int *)src ? "true" : "false", out); break;
    case F_STRING: fprintf(out, "\"%s\"", (const char *)src); break;
    case F_ENUM: fputs(f->choices[*(const int *)src], out); break;
    case F_EVERY:
        if (*(const int *)src)
            fprintf(out, "%d", *(const int *)src);
        else
            fputs("epoch", out);
        break;
    case F_INT_LIST:
        fputc('[', out);
        for (int i = 0; i < cfg->model.n_hidden; i++)
            fprintf(out, "%s%d", i ? ", " : "", cfg->model.hidden[i]);
        fputc(']', out);
        break;
    case F_NAME_LIST:
        fputc('[', out);
        for (int i = 0; i < cfg->eval.n_metrics; i++)
            fprintf(out, "%s%s", i ? ", " : "", cfg->eval.metrics[i]);
        fputc(']', out);
        break;
    }
}

void dml_config_print(const dml_config *cfg, FILE *out)
{
    char section[64] = "";
    for (int i = 0; i < N_FIELDS; i++) {
        const field *f = &FIELDS[i];
        const char *last_dot = strrchr(f->path, '.');
        int depth = 0;
        if (last_dot) {
            char sec[64];
            snprintf(sec, sizeof sec, "%.*s", (int)(last_dot - f->path), f->path);
            if (strcmp(sec, section) != 0) {
                /* Open every level of sec that the previous section did not share. */
                const char *p = sec;
                for (int level = 0; *p; level++) {
                    size_t n = strcspn(p, ".");
                    size_t upto = (size_t)(p - sec) + n;
                    if (strncmp(section, sec, upto) != 0 || (section[upto] != '.' && section[upto]))
                        fprintf(out, "%*s%.*s:\n", 2 * level, "", (int)n, p);
                    p += n + (p[n] == '.');
                }
                snprintf(section, sizeof section, "%s", sec);
            }
            for (const char *p = f->path; p < last_dot; p++)
                depth += *p == '.';
            depth++;
        }
        fprintf(out, "%*s%s: ", 2 * depth, "", last_dot ? last_dot + 1 : f->path);
        print_value(f, cfg, out);
        fputc('\n', out);
    }
}

char *dml_config_to_yaml(const dml_config *cfg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    dml_config_print(cfg, f);
    fclose(f);
    return buf;
}
