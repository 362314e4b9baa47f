/* Config files: libyaml's document tree walked against one schema table, which also drives the
 * printing, so each key's type, range, default place and order are written down once. */
#include "train/config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "data/size.h"
#include "eval/metric_table.h"

#define MAX_CONFIG_BYTES (1 << 20)

typedef enum {
    F_INT, F_INT64, F_FLOAT, F_BOOL, F_STRING, F_ENUM, F_EVERY, F_INT_LIST, F_NAME_LIST,
    F_SIZE_MB, /* a size like 512MB or 4GB, kept in MB (int) */
    F_LOSS     /* loss.type: a row of losses/loss_table.c's */
} ftype;

/* Bounds are inclusive unless marked open. */
enum { OPEN_MIN = 1, OPEN_MAX = 2, POW2 = 4, NONEMPTY = 8, NEVER = 16 /* F_EVERY: never, 0 */ };

typedef struct field {
    const char *path;
    ftype type;
    size_t offset, size;        /* of the member */
    const char *const *choices; /* F_ENUM: indexed by the enum, NULL-terminated */
    double min, max;            /* numbers, and each entry of an F_INT_LIST */
    unsigned flags;
    const char *expect; /* what its errors say was expected (F_ENUM lists its choices) */
} field;

/* Designated indices keep each name at its enum's value, whatever order a lower layer gives
 * its enum; should a reorder put the NULL terminator on a name, -Werror=override-init says so. */
static const char *const NORMALIZE[] = {[DML_NORM_NONE] = "none", [DML_NORM_UNIT] = "unit",
                                        [DML_NORM_STANDARDIZE] = "standardize", NULL};
static const char *const PAIRS[] = {[DML_PAIRS_NONE] = "none", [DML_PAIRS_SAME_CLASS] = "same_class",
                                    [DML_PAIRS_HALVES] = "halves", [DML_PAIRS_FILE] = "file",
                                    [DML_PAIRS_AUGMENT] = "augment", NULL};
static const char *const MODEL_TYPE[] = {[DML_NET_MLP] = "mlp", [DML_NET_AUTOENCODER] = "autoencoder",
                                         [DML_NET_DUAL] = "dual", NULL};
static const char *const ACTIVATION[] = {[DML_CFG_ACT_RELU] = "relu", [DML_CFG_ACT_TANH] = "tanh",
                                         [DML_CFG_ACT_GELU] = "gelu",
                                         [DML_CFG_ACT_LEAKY_RELU] = "leaky_relu", NULL};
static const char *const OUTPUT[] = {[DML_CFG_OUT_L2] = "l2", [DML_CFG_OUT_TANH] = "tanh",
                                     [DML_CFG_OUT_NONE] = "none", NULL};
static const char *const INIT_SCHEME[] = {[DML_INIT_HE] = "he", [DML_INIT_TORCH] = "torch", NULL};
static const char *const RECON[] = {[DML_RECON_MSE] = "mse", [DML_RECON_BCE] = "bce", NULL};
static const char *const IN_MEMORY[] = {[DML_IN_MEMORY_AUTO] = "auto",
                                        [DML_IN_MEMORY_TRUE] = "true",
                                        [DML_IN_MEMORY_FALSE] = "false", NULL};
static const char *const SHUFFLE[] = {[DML_SHUFFLE_FULL] = "full", [DML_SHUFFLE_BLOCK] = "block",
                                      NULL};
static const char *const SAMPLER[] = {[DML_SAMPLER_RANDOM] = "random",
                                      [DML_SAMPLER_M_PER_CLASS] = "m_per_class", NULL};
static const char *const OPTIMIZER[] = {[DML_OPTIM_SGD] = "sgd", [DML_OPTIM_ADAM] = "adam",
                                        [DML_OPTIM_ADAMW] = "adamw", NULL};
static const char *const SCHEDULE[] = {[DML_SCHEDULE_CONSTANT] = "constant",
                                       [DML_SCHEDULE_COSINE] = "cosine", [DML_SCHEDULE_STEP] = "step",
                                       NULL};
/* eval.metrics: the metric table's rows a training run can compute (it has no ground truth). */
#define RUN_LACKS DML_METRIC_NEEDS_TRUTH

#define MEMBER(m) offsetof(dml_config, m), sizeof(((dml_config *)0)->m)
#define NUM(p, t, m, lo, hi, fl, ex) {p, t, MEMBER(m), NULL, lo, hi, fl, ex}
#define CHOICE(p, m, list) {p, F_ENUM, MEMBER(m), list, 0, 0, 0, NULL}
#define FLAG(p, m) {p, F_BOOL, MEMBER(m), NULL, 0, 0, 0, "true or false"}
#define TEXT(p, m, fl, ex) {p, F_STRING, MEMBER(m), NULL, 0, 0, fl, ex}
#define EVERY(p, m) {p, F_EVERY, MEMBER(m), NULL, 1, INT_MAX, 0, "epoch or a positive number of steps"}
#define EVERY_OR_NEVER(p, m)                                                                       \
    {p, F_EVERY, MEMBER(m), NULL, 1, INT_MAX, NEVER,                                               \
     "epoch, never (or 0) or a positive number of steps"}
#define BIG ((double)INT_MAX)

