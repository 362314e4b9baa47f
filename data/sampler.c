/* Batch samplers: random (a shuffle per epoch), m_per_class, and pairs. Every shuffle starts
 * from a fixed arrangement (anchor, or the classes in order) and the generator's state before
 * it is kept (snap), so a saved state only needs the generators, the position and the step. */
#include "data/sampler.h"

#include <stdlib.h>
#include <string.h>

#define STATE_MAGIC 0x31504d53204c4d44ull /* "DML SMP1" little-endian */
#define STATE_WORDS 12                    /* magic, fingerprint, step, pos, rng[4], snap[4] */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t fingerprint(const dml_sampler *s)
{
    int32_t head[5] = {(int32_t)s->spec.kind, (int32_t)s->spec.pairs, s->spec.batch_size,
                       s->spec.m, s->n};
    uint64_t h = fnv1a(0xcbf29ce484222325ull, head, sizeof head);
    if (s->spec.keep_last) /* hashed only when set: states saved before the flag still load */
        h = fnv1a(h, "keep_last", 9);
    if (s->spec.block_rows) {
        int32_t block[2] = {s->spec.block_rows, s->spec.window_blocks};
        h = fnv1a(h, block, sizeof block);
    }
    return fnv1a(h, s->rows, (size_t)s->n * sizeof *s->rows);
}

/* rows in range and distinct. */
static dml_status check_pool(const dml_dataset *ds, const int32_t *rows, int n, dml_error *err)
{
    if (n < 0)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0, "a sampler pool of %d rows", n);
    uint8_t *seen = calloc((size_t)ds->n, 1);
    if (!seen)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the sampler");
    dml_status st = DML_OK;
    for (int i = 0; i < n && st == DML_OK; i++) {
        if (rows[i] < 0 || rows[i] >= ds->n)
            st = dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                               "sampler pool entry %d: row %d is outside 0..%d", i, rows[i],
                               ds->n - 1);
        else if (seen[rows[i]]++)
            st = dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                               "sampler pool entry %d: row %d is there twice", i, rows[i]);
    }
    free(seen);
    return st;
}

/* Groups the pool by label: classes are the labels present, in label order. */
static int group(dml_sampler *s, const dml_dataset *ds)
{
    int32_t *slot = malloc(((size_t)ds->n_classes + 1) * sizeof *slot);
    if (!slot)
        return 0;
    for (int c = 0; c < ds->n_classes; c++)
        slot[c] = -1;
    for (int i = 0; i < s->n; i++) {
        int32_t label = ds->y[s->rows[i]];
        DML_ASSERT(label >= 0 && label < ds->n_classes); /* n_classes set with the labels */
        if (slot[label] < 0)
            slot[label] = 0; /* present; numbered below */
    }
    s->n_classes = 0;
    for (int c = 0; c < ds->n_classes; c++)
        if (slot[c] >= 0)
            slot[c] = s->n_classes++;
    s->class_start = calloc((size_t)s->n_classes + 1, sizeof *s->class_start);
    if (s->spec.kind == DML_SAMPLER_M_PER_CLASS)
        s->class_order = malloc(((size_t)s->n_classes + 1) * sizeof *s->class_order);
    int ok = s->class_start && (s->spec.kind != DML_SAMPLER_M_PER_CLASS || s->class_order);
    for (int i = 0; ok && i < s->n; i++) {
        s->class_of[i] = slot[ds->y[s->rows[i]]];
        s->class_start[s->class_of[i] + 1]++;
    }
    for (int c = 0; ok && c < s->n_classes; c++)
        s->class_start[c + 1] += s->class_start[c];
    /* rank[i] counts the earlier pool rows of the same class; slot becomes that counter. */
    for (int c = 0; ok && c < s->n_classes; c++)
        slot[c] = 0;
    for (int i = 0; ok && i < s->n; i++) {
        int c = s->class_of[i];
        s->rank[i] = slot[c]++;
        s->by_class[s->class_start[c] + s->rank[i]] = s->rows[i];
    }
    free(slot);
    return ok;
}

static dml_status check_spec(const dml_sampler_spec *spec, dml_error *err)
{
    if (spec->batch_size < 1)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "batch_size %d: expected a positive number", spec->batch_size);
    if (spec->kind == DML_SAMPLER_M_PER_CLASS &&
        (spec->m < 1 || spec->batch_size % spec->m != 0))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "sampler m %d: expected a positive divisor of batch_size %d", spec->m,
                             spec->batch_size);
    if (spec->pairs != DML_PAIR_MODE_NONE && spec->kind != DML_SAMPLER_RANDOM)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "pairs are drawn by the random sampler, not m_per_class");
    if (spec->block_rows < 0 || (spec->block_rows && spec->window_blocks < 1))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "block-random order of %d-row blocks, %d a window: expected positive "
                             "numbers", spec->block_rows, spec->window_blocks);
    if (spec->block_rows && (spec->kind != DML_SAMPLER_RANDOM ||
                             spec->pairs == DML_PAIR_MODE_SAME_CLASS))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "block-random order is the random sampler's, without same_class pairs "
                             "(those draw rows from anywhere in the data)");
    return DML_OK;
}

