#include "data/sampler.h"

#include <stdlib.h>
#include <string.h>

/* Groups the pool by label; classes are the distinct labels present, in label order. */
static int group(dml_sampler *s, const dml_dataset *ds)
{
    int k = ds->n_classes;
    int32_t *count = calloc((size_t)k + 1, sizeof *count), *slot = malloc((size_t)(k + 1) * sizeof *slot);
    if (!count || !slot) {
        free(count);
        free(slot);
        return 0;
    }
    for (int i = 0; i < s->n; i++)
        count[ds->y[s->rows[i]]]++;
    s->n_classes = 0;
    for (int c = 0; c < k; c++)
        slot[c] = count[c] ? s->n_classes++ : -1;
    s->class_start = calloc((size_t)s->n_classes + 1, sizeof *s->class_start);
    s->classes = malloc((size_t)(s->n_classes ? s->n_classes : 1) * sizeof *s->classes);
    int ok = s->class_start && s->classes;
    for (int c = 0; ok && c < k; c++)
        if (slot[c] >= 0)
            s->class_start[slot[c] + 1] = count[c];
    for (int c = 0; ok && c < s->n_classes; c++) {
        s->class_start[c + 1] += s->class_start[c];
        s->classes[c] = c;
    }
    int32_t *fill = ok ? malloc((size_t)(s->n_classes ? s->n_classes : 1) * sizeof *fill) : NULL;
    if (fill) {
        memcpy(fill, s->class_start, (size_t)s->n_classes * sizeof *fill);
        for (int i = 0; i < s->n; i++) {
            int c = slot[ds->y[s->rows[i]]];
            s->by_class[fill[c]++] = s->rows[i];
            s->class_of[i] = c;
        }
    }
    free(fill);
    free(count);
    free(slot);
    return fill != NULL;
}

dml_status dml_sampler_init(dml_sampler *s, dml_sampler_kind kind, const dml_dataset *ds,
                            const int32_t *rows, int n, int batch, int m, uint64_t seed,
                            dml_error *err)
{
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->batch = batch;
    s->m = m > 0 ? m : 1;
    s->n = n;
    dml_rng_seed(&s->rng, seed);
    if (n < 1 || batch < 1)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "no rows to sample batches from (%d rows, batch %d)", n, batch);
    if (kind != DML_SAMPLER_RANDOM && !ds->y)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "this sampler needs labels, and the data set has none");
    s->rows = malloc((size_t)n * sizeof *s->rows);
    s->by_class = malloc((size_t)n * sizeof *s->by_class);
    s->class_of = calloc((size_t)n, sizeof *s->class_of);
    if (!s->rows || !s->by_class || !s->class_of)
        goto nomem;
    memcpy(s->rows, rows, (size_t)n * sizeof *rows);
    if (kind != DML_SAMPLER_RANDOM && !group(s, ds))
        goto nomem;
    if (kind == DML_SAMPLER_SAME_CLASS) {
        /* Anchors come only from classes with a second member. */
        int kept = 0;
        for (int i = 0; i < n; i++) {
            int c = s->class_of[i];
            if (s->class_start[c + 1] - s->class_start[c] >= 2) {
                s->class_of[kept] = c;
                s->rows[kept++] = s->rows[i];
            }
        }
        s->n = kept;
        if (kept == 0)
            return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                                 "same_class pairs need a class with two rows, and none has");
    }
    s->pos = s->n; /* the first call shuffles */
    s->class_pos = s->n_classes;
    s->epoch = -1;
    return DML_OK;
nomem:
    dml_sampler_free(s);
    return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the sampler");
}

void dml_sampler_free(dml_sampler *s)
{
    free(s->rows);
    free(s->by_class);
    free(s->class_of);
    free(s->class_start);
    free(s->classes);
    memset(s, 0, sizeof *s);
}

/* Shuffles rows and class_of together, so a same_class anchor keeps its class. */
static void shuffle_rows(dml_sampler *s)
{
    for (int i = s->n - 1; i > 0; i--) {
        int j = (int)dml_rng_below(&s->rng, (uint32_t)i + 1);
        int32_t t = s->rows[i];
        s->rows[i] = s->rows[j];
        s->rows[j] = t;
        t = s->class_of[i];
        s->class_of[i] = s->class_of[j];
        s->class_of[j] = t;
    }
    s->pos = 0;
    s->epoch++;
}

static int32_t random_member(dml_sampler *s, int c)
{
    int size = s->class_start[c + 1] - s->class_start[c];
    return s->by_class[s->class_start[c] + (int)dml_rng_below(&s->rng, (uint32_t)size)];
}

/* m rows of class c: distinct when the class has m, with replacement otherwise. */
static void class_rows(dml_sampler *s, int c, int32_t *out)
{
    int size = s->class_start[c + 1] - s->class_start[c];
    for (int i = 0; i < s->m; i++) {
        int32_t r;
        int fresh;
        do {
            r = random_member(s, c);
            fresh = 1;
            for (int j = 0; j < i && size >= s->m; j++)
                fresh &= out[j] != r;
        } while (!fresh);
        out[i] = r;
    }
}

void dml_sampler_next(dml_sampler *s, int32_t *idx, int32_t *pos)
{
    if (s->kind == DML_SAMPLER_M_PER_CLASS) {
        int per_batch = s->batch / s->m;
        for (int b = 0; b < per_batch; b++) {
            if (s->class_pos == s->n_classes) {
                dml_rng_shuffle(&s->rng, s->classes, s->n_classes);
                s->class_pos = 0;
            }
            class_rows(s, s->classes[s->class_pos++], idx + (size_t)b * s->m);
        }
        return;
    }
    for (int b = 0; b < s->batch; b++) {
        if (s->pos == s->n)
            shuffle_rows(s);
        idx[b] = s->rows[s->pos];
        if (s->kind == DML_SAMPLER_SAME_CLASS) {
            int32_t p;
            do
                p = random_member(s, s->class_of[s->pos]);
            while (p == idx[b]);
            pos[b] = p;
        }
        s->pos++;
    }
}

long dml_sampler_steps_per_epoch(const dml_sampler *s)
{
    long steps = s->n / s->batch;
    return steps > 0 ? steps : 1;
}

size_t dml_sampler_state_size(const dml_sampler *s)
{
    return 4 + 3 + 2 * (size_t)s->n + (size_t)s->n_classes;
}

void dml_sampler_state_save(const dml_sampler *s, int64_t *st)
{
    for (int i = 0; i < 4; i++)
        memcpy(&st[i], &s->rng.s[i], sizeof st[i]);
    st[4] = s->pos;
    st[5] = s->class_pos;
    st[6] = s->epoch;
    int64_t *p = st + 7;
    for (int i = 0; i < s->n; i++) {
        *p++ = s->rows[i];
        *p++ = s->class_of[i];
    }
    for (int c = 0; c < s->n_classes; c++)
        *p++ = s->classes[c];
}

void dml_sampler_state_load(dml_sampler *s, const int64_t *st)
{
    for (int i = 0; i < 4; i++)
        memcpy(&s->rng.s[i], &st[i], sizeof st[i]);
    s->pos = (int)st[4];
    s->class_pos = (int)st[5];
    s->epoch = st[6];
    const int64_t *p = st + 7;
    for (int i = 0; i < s->n; i++) {
        s->rows[i] = (int32_t)*p++;
        s->class_of[i] = (int32_t)*p++;
    }
    for (int c = 0; c < s->n_classes; c++)
        s->classes[c] = (int32_t)*p++;
}