/* config.md's keys in config.md's order (the printed config follows it). */
static const field FIELDS[] = {
    TEXT("name", name, 0, "a run name"),
    NUM("seed", F_INT64, seed, 0, 9007199254740992.0, 0, "a non-negative integer"),
    TEXT("data.train", data.train, NONEMPTY, "a data spec"),
    TEXT("data.test", data.test, 0, "a data spec, or \"\""),
    NUM("data.val_fraction", F_FLOAT, data.val_fraction, 0, 1, OPEN_MAX, "a number in [0, 1)"),
    NUM("data.labels_per_class", F_INT, data.labels_per_class, 0, BIG, 0, "an integer >= 0"),
    FLAG("data.unlabelled", data.unlabelled),
    CHOICE("data.normalize", data.normalize, NORMALIZE),
    CHOICE("data.pairs", data.pairs, PAIRS),
    NUM("data.augment.height", F_INT, data.augment.height, 0, 65536, 0, "an integer in 0..65536"),
    NUM("data.augment.width", F_INT, data.augment.width, 0, 65536, 0, "an integer in 0..65536"),
    NUM("data.augment.shift", F_INT, data.augment.shift, 0, 65536, 0, "an integer >= 0 (pixels)"),
    NUM("data.augment.rotate", F_FLOAT, data.augment.rotate, 0, 180, 0, "degrees in [0, 180]"),
    NUM("data.augment.scale", F_FLOAT, data.augment.scale, 0, 1, OPEN_MAX, "a number in [0, 1)"),
    NUM("data.augment.flip", F_FLOAT, data.augment.flip, 0, 1, 0, "a probability in [0, 1]"),
    NUM("data.augment.cutout", F_INT, data.augment.cutout, 0, 65536, 0, "an integer >= 0 (pixels)"),
    NUM("data.augment.brightness", F_FLOAT, data.augment.brightness, 0, 1, 0, "a number in [0, 1]"),
    NUM("data.augment.contrast", F_FLOAT, data.augment.contrast, 0, 1, 0, "a number in [0, 1]"),
    NUM("data.augment.noise", F_FLOAT, data.augment.noise, 0, INFINITY, 0, "a number >= 0"),
    NUM("data.augment.dropout", F_FLOAT, data.augment.dropout, 0, 1, OPEN_MAX,
        "a probability in [0, 1)"),
    CHOICE("data.in_memory", data.in_memory, IN_MEMORY),
    {"data.memory_limit", F_SIZE_MB, MEMBER(data.memory_limit_mb), NULL, 1, BIG, 0,
     "a size like 512MB or 4GB"},
    CHOICE("model.type", model.type, MODEL_TYPE),
    {"model.hidden", F_INT_LIST, MEMBER(model.hidden), NULL, 1, 65536, 0,
     "a list of layer widths like [512, 256]"},
    NUM("model.dim", F_INT, model.dim, 1, 65536, 0, "an integer in 1..65536"),
    CHOICE("model.activation", model.activation, ACTIVATION),
    CHOICE("model.output", model.output, OUTPUT),
    CHOICE("model.init_scheme", model.init_scheme, INIT_SCHEME),
    TEXT("model.init", model.init, 0, "the path of a model.h5, or \"\""),
    NUM("model.freeze", F_INT, model.freeze, 0, BIG, 0, "an integer >= 0"),
    {"model.head", F_INT_LIST, MEMBER(model.head), NULL, 1, 65536, 0,
     "a list of layer widths like [512, 128], or []"},
    /* then loss.<key>: the chosen row's parameters (loss_param and its callers) */
    {"loss.type", F_LOSS, MEMBER(loss.row), NULL, 0, 0, 0, "a loss"},
    CHOICE("loss.reconstruction", loss.reconstruction, RECON),
    NUM("loss.reconstruction_weight", F_FLOAT, loss.reconstruction_weight, 0, INFINITY, 0,
        "a number >= 0"),
    NUM("loss.quantization.weight", F_FLOAT, loss.quantization.weight, 0, INFINITY, 0,
        "a number >= 0"),
    NUM("loss.quantization.warmup_epochs", F_INT, loss.quantization.warmup_epochs, 0, BIG, 0,
        "an integer >= 0"),
    EVERY("loss.quantization.codebook_every", loss.quantization.codebook_every),
    FLAG("loss.quantization.tanh", loss.quantization.tanh),
    NUM("loss.memory.size", F_INT, loss.memory.size, 0, 1 << 20, 0, "an integer in 0..1048576"),
    NUM("loss.memory.start_step", F_INT, loss.memory.start_step, 0, BIG, 0, "an integer >= 0"),
    NUM("loss.hard_negatives.k", F_INT, loss.hard_negatives.k, 0, 1024, 0, "an integer in 0..1024"),
    EVERY("loss.hard_negatives.every", loss.hard_negatives.every),
    NUM("loss.hard_negatives.relative_margin", F_FLOAT, loss.hard_negatives.relative_margin, 0, 1,
        OPEN_MAX, "a number in [0, 1)"),
    NUM("loss.hard_negatives.candidates", F_INT, loss.hard_negatives.candidates, 1, 127, 0,
        "an integer in 1..127"),
    CHOICE("sampler.type", sampler.type, SAMPLER),
    NUM("sampler.m", F_INT, sampler.m, 2, BIG, 0, "an integer >= 2"),
    FLAG("sampler.drop_last", sampler.drop_last),
    CHOICE("sampler.shuffle", sampler.shuffle, SHUFFLE),
    NUM("sampler.block_rows", F_INT, sampler.block_rows, 1, BIG, 0, "a positive integer"),
    NUM("train.batch_size", F_INT, train.batch_size, 2, BIG, 0, "an integer >= 2"),
    NUM("train.epochs", F_INT, train.epochs, 1, BIG, 0, "a positive integer"),
    NUM("train.steps", F_INT64, train.steps, 0, BIG, 0, "an integer >= 0"),
    CHOICE("train.optimizer", train.optimizer, OPTIMIZER),
    NUM("train.lr", F_FLOAT, train.lr, 0, INFINITY, OPEN_MIN, "a positive number"),
    NUM("train.weight_decay", F_FLOAT, train.weight_decay, 0, INFINITY, 0, "a number >= 0"),
    NUM("train.momentum", F_FLOAT, train.momentum, 0, 1, OPEN_MAX, "a number in [0, 1)"),
    CHOICE("train.schedule", train.schedule, SCHEDULE),
    NUM("train.warmup_steps", F_INT, train.warmup_steps, 0, BIG, 0, "an integer >= 0"),
    NUM("train.clip_grad_norm", F_FLOAT, train.clip_grad_norm, 0, INFINITY, 0, "a number >= 0"),
    NUM("train.allreduce_bucket_mb", F_FLOAT, train.allreduce_bucket_mb, 0, INFINITY, 0,
        "a number >= 0"),
    NUM("train.chunk_size", F_INT, train.chunk_size, 0, BIG, 0, "an integer >= 0"),
    EVERY_OR_NEVER("train.eval_every", train.eval_every),
    EVERY_OR_NEVER("train.checkpoint_every", train.checkpoint_every),
    NUM("train.early_stop_patience", F_INT, train.early_stop_patience, 0, BIG, 0, "an integer >= 0"),
    NUM("train.threads", F_INT, train.threads, 0, 1024, 0, "an integer in 0..1024"),
    NUM("pq.m", F_INT, pq.m, 1, 65536, 0, "an integer in 1..65536"),
    NUM("pq.k", F_INT, pq.k, 2, 65536, POW2, "a power of two in 2..65536"),
    NUM("pq.iters", F_INT, pq.iters, 1, BIG, 0, "a positive integer"),
    {"eval.metrics", F_NAME_LIST, MEMBER(eval.metrics), NULL, 0, 0, 0,
     "a list of metric names like [map_at_r, nmi]"},
    FLAG("eval.pq", eval.pq),
    NUM("eval.knn_k", F_INT, eval.knn_k, 1, BIG, 0, "a positive integer"),
};
#define N_FIELDS ((int)(sizeof FIELDS / sizeof FIELDS[0]))

static const char *const SECTIONS[] = {"data", "data.augment", "model", "loss", "loss.quantization",
                                       "loss.memory", "loss.hard_negatives", "sampler", "train",
                                       "pq", "eval"};
#define N_SECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