/* Whether the pool can fill batches of this spec. */
static dml_status check_fit(const dml_sampler *s, const dml_dataset *ds, dml_error *err)
{
    int b = s->spec.batch_size;
    if (s->spec.kind == DML_SAMPLER_M_PER_CLASS) {
        if (b / s->spec.m > s->n_classes)
            return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                                 "m_per_class needs batch_size / m = %d classes per batch, and "
                                 "the %d training rows have %d", b / s->spec.m, s->n, s->n_classes);
        return DML_OK;
    }
    if (s->spec.pairs == DML_PAIR_MODE_SAME_CLASS && s->n_anchor == 0)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "same_class pairs need a class with two rows, and none has");
    if (s->n_anchor < b)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "batch_size %d is larger than the %d rows to sample from%s", b,
                             s->n_anchor,
                             s->spec.pairs == DML_PAIR_MODE_SAME_CLASS
                                 ? " (rows whose class has another row)" : "");
    return DML_OK;
}

/* Block-random order: the anchors grouped by the block of their dataset row. */
static int group_blocks(dml_sampler *s, const dml_dataset *ds)
{
    int b = s->spec.block_rows;
    s->n_blocks = (ds->n + b - 1) / b;
    s->block_start = calloc((size_t)s->n_blocks + 1, sizeof *s->block_start);
    s->block_order = malloc(((size_t)s->n_blocks + 1) * sizeof *s->block_order);
    s->by_block = malloc(((size_t)s->n_anchor + 1) * sizeof *s->by_block);
    if (!s->block_start || !s->block_order || !s->by_block)
        return 0;
    for (int i = 0; i < s->n_anchor; i++)
        s->block_start[s->rows[s->anchor[i]] / b + 1]++;
    for (int k = 0; k < s->n_blocks; k++)
        s->block_start[k + 1] += s->block_start[k];
    for (int k = 0; k < s->n_blocks; k++) /* fill positions, reset below */
        s->block_order[k] = s->block_start[k];
    for (int i = 0; i < s->n_anchor; i++)
        s->by_block[s->block_order[s->rows[s->anchor[i]] / b]++] = s->anchor[i];
    return 1;
}

dml_status dml_sampler_init(dml_sampler *s, const dml_sampler_spec *spec, const dml_dataset *ds,
                            const int32_t *rows, int n, dml_rng *rng, dml_error *err)
{
    memset(s, 0, sizeof *s);
    s->spec = *spec;
    s->n = n;
    dml_status st = check_spec(spec, err);
    if (st == DML_OK)
        st = check_pool(ds, rows, n, err);
    if (st != DML_OK)
        return st;
    int labels = spec->kind == DML_SAMPLER_M_PER_CLASS || spec->pairs == DML_PAIR_MODE_SAME_CLASS;
    if (labels && !ds->y)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "the %s needs labels, and this data set has none",
                             spec->kind == DML_SAMPLER_M_PER_CLASS ? "m_per_class sampler"
                                                                    : "same_class pairing");
    int random = spec->kind == DML_SAMPLER_RANDOM;
    size_t cap = n > 0 ? (size_t)n : 1;
    s->rows = malloc(cap * sizeof *s->rows);
    if (random) {
        s->anchor = malloc(cap * sizeof *s->anchor);
        s->order = malloc(cap * sizeof *s->order);
    }
    if (labels) {
        s->by_class = malloc(cap * sizeof *s->by_class);
        s->class_of = malloc(cap * sizeof *s->class_of);
        s->rank = malloc(cap * sizeof *s->rank);
    }
    if (!s->rows || (random && (!s->anchor || !s->order)) ||
        (labels && (!s->by_class || !s->class_of || !s->rank)))
        goto nomem;
    memcpy(s->rows, rows, (size_t)n * sizeof *rows);
    if (labels && !group(s, ds))
        goto nomem;
    for (int i = 0; random && i < n; i++) {
        int c = labels ? s->class_of[i] : 0;
        if (spec->pairs != DML_PAIR_MODE_SAME_CLASS ||
            s->class_start[c + 1] - s->class_start[c] > 1)
            s->anchor[s->n_anchor++] = i;
    }
    if (random && spec->block_rows && !group_blocks(s, ds))
        goto nomem;
    if ((st = check_fit(s, ds, err)) != DML_OK) {
        dml_sampler_free(s);
        return st;
    }
    /* Past the end: the first batch shuffles. */
    s->pos = spec->kind == DML_SAMPLER_M_PER_CLASS ? s->n_classes : s->n_anchor;
    s->rng = dml_rng_split(rng);
    s->snap = s->rng;
    s->fingerprint = fingerprint(s);
    return DML_OK;
