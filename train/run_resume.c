/* What a checkpoint's run was (its effective config and a hash of its training rows, recorded
 * in checkpoint.h5) and whether --resume continues that run. A resume whose tensors still fit
 * could otherwise go on with another activation, loss, optimizer or data set and end with a
 * model no config describes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

/* The keys a resume may change: none changes what the model is or how its parameters move
 * from one step to the next. */
static const char *const MAY_CHANGE[] = {
    "name",                      /* a label of the run's outputs */
    "train.epochs", "train.steps", /* extend a run (a shorter one is refused: run_state.c) */
    "train.lr", "train.clip_grad_norm", /* what a diverged run's message asks to lower */
    "train.eval_every", "train.checkpoint_every", /* when it looks and saves, not what it does */
    "train.early_stop_patience", /* when it stops */
    "train.threads",             /* the machine (the sums' order: equal within rounding) */
    "eval.metrics", "eval.pq", "eval.knn_k", /* the final evaluation's report */
};
#define N_MAY_CHANGE ((int)(sizeof MAY_CHANGE / sizeof MAY_CHANGE[0]))

/* The record's line for the training rows: not a config key. data.train itself is compared by
 * these rows, not by its text, so a moved file resumes and a rewritten one does not. */
#define DATA_HASH "data_hash"

char *dml_run_record(const dml_run *r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    fprintf(f, "%s: %016llx\n", DATA_HASH, (unsigned long long)r->data_hash);
    dml_config_print_keys(r->cfg, f);
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    return text;
}

static int may_change(const char *key, size_t n)
{
    for (int i = 0; i < N_MAY_CHANGE; i++)
        if (strlen(MAY_CHANGE[i]) == n && !strncmp(MAY_CHANGE[i], key, n))
            return 1;
    return 0;
}

/* The value of key (n bytes) in a record, up to its line's end (*len bytes); NULL when the
 * record has no such key (it was written by a dml without it). */
static const char *value_of(const char *record, const char *key, size_t n, size_t *len)
{
    for (const char *line = record; *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        if ((size_t)(end - line) > n + 1 && !strncmp(line, key, n) && line[n] == ':' &&
            line[n + 1] == ' ') {
            *len = (size_t)(end - line) - n - 2;
            return line + n + 2;
        }
        line = *end ? end + 1 : end;
    }
    return NULL;
}

/* A changed key: its name and both values, each n bytes long. */
typedef struct change {
    const char *key, *was, *now, *why;
    size_t n, n_was, n_now;
} change;

#define SHOWN 60 /* bytes of a value shown: a long path's start says which it is */
#define ONE 256   /* one change described: its key (under 48 bytes), two values, the words */
_Static_assert(48 + 2 * (SHOWN + 3) + 40 < ONE, "a change's description must fit ONE bytes");

/* "key was X, now Y" for each change while the rest's names still fit after it, then the
 * names alone: every changed key is named within the error's one message. */
static void describe(const change *ch, int n, char *out, size_t size)
{
    size_t len = 0, names = 0;
    int bare = 0; /* names alone from here on */
    for (int i = 0; i < n; i++)
        names += ch[i].n + 2;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const change *c = &ch[i];
        names -= c->n + 2;
        char one[ONE];
        int k = snprintf(one, sizeof one, "%s%.*s was %.*s%s, now %.*s%s%s", i ? "; " : "",
                         (int)c->n, c->key, (int)(c->n_was < SHOWN ? c->n_was : SHOWN), c->was,
                         c->n_was > SHOWN ? "..." : "", (int)(c->n_now < SHOWN ? c->n_now : SHOWN),
                         c->now, c->n_now > SHOWN ? "..." : "", c->why);
        if (bare || len + (size_t)k + names + 24 >= size) { /* no room for values: names */
            k = snprintf(one, sizeof one, "%s%.*s", !i ? "" : bare ? ", " : "; also ", (int)c->n,
                         c->key);
            bare = 1;
        }
        if (len + (size_t)k + 16 >= size) { /* not even the names */
            snprintf(out + len, size - len, " (and %d more)", n - i);
            return;
        }
        memcpy(out + len, one, (size_t)k + 1);
        len += (size_t)k;
    }
}

static int is(const char *key, size_t n, const char *name)
{
    return n == strlen(name) && !strncmp(key, name, n);
}

dml_status dml_run_record_check(const dml_run *r, const char *saved, const char *path,
                                dml_error *err)
{
    char *now = dml_run_record(r);
    if (!now)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the checkpoint");
    size_t n_hash, n_hash_now;
    const char *hash = value_of(saved, DATA_HASH, strlen(DATA_HASH), &n_hash);
    const char *hash_now = value_of(now, DATA_HASH, strlen(DATA_HASH), &n_hash_now);
    int other_rows = hash && (n_hash != n_hash_now || memcmp(hash, hash_now, n_hash) != 0);
    change ch[DML_CONFIG_MAX_KEYS];
    int n_ch = 0;
    for (const char *line = now; *line && n_ch < DML_CONFIG_MAX_KEYS;) {
        const char *end = strchr(line, '\n'), *colon = strchr(line, ':');
        change c = {line, NULL, colon + 2, "", (size_t)(colon - line), 0,
                    (size_t)(end - colon) - 2};
        c.was = value_of(saved, line, c.n, &c.n_was);
        if (is(line, c.n, "data.train")) { /* the rows decide, the path only names them */
            c.why = " (other rows)";
            if (!c.was) {
                c.was = "?";
                c.n_was = 1;
            }
            if (other_rows)
                ch[n_ch++] = c;
        } else if (c.was && !is(line, c.n, DATA_HASH) && !may_change(line, c.n) &&
                   (c.n_was != c.n_now || memcmp(c.was, c.now, c.n_now) != 0)) {
            ch[n_ch++] = c;
        }
        line = end + 1;
    }
    if (n_ch == 0) {
        free(now);
        return DML_OK;
    }
    char text[380]; /* with the words around it, within dml_error's message */
    describe(ch, n_ch, text, sizeof text);
    free(now);
    return dml_error_set(err, DML_ERR_CONFIG, path, 0, 0,
                         "--resume with a changed config: %s. A resume continues the same run: "
                         "only the keys docs/config.md lists may change", text);
}