_Static_assert(sizeof FIELDS / sizeof FIELDS[0] + sizeof SECTIONS / sizeof SECTIONS[0] +
                       DML_LOSS_MAX_PARAMS <=
                   DML_CONFIG_MAX_KEYS,
               "dml_config.keys must hold every key and section");

void dml_config_defaults(dml_config *c)
{
    memset(c, 0, sizeof *c);
    c->seed = 42;
    snprintf(c->data.train, sizeof c->data.train, "fashion-mnist:train");
    snprintf(c->data.test, sizeof c->data.test, "fashion-mnist:test");
    c->data.val_fraction = 0.1f;
    c->data.normalize = DML_NORM_UNIT;
    c->data.pairs = DML_PAIRS_NONE;
    c->data.memory_limit_mb = 4096;
    c->model.type = DML_NET_MLP;
    c->model.hidden[0] = 512;
    c->model.hidden[1] = 256;
    c->model.n_hidden = 2;
    c->model.dim = 128;
    c->model.activation = DML_CFG_ACT_RELU;
    c->model.output = DML_CFG_OUT_L2;
    c->model.init_scheme = DML_INIT_TORCH;
    c->loss.row = dml_loss_find("triplet");
    dml_loss_defaults(c->loss.row, c->loss.p);
    c->loss.reconstruction = DML_RECON_MSE;
    c->loss.quantization.warmup_epochs = 1;
    c->loss.hard_negatives.relative_margin = 0.05f;
    c->loss.hard_negatives.candidates = 10;
    c->sampler.type = DML_SAMPLER_M_PER_CLASS;
    c->sampler.m = 4;
    c->sampler.block_rows = 4096;
    c->train.batch_size = 256;
    c->train.epochs = 10;
    c->train.optimizer = DML_OPTIM_ADAM;
    c->train.lr = 1e-3f;
    c->train.momentum = 0.9f;
    c->train.schedule = DML_SCHEDULE_CONSTANT;
    c->pq.m = 4;
    c->pq.k = 256;
    c->pq.iters = 25;
    static const char *const metrics[] = {"map_at_r", "precision_at_1", "r_precision",
                                          "map_all",  "knn_accuracy",   "nmi"};
    c->eval.n_metrics = (int)(sizeof metrics / sizeof metrics[0]);
    for (int i = 0; i < c->eval.n_metrics; i++)
        snprintf(c->eval.metrics[i], sizeof c->eval.metrics[i], "%s", metrics[i]);
    c->eval.pq = true;
    c->eval.knn_k = 5;
}

/* ---- where a value came from, and errors about it ---- */
typedef struct ctx {
    dml_config *cfg;
    yaml_document_t *doc;
    const char *file; /* the config's path, or "--set" */
    int marks;        /* 1: node marks are positions in file (not in a --set value) */
    dml_error *err;
} ctx;

typedef struct pos {
    int line, col; /* 1-based; 0 = no position */
} pos;

static pos at(const ctx *c, const yaml_node_t *n)
{
    pos p = {0, 0};
    if (c->marks) { /* libyaml counts from 0 */
        p.line = (int)n->start_mark.line + 1;
        p.col = (int)n->start_mark.column + 1;
    }
    return p;
}

static dml_status fail(const ctx *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static dml_status fail(const ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
    char msg[sizeof ((dml_error *)0)->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pos p = at(c, n);
    return dml_error_set(c->err, DML_ERR_CONFIG, c->file, p.line, p.col, "%s", msg);
}

static const char *text(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : "";
}

/* An empty plain value, ~ or null: "no value" in YAML. */
static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = text(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* How an error shows the value it got: "text" (escaped, cut short), nothing, a list, a mapping. */
static void shown(const yaml_node_t *n, char *out, size_t size)
{
    if (n->type == YAML_SEQUENCE_NODE) {
        snprintf(out, size, "a list");
        return;
    }
    if (n->type == YAML_MAPPING_NODE) {
        snprintf(out, size, "a mapping");
        return;
    }
    const char *s = text(n);
    if (!*s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        snprintf(out, size, "nothing");
        return;
    }
    size_t o = 0;
    out[o++] = '"';
    for (; *s && o + 7 < size; s++) { /* room for an escaped character, "...\"" and the end */
        if (*s == '"' || *s == '\\')
            out[o++] = '\\';
        out[o++] = (unsigned char)*s < 0x20 ? '?' : *s;
    }
    if (*s)
        o += (size_t)snprintf(out + o, size - o, "...");
    snprintf(out + o, size - o, "\"");
}

/* ---- unknown keys: the nearest known one ---- */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b), row[64];
    if (la > 60 || lb > 60)
        return INT_MAX;
    for (int j = 0; j <= lb; j++)
        row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (strncasecmp(a + i - 1, b + j - 1, 1) != 0);
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

static int leaf_is(const char *path, const char *word)
{
    const char *dot = strrchr(path, '.');
    return !strcasecmp(dot ? dot + 1 : path, word);
}

/* " (did you mean 'train.lr'?)" for word, unknown in section prefix ("" at the top level): the
 * key or section of prefix nearest by edit distance, else the one key elsewhere named word. */
static void suggest(const char *prefix, const char *word, char *out, size_t size)
{
    char best[64] = "";
    int best_d = INT_MAX;
    size_t plen = strlen(prefix);
    for (int i = 0; i < N_FIELDS; i++) {
        const char *path = FIELDS[i].path;
        if (plen && (strncmp(path, prefix, plen) != 0 || path[plen] != '.'))
            continue;
        const char *child = path + plen + (plen > 0);
        char cand[64];
        int len = (int)strcspn(child, ".");
        snprintf(cand, sizeof cand, "%.*s", len, child);
        int d = edit_distance(word, cand);
        /* Close enough to be a typo: at most 3 edits, and no more than half the name. */
        if (d < best_d && d <= 3 && 2 * d <= len) {
            best_d = d;
            snprintf(best, sizeof best, "%.*s", (int)(child - path) + len, path);
        }
    }
    if (!best[0]) {
        int found = 0;
        for (int i = 0; i < N_FIELDS + N_SECTIONS; i++) {
            const char *path = i < N_FIELDS ? FIELDS[i].path : SECTIONS[i - N_FIELDS];
            if (leaf_is(path, word) && found++ == 0)
                snprintf(best, sizeof best, "%s", path);
        }
        for (int r = 0; r < dml_loss_row_count; r++) /* loss.<key>: the rows' parameters */
            for (int j = 0; j < dml_loss_rows[r]->n_params; j++) {
                char path[64];
                snprintf(path, sizeof path, "loss.%s", dml_loss_rows[r]->params[j].key);
                if (!strcasecmp(dml_loss_rows[r]->params[j].key, word) &&
                    (found == 0 || strcmp(best, path)) && found++ == 0)
                    snprintf(best, sizeof best, "%s", path);
            }
        if (found != 1)
            best[0] = '\0';
    }
    if (best[0])
        snprintf(out, size, " (did you mean '%s'?)", best);
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

static int parse_bool(const char *s, bool *v)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (int i = 0; i < 3; i++) {
        if (!strcasecmp(s, yes[i]) || !strcasecmp(s, no[i])) {
            *v = !strcasecmp(s, yes[i]);
            return 1;
        }
    }
    return 0;
}

static int in_range(const field *f, double v)
{
    if (v < f->min || v > f->max || ((f->flags & OPEN_MIN) && v == f->min) ||
        ((f->flags & OPEN_MAX) && v == f->max))
        return 0;
    return !(f->flags & POW2) || ((long long)v & ((long long)v - 1)) == 0;
}

static int parse_int(const field *f, const char *s, double *v)
{
    return parse_number(s, v) && *v == floor(*v) && in_range(f, *v);
}

/* A size (data/size.h's: a bare number is MB), in whole MB. */
static int parse_size_mb(const field *f, const char *s, double *mb)
{
    double bytes;
    if (!dml_size_parse(s, &bytes))
        return 0;
    *mb = ceil(bytes / 1048576.0);
    return in_range(f, *mb);
}

/* An integer field given a whole number (even one too large for a double) above a maximum its
 * words leave unsaid, the limit of its type ("an integer >= 0" up to INT_MAX): the message says
 * the range instead. A field's own bounds (0..1024, 1 or 2) are in its words already. */
static int above_max(const field *f, const yaml_node_t *n, char *expect, size_t size)
{
    int integer = f->type == F_INT || f->type == F_INT64 || f->type == F_EVERY;
    if (n->type != YAML_SCALAR_NODE || !integer || f->max < BIG)
        return 0;
    const char *s = text(n);
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v > f->max) || v != floor(v))
        return 0;
    if (f->type == F_EVERY)
        snprintf(expect, size, "%s or a number of steps from %.0f to %.0f",
                 f->flags & NEVER ? "epoch, never (or 0)" : "epoch", f->min, f->max);
    else
        snprintf(expect, size, "an integer from %.0f to %.0f", f->min, f->max);
    return 1;
}