nomem:
    dml_sampler_free(s);
    return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the sampler");
}

void dml_sampler_free(dml_sampler *s)
{
    free(s->rows);
    free(s->anchor);
    free(s->order);
    free(s->class_start);
    free(s->by_class);
    free(s->class_of);
    free(s->rank);
    free(s->class_order);
    free(s->block_start);
    free(s->by_block);
    free(s->block_order);
    memset(s, 0, sizeof *s);
}

/* Entries of the current shuffle one batch takes: B rows, or B/M classes. */
static int group_size(const dml_sampler *s)
{
    return s->spec.kind == DML_SAMPLER_M_PER_CLASS ? s->spec.batch_size / s->spec.m
                                                  : s->spec.batch_size;
}

/* The shuffle drawn from generator g: anchor positions, or class indices. */
static void shuffle_from(dml_sampler *s, dml_rng *g)
{
    if (s->spec.kind == DML_SAMPLER_M_PER_CLASS) {
        for (int c = 0; c < s->n_classes; c++)
            s->class_order[c] = c;
        dml_rng_shuffle(g, s->class_order, s->n_classes);
    } else if (s->spec.block_rows) {
        for (int k = 0; k < s->n_blocks; k++)
            s->block_order[k] = k;
        dml_rng_shuffle(g, s->block_order, s->n_blocks);
        int at = 0;
        for (int w = 0; w < s->n_blocks; w += s->spec.window_blocks) {
            int from = at;
            for (int k = w; k < s->n_blocks && k < w + s->spec.window_blocks; k++) {
                int b = s->block_order[k], size = s->block_start[b + 1] - s->block_start[b];
                memcpy(s->order + at, s->by_block + s->block_start[b], (size_t)size * sizeof *s->order);
                at += size;
            }
            dml_rng_shuffle(g, s->order + from, at - from);
        }
    } else {
        memcpy(s->order, s->anchor, (size_t)s->n_anchor * sizeof *s->order);
        dml_rng_shuffle(g, s->order, s->n_anchor);
    }
}

/* Whether an epoch ends with its partial batch rather than dropping it. */
static int keeps_last(const dml_sampler *s)
{
    return s->spec.keep_last && s->spec.kind == DML_SAMPLER_RANDOM &&
           s->spec.pairs == DML_PAIR_MODE_NONE;
}

/* Entries the current shuffle must still hold to serve the next batch. */
static int batch_need(const dml_sampler *s)
{
    return keeps_last(s) ? 1 : group_size(s);
}

/* The next batch's start in order / class_order, reshuffling when too few entries remain;
 * *count gets its number of entries (group_size, or what is left of a kept last batch). */
static int advance(dml_sampler *s, int *count)
{
    DML_ASSERT(s->rows != NULL); /* initialised */
    int len = s->spec.kind == DML_SAMPLER_M_PER_CLASS ? s->n_classes : s->n_anchor;
    if (s->pos + batch_need(s) > len) {
        s->snap = s->rng;
        shuffle_from(s, &s->rng);
        s->pos = 0;
    }
    int at = s->pos;
    *count = len - at < group_size(s) ? len - at : group_size(s);
    s->pos += *count;
    s->step++;
    return at;
}

/* M rows of class c into out[M]: a uniform M-subset (Floyd's algorithm) when the class has M
 * rows, M independent draws when it has fewer. */
static void class_rows(dml_sampler *s, int c, int32_t *out)
{
    int m = s->spec.m, size = s->class_start[c + 1] - s->class_start[c];
    const int32_t *members = s->by_class + s->class_start[c];
    if (size < m) {
        for (int i = 0; i < m; i++)
            out[i] = members[dml_rng_below(&s->rng, (uint32_t)size)];
        return;
    }
    int k = 0;
    for (int j = size - m; j < size; j++) {
        int32_t t = (int32_t)dml_rng_below(&s->rng, (uint32_t)j + 1);
        for (int i = 0; i < k; i++)
            if (out[i] == t) {
                t = j;
                break;
            }
        out[k++] = t;
    }
    for (int i = 0; i < m; i++)
        out[i] = members[out[i]];
}