static int choice_index(const char *const *choices, const char *s)
{
    for (int i = 0; choices[i]; i++)
        if (!strcmp(choices[i], s))
            return i;
    return -1;
}

static void choices_text(const char *const *choices, char *out, size_t size)
{
    size_t used = snprintf(out, size, "one of ");
    for (int i = 0; choices[i] && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? " | " : "", choices[i]);
}

/* loss.type's choices: "one of contrastive | triplet | ...". */
static void loss_names(char *out, size_t size)
{
    size_t used = (size_t)snprintf(out, size, "one of ");
    for (int i = 0; i < dml_loss_row_count && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? " | " : "",
                                 dml_loss_rows[i]->name);
}

static void set_text(char *dst, size_t size, const char *s)
{
    /* Zero-padded, so two configs with the same settings compare equal byte for byte. */
    memset(dst, 0, size);
    memcpy(dst, s, strlen(s));
}

static dml_status set_scalar(const ctx *c, const field *f, const yaml_node_t *n)
{
    void *dst = (char *)c->cfg + f->offset;
    const char *s = text(n);
    double v;
    bool b;
    int i;
    if (n->type == YAML_SCALAR_NODE) {
        switch (f->type) {
        case F_ENUM:
            DML_ASSERT(f->size == sizeof(int));
            if ((i = choice_index(f->choices, s)) >= 0) {
                *(int *)dst = i;
                return DML_OK;
            }
            break;
        case F_EVERY:
            if (!strcmp(s, "epoch")) {
                *(int *)dst = DML_EVERY_EPOCH;
                return DML_OK;
            }
            if ((f->flags & NEVER) && (!strcmp(s, "never") || (parse_number(s, &v) && v == 0))) {
                *(int *)dst = DML_EVERY_NEVER;
                return DML_OK;
            }
            /* fall through - else a number of steps */
        case F_INT:
            DML_ASSERT(f->size == sizeof(int));
            if (parse_int(f, s, &v)) {
                *(int *)dst = (int)v;
                return DML_OK;
            }
            break;
        case F_SIZE_MB:
            DML_ASSERT(f->size == sizeof(int));
            if (parse_size_mb(f, s, &v)) {
                *(int *)dst = (int)v;
                return DML_OK;
            }
            break;
        case F_INT64:
            DML_ASSERT(f->size == sizeof(int64_t));
            if (parse_int(f, s, &v)) {
                *(int64_t *)dst = (int64_t)v;
                return DML_OK;
            }
            break;
        case F_FLOAT:
            DML_ASSERT(f->size == sizeof(float));
            /* Range-checked as the float it becomes: 1e-50 is not a positive float. */
            if (parse_number(s, &v) && isfinite((float)v) && in_range(f, (float)v)) {
                *(float *)dst = (float)v;
                return DML_OK;
            }
            break;
        case F_BOOL:
            DML_ASSERT(f->size == sizeof(bool));
            if (parse_bool(s, &b)) {
                *(bool *)dst = b;
                return DML_OK;
            }
            break;
        case F_STRING:
            if (is_null(n))
                s = "";
            if (strlen(s) >= f->size)
                return fail(c, n, "%s: expected at most %zu characters, got %zu", f->path,
                            f->size - 1, strlen(s));
            if (*s || !(f->flags & NONEMPTY)) {
                set_text(dst, f->size, s);
                return DML_OK;
            }
            break;
        case F_LOSS: {
            DML_ASSERT(f->size == sizeof(const dml_loss_row *));
            const dml_loss_row *row = dml_loss_find(s);
            if (row) {
                dml_config_set_loss(c->cfg, row);
                return DML_OK;
            }
            break;
        }
        case F_INT_LIST:
        case F_NAME_LIST:
            DML_ASSERT(!"lists are set by set_list");
        }
    }
    char expect[256], got[64];
    if (f->type == F_ENUM)
        choices_text(f->choices, expect, sizeof expect);
    else if (f->type == F_LOSS)
        loss_names(expect, sizeof expect);
    else if (!above_max(f, n, expect, sizeof expect))
        snprintf(expect, sizeof expect, "%s", f->expect);
    shown(n, got, sizeof got);
    return fail(c, n, "%s: expected %s, got %s", f->path, expect, got);
}

/* Where an F_INT_LIST's count is: model.hidden's or model.head's. */
static size_t int_list_count(const field *f)
{
    return f->offset == offsetof(dml_config, model.head) ? offsetof(dml_config, model.n_head)
                                                         : offsetof(dml_config, model.n_hidden);
}

/* The lists of the schema: layer widths (F_INT_LIST: model.hidden, model.head) and eval.metrics
 * (F_NAME_LIST). */
static dml_status set_list(const ctx *c, const field *f, const yaml_node_t *n)
{
    char got[64];
    shown(n, got, sizeof got);
    if (n->type != YAML_SEQUENCE_NODE)
        return fail(c, n, "%s: expected %s, got %s", f->path, f->expect, got);
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    int hidden = f->type == F_INT_LIST;
    int cap = hidden ? DML_CONFIG_MAX_HIDDEN : DML_CONFIG_MAX_METRICS;
    if (count > cap)
        return fail(c, n, "%s: expected at most %d entries, got %d", f->path, cap, count);
    dml_config *cfg = c->cfg;
    memset((char *)cfg + f->offset, 0, f->size);
    for (int i = 0; i < count; i++) {
        const yaml_node_t *item = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        const char *s = text(item);
        double v;
        shown(item, got, sizeof got);
        if (hidden) {
            if (item->type != YAML_SCALAR_NODE || !parse_int(f, s, &v))
                return fail(c, item, "%s[%d]: expected an integer in %.0f..%.0f, got %s", f->path,
                            i, f->min, f->max, got);
            ((int *)((char *)cfg + f->offset))[i] = (int)v;
            continue;
        }
        int m = item->type == YAML_SCALAR_NODE ? dml_metric_find(s) : -1;
        if (m < 0) {
            char names[256];
            dml_metric_names(RUN_LACKS, " | ", names, sizeof names);
            return fail(c, item, "%s[%d]: expected one of %s, got %s", f->path, i, names, got);
        }
        if (dml_metric_rows[m].needs & RUN_LACKS)
            return fail(c, item, "%s[%d]: %s needs ground-truth neighbours, which a training run "
                        "does not have (dml eval --truth computes it)", f->path, i, s);
        for (int j = 0; j < i; j++)
            if (!strcmp(cfg->eval.metrics[j], s))
                return fail(c, item, "%s[%d]: expected each metric once, got %s again", f->path, i,
                            got);
        set_text(cfg->eval.metrics[i], sizeof cfg->eval.metrics[i], s);
    }
    if (hidden)
        *(int *)((char *)cfg + int_list_count(f)) = count;
    else
        cfg->eval.n_metrics = count;
    return DML_OK;
}

/* ---- keys ---- */
static const field *find_field(const char *path)
{
    for (int i = 0; i < N_FIELDS; i++)
        if (!strcmp(FIELDS[i].path, path))
            return &FIELDS[i];
    return NULL;
}

static int is_section(const char *path)
{
    for (int i = 0; i < N_SECTIONS; i++)
        if (!strcmp(SECTIONS[i], path))
            return 1;
    return 0;
}

static void remember(dml_config *cfg, const char *path, pos p)
{
    dml_config_key *k = NULL;
    for (int i = 0; i < cfg->n_keys && !k; i++)
        if (!strcmp(cfg->keys[i].path, path))
            k = &cfg->keys[i];
    if (!k) { /* paths are schema paths, each stored once: the array cannot fill */
        DML_ASSERT(cfg->n_keys < DML_CONFIG_MAX_KEYS);
        k = &cfg->keys[cfg->n_keys++];
        size_t len = strlen(path); /* a schema path: always short */
        DML_ASSERT(len < sizeof k->path);
        memcpy(k->path, path, len + 1);
    }
    k->line = p.line;
    k->col = p.col;
}

/* Whether key is a parameter of some loss. */
static int any_loss_param(const char *key)
{
    for (int i = 0; i < dml_loss_row_count; i++)
        if (dml_loss_param_index(dml_loss_rows[i], key) >= 0)
            return 1;
    return 0;
}

/* "distance, margin, ..." : row's parameter keys. */
static void param_names(const dml_loss_row *row, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < row->n_params && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? ", " : "",
                                 row->params[i].key);
}

/* loss.<key> = n, key a parameter of the loss chosen so far (the file's loss.type is read
 * before its other loss keys, whatever their order: walk). The error of a key the loss lacks
 * is at key_node and names the loss's parameters. */
static dml_status set_loss_param(const ctx *c, const yaml_node_t *key_node, const char *key,
                                 const yaml_node_t *n)
{
    dml_config *cfg = c->cfg;
    const dml_loss_row *row = cfg->loss.row;
    char path[64], names[200];
    snprintf(path, sizeof path, "loss.%s", key);
    int i = dml_loss_param_index(row, key);
    if (i < 0) {
        param_names(row, names, sizeof names);
        char hint[96] = "";
        if (!any_loss_param(key)) { /* a typo: of a loss key, or of this loss's parameter */
            suggest("loss", key, hint, sizeof hint);
            for (int j = 0, best = 4; !hint[0] && j < row->n_params; j++) {
                int d = edit_distance(key, row->params[j].key);
                if (d < best && 2 * d <= (int)strlen(row->params[j].key))
                    snprintf(hint, sizeof hint, " (did you mean 'loss.%s'?)", row->params[j].key);
            }
            if (hint[0])
                return fail(c, key_node, "%s: unknown key%s", path, hint);
        }
        if (row->n_params == 0)
            return fail(c, key_node, "%s: not a parameter of loss.type %s, which has none", path,
                        row->name);
        return fail(c, key_node, "%s: not a parameter of loss.type %s, whose parameters are %s",
                    path, row->name, names);
    }
    const dml_loss_param *prm = &row->params[i];
    const char *s = text(n);
    double v = 0;
    bool b;
    int ok = 0;
    if (n->type == YAML_SCALAR_NODE) {
        switch (prm->kind) {
        case DML_LP_FLOAT: /* range-checked as the float it becomes */
            ok = parse_number(s, &v) && isfinite((float)v) && dml_loss_param_ok(prm, (float)v);
            v = (float)v;
            break;
        case DML_LP_INT: ok = parse_number(s, &v) && dml_loss_param_ok(prm, v); break;
        case DML_LP_FLAG:
            ok = parse_bool(s, &b);
            v = b;
            break;
        case DML_LP_CHOICE:
            v = choice_index(prm->choices, s);
            ok = v >= 0;
            break;
        }
    }
    if (ok) {
        cfg->loss.p[i] = (float)v;
        remember(cfg, path, at(c, n));
        return DML_OK;
    }
    char expect[256], got[64];
    dml_loss_param_expect(prm, expect, sizeof expect);
    shown(n, got, sizeof got);
    return fail(c, n, "%s: expected %s, got %s", path, expect, got);
}

/* Drops key_path from the keys given (a parameter of a loss no longer chosen). */
static void forget(dml_config *cfg, const char *key_path)
{
    for (int i = 0; i < cfg->n_keys; i++)
        if (!strcmp(cfg->keys[i].path, key_path)) {
            memmove(&cfg->keys[i], &cfg->keys[i + 1],
                    (size_t)(cfg->n_keys - i - 1) * sizeof cfg->keys[0]);
            cfg->n_keys--;
            return;
        }
}