int dml_sampler_next(dml_sampler *s, int32_t *idx)
{
    DML_ASSERT(s->spec.pairs == DML_PAIR_MODE_NONE);
    int count, at = advance(s, &count), b = s->spec.batch_size;
    if (s->spec.kind == DML_SAMPLER_M_PER_CLASS) {
        for (int g = 0; g < b / s->spec.m; g++)
            class_rows(s, s->class_order[at + g], idx + (size_t)g * (size_t)s->spec.m);
        return b;
    }
    for (int i = 0; i < count; i++)
        idx[i] = s->rows[s->order[at + i]];
    return count;
}

int dml_sampler_shard_rows(const dml_sampler *s, int ranks, int rank, int32_t *out)
{
    DML_ASSERT(s->spec.kind == DML_SAMPLER_RANDOM && ranks >= 1 && rank >= 0 && rank < ranks);
    int n = 0, b = s->spec.batch_size;
    for (int at = 0; at + batch_need(s) <= s->n_anchor; at += b) {
        int count = s->n_anchor - at < b ? s->n_anchor - at : b, share = count / ranks;
        for (int i = 0; i < share; i++)
            out[n++] = s->rows[s->order[at + rank * share + i]];
    }
    return n;
}

int dml_sampler_next_pairs(dml_sampler *s, int32_t *anchor, int32_t *positive)
{
    DML_ASSERT(s->spec.pairs != DML_PAIR_MODE_NONE);
    int b, at = advance(s, &b); /* pairs keep no partial batch: b is B */
    for (int i = 0; i < b; i++) {
        int p = s->order[at + i];
        anchor[i] = s->rows[p];
        if (s->spec.pairs == DML_PAIR_MODE_OTHER_VIEW) {
            positive[i] = anchor[i];
            continue;
        }
        /* Uniform over the class's other rows: skip the anchor's own slot. */
        int c = s->class_of[p], size = s->class_start[c + 1] - s->class_start[c];
        int j = (int)dml_rng_below(&s->rng, (uint32_t)size - 1);
        positive[i] = s->by_class[s->class_start[c] + j + (j >= s->rank[p])];
    }
    return b;
}

int dml_sampler_steps_per_epoch(const dml_sampler *s)
{
    if (s->spec.kind == DML_SAMPLER_M_PER_CLASS)
        return s->n / s->spec.batch_size > 0 ? s->n / s->spec.batch_size : 1;
    int b = s->spec.batch_size;
    return keeps_last(s) ? (s->n_anchor + b - 1) / b : s->n_anchor / b;
}

size_t dml_sampler_state_size(const dml_sampler *s)
{
    (void)s;
    return STATE_WORDS * sizeof(uint64_t);
}

void dml_sampler_state_save(const dml_sampler *s, uint8_t *state)
{
    uint64_t w[STATE_WORDS] = {STATE_MAGIC, s->fingerprint, (uint64_t)s->step, (uint64_t)s->pos};
    memcpy(w + 4, s->rng.s, sizeof s->rng.s);
    memcpy(w + 8, s->snap.s, sizeof s->snap.s);
    memcpy(state, w, sizeof w);
}

dml_status dml_sampler_state_load(dml_sampler *s, const uint8_t *state, size_t size,
                                  dml_error *err)
{
    uint64_t w[STATE_WORDS];
    if (size != sizeof w)
        return dml_error_set(err, DML_ERR_DATA, NULL, 0, 0,
                             "a sampler state of %zu bytes: expected %zu", size, sizeof w);
    memcpy(w, state, sizeof w);
    int len = s->spec.kind == DML_SAMPLER_M_PER_CLASS ? s->n_classes : s->n_anchor;
    if (w[0] != STATE_MAGIC)
        return dml_error_set(err, DML_ERR_DATA, NULL, 0, 0, "not a sampler state");
    if (w[1] != s->fingerprint)
        return dml_error_set(err, DML_ERR_DATA, NULL, 0, 0,
                             "the sampler state belongs to another sampler (the training rows, "
                             "batch size, sampler type, m, pairs or drop_last differ)");
    if (w[3] > (uint64_t)len)
        return dml_error_set(err, DML_ERR_DATA, NULL, 0, 0, "a corrupt sampler state");
    s->step = (int64_t)w[2];
    s->pos = (int)w[3];
    memcpy(s->rng.s, w + 4, sizeof s->rng.s);
    memcpy(s->snap.s, w + 8, sizeof s->snap.s);
    if (s->pos + batch_need(s) <= len) { /* a shuffle in use: draw it again */
        dml_rng g = s->snap;
        shuffle_from(s, &g);
    }
    return DML_OK;
}