static int param_given(const dml_config *cfg, const dml_loss_param *prm)
{
    char path[64];
    snprintf(path, sizeof path, "loss.%s", prm->key);
    return dml_config_where(cfg, path, NULL, NULL);
}

/* The loss's defaults that depend on its other parameters. */
static void fit_loss(dml_config *cfg)
{
    const dml_loss_row *row = cfg->loss.row;
    int given[DML_LOSS_MAX_PARAMS];
    for (int i = 0; i < row->n_params; i++)
        given[i] = param_given(cfg, &row->params[i]);
    if (row->fit_defaults)
        row->fit_defaults(cfg->loss.p, given);
}

void dml_config_set_loss(dml_config *cfg, const dml_loss_row *row)
{
    const dml_loss_row *old = cfg->loss.row;
    float p[DML_LOSS_MAX_PARAMS] = {0};
    dml_loss_defaults(row, p);
    for (int i = 0; i < old->n_params; i++) {
        const dml_loss_param *was = &old->params[i];
        if (!param_given(cfg, was))
            continue;
        int j = dml_loss_param_index(row, was->key);
        const dml_loss_param *now = j >= 0 ? &row->params[j] : NULL;
        if (now && now->kind == was->kind && now->choices == was->choices &&
            dml_loss_param_ok(now, cfg->loss.p[i])) {
            p[j] = cfg->loss.p[i];
        } else {
            char path[64];
            snprintf(path, sizeof path, "loss.%s", was->key);
            forget(cfg, path);
        }
    }
    cfg->loss.row = row;
    memcpy(cfg->loss.p, p, sizeof p);
    fit_loss(cfg);
}

float dml_config_loss_param(const dml_config *cfg, const char *key, float def)
{
    int i = dml_loss_param_index(cfg->loss.row, key);
    return i >= 0 ? cfg->loss.p[i] : def;
}

static dml_status set_value(const ctx *c, const field *f, const yaml_node_t *n)
{
    dml_status st = f->type == F_INT_LIST || f->type == F_NAME_LIST ? set_list(c, f, n)
                                                                    : set_scalar(c, f, n);
    if (st == DML_OK)
        remember(c->cfg, f->path, at(c, n));
    return st;
}

/* The loss section's type, set before its other keys: they are its row's parameters. */
static dml_status set_loss_type_first(const ctx *c, const yaml_node_t *map)
{
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *key = yaml_document_get_node(c->doc, p->key);
        if (key->type == YAML_SCALAR_NODE && !strcmp(text(key), "type"))
            return set_value(c, find_field("loss.type"), yaml_document_get_node(c->doc, p->value));
    }
    return DML_OK;
}

/* Walks the mapping of section prefix ("" at the top level). */
static dml_status walk(const ctx *c, const yaml_node_t *map, const char *prefix)
{
    if (is_null(map)) /* a section whose keys are all commented out */
        return DML_OK;
    if (map->type != YAML_MAPPING_NODE) {
        char got[64];
        shown(map, got, sizeof got);
        return *prefix ? fail(c, map, "%s: expected a mapping of keys, got %s", prefix, got)
                       : fail(c, map, "expected a mapping of keys like \"train:\", got %s", got);
    }
    dml_status st = strcmp(prefix, "loss") ? DML_OK : set_loss_type_first(c, map);
    if (st != DML_OK)
        return st;
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const yaml_node_t *key = yaml_document_get_node(c->doc, p->key);
        const yaml_node_t *value = yaml_document_get_node(c->doc, p->value);
        char path[128], got[64];
        shown(key, got, sizeof got);
        if (key->type != YAML_SCALAR_NODE)
            return fail(c, key, "%s: expected a key name, got %s", *prefix ? prefix : "config", got);
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", text(key));
        for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            const yaml_node_t *first = yaml_document_get_node(c->doc, q->key);
            if (first->type == YAML_SCALAR_NODE && !strcmp(text(first), text(key))) {
                if (!c->marks)
                    return fail(c, key, "%s: duplicate key", path);
                return fail(c, key, "%s: duplicate key (first given at line %d)", path,
                            at(c, first).line);
            }
        }
        const field *f = find_field(path);
        if (is_section(path)) {
            remember(c->cfg, path, at(c, key));
            st = walk(c, value, path);
        } else if (f) {
            st = set_value(c, f, value);
        } else if (!strcmp(prefix, "loss")) {
            st = set_loss_param(c, key, text(key), value);
        } else {
            char hint[96];
            suggest(prefix, text(key), hint, sizeof hint);
            st = fail(c, key, "%s: unknown key%s", path, hint);
        }
        if (st != DML_OK)
            return st;
    }
    return DML_OK;
}

/* ---- YAML text to a document ---- */
typedef struct problem {
    int line, col;
    char msg[256];
} problem;

static dml_status syntax_error(const yaml_parser_t *parser, const unsigned char *text, problem *pb)
{
    if (parser->error == YAML_MEMORY_ERROR)
        return DML_ERR_NOMEM;
    pb->line = (int)parser->problem_mark.line + 1;
    pb->col = (int)parser->problem_mark.column + 1;
    if (parser->error == YAML_READER_ERROR) { /* bad encoding: only a byte offset is known */
        pb->line = pb->col = 1;
        for (size_t i = 0; i < parser->problem_offset; i++, pb->col++)
            if (text[i] == '\n')
                pb->line++, pb->col = 0;
    }
    snprintf(pb->msg, sizeof pb->msg, "YAML syntax error: %s%s%s",
             parser->problem ? parser->problem : "unreadable", parser->context ? " " : "",
             parser->context ? parser->context : "");
    return DML_ERR_CONFIG;
}

/* Loads the one YAML document of text[len] into *doc (its root is NULL when text holds none). */
static dml_status load_doc(const unsigned char *text, size_t len, yaml_document_t *doc, problem *pb)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return DML_ERR_NOMEM;
    yaml_parser_set_input_string(&parser, text, len);
    dml_status st = DML_OK;
    if (!yaml_parser_load(&parser, doc)) {
        st = syntax_error(&parser, text, pb);
    } else {
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            st = syntax_error(&parser, text, pb);
        } else {
            if (yaml_document_get_root_node(&next)) {
                st = DML_ERR_CONFIG;
                pb->line = (int)next.start_mark.line + 1;
                pb->col = (int)next.start_mark.column + 1;
                snprintf(pb->msg, sizeof pb->msg, "expected one YAML document, got a second one");
            }
            yaml_document_delete(&next);
        }
        if (st != DML_OK)
            yaml_document_delete(doc);
    }
    yaml_parser_delete(&parser);
    return st;
}

/* ---- overrides ---- */
/* loss.<key>: a parameter of some loss (set_loss_param checks the chosen one's). */
static int is_loss_param(const char *path)
{
    return !strncmp(path, "loss.", 5) && !strchr(path + 5, '.') && path[5];
}

static dml_status apply_set(dml_config *cfg, const char *set, dml_error *err)
{
    const char *eq = strchr(set, '=');
    if (!eq || eq == set)
        return dml_error_set(err, DML_ERR_CONFIG, "--set", 0, 0,
                             "expected key.path=value, got \"%s\"", set);
    char path[128];
    snprintf(path, sizeof path, "%.*s", (int)(eq - set), set);
    /* Resolve one component at a time, so an error names the first unknown one. */
    for (const char *p = path;;) {
        size_t n = strcspn(p, "."), end = (size_t)(p - path) + n;
        char cand[128], prefix[128], word[128], hint[96] = "";
        snprintf(cand, sizeof cand, "%.*s", (int)end, path);
        if (p[n] == '\0' && (is_section(cand) || find_field(cand) || is_loss_param(cand)))
            break;
        if (p[n] == '.' && is_section(cand)) {
            p += n + 1;
            continue;
        }
        snprintf(prefix, sizeof prefix, "%.*s", p == path ? 0 : (int)(p - path) - 1, path);
        snprintf(word, sizeof word, "%.*s", (int)n, p);
        if (!find_field(cand))
            suggest(prefix, word, hint, sizeof hint);
        return dml_error_set(err, DML_ERR_CONFIG, "--set", 0, 0, "%s: unknown key%s",
                             find_field(cand) ? path : cand, hint);
    }
    /* "key=" is the empty string: data.test= drops the test set. */
    const char *value = eq[1] ? eq + 1 : "\"\"";
    yaml_document_t doc;
    problem pb;
    dml_status st = load_doc((const unsigned char *)value, strlen(value), &doc, &pb);
    if (st == DML_ERR_NOMEM)
        return dml_error_set(err, st, "--set", 0, 0, "%s: out of memory", path);
    if (st != DML_OK)
        return dml_error_set(err, st, "--set", 0, 0, "%s: %s", path, pb.msg);
    ctx c = {cfg, &doc, "--set", 0, err};
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    pos none = {0, 0};
    if (!root) {
        st = dml_error_set(err, DML_ERR_CONFIG, "--set", 0, 0, "%s: expected a value after '='",
                           path);
    } else if (is_section(path)) {
        remember(cfg, path, none);
        st = walk(&c, root, path);
    } else if (find_field(path)) {
        st = set_value(&c, find_field(path), root);
    } else { /* checked against the loss chosen by the file and earlier --set */
        st = set_loss_param(&c, root, path + strlen("loss."), root);
    }
    yaml_document_delete(&doc);
    return st;
}

/* ---- loading ---- */
static dml_status read_text(const char *path, unsigned char **out, size_t *len, dml_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dml_error_set(err, DML_ERR_CONFIG, path, 0, 0, "cannot open the config: %s",
                             strerror(errno));
    unsigned char *buf = malloc(MAX_CONFIG_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_CONFIG_BYTES + 1, f) : 0;
    int failed = ferror(f), code = errno;
    fclose(f);
    if (!buf)
        return dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory reading the config");
    if (failed || n > MAX_CONFIG_BYTES) {
        free(buf);
        return failed ? dml_error_set(err, DML_ERR_CONFIG, path, 0, 0,
                                      "cannot read the config: %s", strerror(code))
                      : dml_error_set(err, DML_ERR_CONFIG, path, 0, 0,
                                      "expected a YAML config of at most %d bytes",
                                      MAX_CONFIG_BYTES);
    }
    *out = buf;
    *len = n;
    return DML_OK;
}

/* name's default: the file name without .yaml (or .yml). */
static void name_from_path(dml_config *cfg, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".yaml"))
        n -= 5;
    else if (n > 4 && !strcmp(base + n - 4, ".yml"))
        n -= 4;
    if (n >= sizeof cfg->name)
        n = sizeof cfg->name - 1;
    memset(cfg->name, 0, sizeof cfg->name);
    memcpy(cfg->name, base, n);
}

/* Defaults that depend on other keys: the loss of an unlabelled autoencoder, the loss's
 * parameters that depend on others (its row's fit_defaults). A default must work with
 * what the user did set: Fashion-MNIST's test set is no test set for other training data, and
 * pq.m must divide the embedding width (the largest divisor up to 4), sampler.m the batch. The
 * defaults only the data can settle are the trainer's (train/run_defaults.c). */
static void settle(dml_config *cfg)
{
    /* unlabelled rows give the default triplet loss nothing: an autoencoder reconstructs them */
    if (!dml_config_where(cfg, "loss.type", NULL, NULL) && cfg->data.unlabelled &&
        cfg->model.type == DML_NET_AUTOENCODER)
        dml_config_set_loss(cfg, dml_loss_find("reconstruction"));
    fit_loss(cfg);
    if (!dml_config_where(cfg, "data.test", NULL, NULL) &&
        strncmp(cfg->data.train, "fashion-mnist:", strlen("fashion-mnist:")) != 0)
        memset(cfg->data.test, 0, sizeof cfg->data.test); /* as a config that gave "" */
    if (!dml_config_where(cfg, "pq.m", NULL, NULL))
        while (cfg->pq.m > 1 && cfg->model.dim % cfg->pq.m != 0)
            cfg->pq.m--;
    /* sampler.m: the smallest divisor of the batch from the default up, so that the printed
     * config, which gives m, loads again; the data may raise it (train/run_defaults.c). */
    int b = cfg->train.batch_size;
    if (!dml_config_where(cfg, "sampler.m", NULL, NULL) && b % cfg->sampler.m != 0) {
        int m = cfg->sampler.m < b ? cfg->sampler.m : b;
        while (b % m != 0)
            m++;
        cfg->sampler.m = m;
    }
}

dml_status dml_config_load_text(const char *text, size_t len, const char *path, int n_sets,
                                char *const *sets, dml_config *cfg, dml_error *err)
{
    dml_config_defaults(cfg);
    snprintf(cfg->path, sizeof cfg->path, "%s", path);
    name_from_path(cfg, path);
    if (len > MAX_CONFIG_BYTES)
        return dml_error_set(err, DML_ERR_CONFIG, path, 0, 0,
                             "expected a YAML config of at most %d bytes", MAX_CONFIG_BYTES);
    yaml_document_t doc;
    problem pb;
    dml_status st = load_doc((const unsigned char *)text, len, &doc, &pb);
    if (st == DML_ERR_NOMEM)
        return dml_error_set(err, st, path, 0, 0, "out of memory reading the config");
    if (st != DML_OK)
        return dml_error_set(err, st, path, pb.line, pb.col, "%s", pb.msg);
    ctx c = {cfg, &doc, path, 1, err};
    const yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) /* NULL: an empty file, every key at its default */
        st = walk(&c, root, "");
    yaml_document_delete(&doc);
    for (int i = 0; st == DML_OK && i < n_sets; i++)
        st = apply_set(cfg, sets[i], err);
    if (st != DML_OK)
        return st;
    settle(cfg);
    return dml_config_check(cfg, err);
}

dml_status dml_config_load(const char *path, int n_sets, char *const *sets, dml_config *cfg,
                           dml_error *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    dml_status st = read_text(path, &buf, &len, err);
    if (st == DML_OK)
        st = dml_config_load_text((const char *)buf, len, path, n_sets, sets, cfg, err);
    free(buf);
    return st;
}

/* ---- positions for later errors ---- */
int dml_config_where(const dml_config *cfg, const char *key_path, int *line, int *col)
{
    const dml_config_key *k = NULL;
    for (int i = 0; i < cfg->n_keys && !k; i++)
        if (!strcmp(cfg->keys[i].path, key_path))
            k = &cfg->keys[i];
    if (line)
        *line = k ? k->line : 0;
    if (col)
        *col = k ? k->col : 0;
    return k != NULL;
}

dml_status dml_config_error(const dml_config *cfg, const char *key_path, dml_error *err,
                            const char *fmt, ...)
{
    char msg[sizeof ((dml_error *)0)->msg]; /* formatted first: the arguments may be in *err */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    int given = dml_config_where(cfg, key_path, &line, &col);
    const char *file = given && line == 0 ? "--set" : cfg->path;
    return dml_error_set(err, DML_ERR_CONFIG, file, line, col, "%s: %s", key_path, msg);
}

/* ---- printing ---- */
/* The shortest of %.6g .. %.9g that reads back as the same float. */
static void print_float(float v, FILE *out)
{
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if ((float)strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, out);
}

/* The code point of the UTF-8 sequence at s and its length in *len; a byte that does not start
 * a whole sequence is taken alone (libyaml's strings are valid UTF-8, but cfg may be filled
 * otherwise). */
static unsigned utf8_at(const unsigned char *s, int *len)
{
    int n = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 1;
    unsigned cp = n == 1 ? s[0] : s[0] & (0x7Fu >> n);
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *len = 1;
            return s[0];
        }
        cp = cp << 6 | (s[i] & 0x3Fu);
    }
    *len = n;
    return cp;
}

/* What must be escaped to read back as itself: what libyaml's reader refuses unescaped (C0 and
 * C1 controls, DEL, U+FFFE, U+FFFF), and what it takes for line breaks (NEL, U+2028, U+2029)
 * or a byte order mark, which would be folded or dropped. */
static int needs_escape(unsigned cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF;
}

/* A YAML double-quoted string. */
static void print_string(const char *s, FILE *out)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        int len;
        unsigned cp = utf8_at(p, &len);
        if (*p == '"' || *p == '\\')
            fprintf(out, "\\%c", *p);
        else if (needs_escape(cp))
            fprintf(out, cp < 0x100 ? "\\x%02x" : "\\u%04x", cp);
        else
            fwrite(p, 1, (size_t)len, out);
        p += len;
    }
    fputc('"', out);
}

static void print_param(const dml_loss_param *prm, float v, FILE *out)
{
    switch (prm->kind) {
    case DML_LP_FLOAT: print_float(v, out); break;
    case DML_LP_INT: fprintf(out, "%d", (int)v); break;
    case DML_LP_FLAG: fputs(v != 0.0f ? "true" : "false", out); break;
    case DML_LP_CHOICE: fputs(prm->choices[(int)v], out); break;
    }
}

static void print_value(const field *f, const dml_config *cfg, FILE *out)
{
    const void *src = (const char *)cfg + f->offset;
    switch (f->type) {
    case F_INT: fprintf(out, "%d", *(const int *)src); break;
    case F_INT64: fprintf(out, "%lld", (long long)*(const int64_t *)src); break;
    case F_FLOAT: print_float(*(const float *)src, out); break;
    case F_BOOL: fputs(*(const bool *)src ? "true" : "false", out); break;
    case F_STRING: print_string(src, out); break;
    case F_ENUM: fputs(f->choices[*(const int *)src], out); break;
    case F_EVERY:
        if (*(const int *)src == DML_EVERY_EPOCH)
            fputs("epoch", out);
        else if (*(const int *)src == DML_EVERY_NEVER)
            fputs("never", out);
        else
            fprintf(out, "%d", *(const int *)src);
        break;
    case F_SIZE_MB:
        fprintf(out, "%dMB", *(const int *)src);
        break;
    case F_LOSS: fputs(cfg->loss.row->name, out); break;
    case F_INT_LIST:
        fputc('[', out);
        for (int i = 0; i < *(const int *)((const char *)cfg + int_list_count(f)); i++)
            fprintf(out, "%s%d", i ? ", " : "", ((const int *)src)[i]);
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
        const char *leaf = strrchr(f->path, '.');
        char sec[64];
        snprintf(sec, sizeof sec, "%.*s", leaf ? (int)(leaf - f->path) : 0, f->path);
        /* Open each level of sec that the previous key's section did not share. */
        int level = 0;
        for (const char *p = sec; *p; level++) {
            size_t n = strcspn(p, "."), upto = (size_t)(p - sec) + n;
            if (strncmp(section, sec, upto) != 0 || (section[upto] && section[upto] != '.'))
                fprintf(out, "%s%*s%.*s:\n", level ? "" : "\n", 2 * level, "", (int)n, p);
            p += n + (p[n] == '.');
        }
        snprintf(section, sizeof section, "%s", sec);
        fprintf(out, "%*s%s: ", 2 * level, "", leaf ? leaf + 1 : f->path);
        print_value(f, cfg, out);
        fputc('\n', out);        for (int j = 0; f->type == F_LOSS && j < cfg->loss.row->n_params; j++) {
            fprintf(out, "%*s%s: ", 2 * level, "", cfg->loss.row->params[j].key);
            print_param(&cfg->loss.row->params[j], cfg->loss.p[j], out);
            fputc('\n', out);
        }
    }
}

void dml_config_print_keys(const dml_config *cfg, FILE *out)
{
    for (int i = 0; i < N_FIELDS; i++) {
        fprintf(out, "%s: ", FIELDS[i].path);
        print_value(&FIELDS[i], cfg, out);
        fputc('\n', out);
        for (int j = 0; FIELDS[i].type == F_LOSS && j < cfg->loss.row->n_params; j++) {
            fprintf(out, "loss.%s: ", cfg->loss.row->params[j].key);
            print_param(&cfg->loss.row->params[j], cfg->loss.p[j], out);
            fputc('\n', out);
        }
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
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}
