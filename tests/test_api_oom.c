/* Allocation failure on the public API's calls (include/dml.h): every allocation dml itself
 * makes in dml_model_open, dml_model_encode, dml_pq_encode, dml_pq_search, a streamed
 * evaluation, dml_train and dml_evaluate fails in turn (SQLite's OOM tests; the allocator is
 * wrapped at link time, see the Makefile's LDFLAGS_test_api_oom). Each failure must come back
 * as DML_ERR_NOMEM with a message where the call has one, never a crash; the run after the
 * last failure point succeeds, and its results are those of an undisturbed call. Leaks on the
 * error paths are ASan's and valgrind's to find (make sanitize, make valgrind). libhdf5's own
 * allocations are not wrapped. */
#include <string.h>

#include "dml.h"
#include "tests/model_fixture.h"

static long n_calls, fail_at; /* fail_at: the call to fail, counted from 1; 0 = none */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
int __real_posix_memalign(void **p, size_t align, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
int __wrap_posix_memalign(void **p, size_t align, size_t n);
void *__wrap_aligned_alloc(size_t align, size_t n);

static int fails(void)
{
    return fail_at > 0 && ++n_calls == fail_at;
}

void *__wrap_malloc(size_t n) { return fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return fails() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return fails() ? NULL : __real_realloc(p, n); }
int __wrap_posix_memalign(void **p, size_t align, size_t n)
{
    return fails() ? 12 /* ENOMEM */ : __real_posix_memalign(p, align, n);
}
void *__wrap_aligned_alloc(size_t align, size_t n)
{
    return fails() ? NULL : __real_aligned_alloc(align, n);
}

/* Runs call(ctx) with its 1st, 2nd, ... allocation failing until a run makes no more
 * allocations than the one failed; call returns its status. Returns how many were failed. */
static int fail_each(dml_status (*call)(void *ctx), void *ctx, const char *what)
{
    int failed = 0;
    for (long k = 1;; k++) {
        n_calls = 0;
        fail_at = k;
        dml_status st = call(ctx);
        long made = n_calls;
        fail_at = 0;
        if (made < k) { /* nothing was failed: the call is done */
            assert_int_equal(st, DML_OK);
            break;
        }
        if (st != DML_ERR_NOMEM)
            fail_msg("%s: allocation %ld failed, and the call returned %s", what, k,
                     dml_status_name(st));
        failed++;
    }
    print_message("  %s: %d allocations failed in turn, each one DML_ERR_NOMEM\n", what, failed);
    assert_true(failed > 0);
    return failed;
}

static char dir[256], path[300];

typedef struct open_ctx {
    dml_model *m;
    char msg[512];
} open_ctx;

static dml_status open_call(void *ctx)
{
    open_ctx *o = ctx;
    o->msg[0] = '\0';
    dml_status st = dml_model_open(path, &o->m, o->msg, sizeof o->msg);
    if (st == DML_OK) {
        dml_model_free(o->m);
        o->m = NULL;
    } else {
        assert_null(o->m);
        if (!strstr(o->msg, "memory"))
            fail_msg("status %s, message \"%s\"", dml_status_name(st), o->msg);
    }
    return st;
}

typedef struct encode_ctx {
    const dml_model *m;
    const float *x;
    size_t n;
    float *out;
} encode_ctx;

static dml_status encode_call(void *ctx)
{
    encode_ctx *e = ctx;
    return dml_model_encode(e->m, e->x, e->n, e->out);
}

typedef struct pq_ctx {
    const dml_pq *pq;
    const float *x, *q;
    size_t n, n_q;
    uint8_t *codes;
    float *dist;
    int64_t *labels;
} pq_ctx;

static dml_status pq_encode_call(void *ctx)
{
    pq_ctx *p = ctx;
    return dml_pq_encode(p->pq, p->x, p->n, p->codes);
}

static dml_status pq_search_call(void *ctx)
{
    pq_ctx *p = ctx;
    return dml_pq_search(p->pq, p->codes, p->n, p->q, p->n_q, 10, p->dist, p->labels);
}

/* A database streamed chunk by chunk (dml eval over --memory-limit) with PQ metrics:
 * quantization_mse included, every failure DML_ERR_NOMEM rather than a NaN metric. */
typedef struct stream_ctx {
    const float *q, *db; /* [50, dim] queries, [n_db, dim] the database's embeddings */
    int n_db, dim;
    const dml_pq *pq;
    dml_eval_result res;
} stream_ctx;

static dml_status db_chunk(void *ctx, int lo, int count, float *z, dml_error *err)
{
    (void)err;
    const stream_ctx *s = ctx;
    memcpy(z, s->db + (size_t)lo * s->dim, (size_t)count * s->dim * sizeof(float));
    return DML_OK;
}

static dml_status stream_call(void *ctx)
{
    stream_ctx *s = ctx;
    dml_eval_stream st = {.chunk = DML_STREAM_ALIGN, .embed = db_chunk, .ctx = s};
    dml_eval_request req = {.d = s->dim, .queries = s->q, .n_queries = 50, .n_db = s->n_db,
                            .pq = s->pq, .threads = 1, .stream = &st};
    dml_error err = {0};
    return dml_eval_run(&req, &s->res, &err);
}

static void test_every_allocation_fails_in_turn(void **state)
{
    (void)state;
    FX_TMP(dir, path, "model.h5");
    dml_model_file mf;
    fx_model(&mf, &FX_MLP);
    dml_error err = {0};
    assert_int_equal(dml_model_file_write(path, &mf, &err), DML_OK);
    dml_model_file_free(&mf);

    open_ctx o = {0};
    fail_each(open_call, &o, "dml_model_open");

    char msg[256];
    dml_model *m;
    assert_int_equal(dml_model_open(path, &m, msg, sizeof msg), DML_OK);
    enum { N = 700 }; /* more than one encode block */
    int d_in = dml_model_dim_in(m), dim = dml_model_dim_out(m);
    float *x = fx_rows(N, d_in, 7), *out = malloc((size_t)N * dim * sizeof(float));
    float *want = malloc((size_t)N * dim * sizeof(float));
    assert_int_equal(dml_model_encode(m, x, N, want), DML_OK);
    encode_ctx e = {m, x, N, out};
    fail_each(encode_call, &e, "dml_model_encode");
    assert_memory_equal(out, want, (size_t)N * dim * sizeof(float));

    const dml_pq *pq = dml_model_pq(m);
    size_t cs = dml_pq_code_size(pq);
    pq_ctx p = {pq, want, want, N, 50, malloc(N * cs), malloc(50 * 10 * sizeof(float)),
                malloc(50 * 10 * sizeof(int64_t))};
    uint8_t *codes = malloc(N * cs);
    assert_int_equal(dml_pq_encode(pq, want, N, codes), DML_OK);
    fail_each(pq_encode_call, &p, "dml_pq_encode");
    assert_memory_equal(p.codes, codes, N * cs);
    float dist[50 * 10];
    int64_t labels[50 * 10];
    assert_int_equal(dml_pq_search(pq, codes, N, want, 50, 10, dist, labels), DML_OK);
    fail_each(pq_search_call, &p, "dml_pq_search");
    assert_memory_equal(p.labels, labels, sizeof labels);
    stream_ctx sc = {.q = want, .db = want, .n_db = N, .dim = dim, .pq = pq};
    fail_each(stream_call, &sc, "dml_eval_run (streamed, PQ)");
    assert_true(dml_eval_get(&sc.res, "quantization_mse") > 0.0);
    free(x);
    free(out);
    free(want);
    free(codes);
    free(p.codes);
    free(p.dist);
    free(p.labels);
    dml_model_free(m);
    fx_rm(dir);
}

/* dml_train and dml_evaluate: a small run in memory, then into a run folder, and its
 * evaluation. */
enum { TN = 64, TD = 8 };
static const char TRAIN_CONFIG[] = "model: {hidden: [8], dim: 4}\n"
                                   "train: {steps: 3, batch_size: 16, threads: 1, eval_every: 2}\n"
                                   "sampler: {m: 4}\n"
                                   "pq: {m: 2, k: 4}\n";

typedef struct train_ctx {
    dml_train_data data;
    const dml_train_options *opts;
    dml_model *m;
    char msg[512];
} train_ctx;

static dml_status train_call(void *ctx)
{
    train_ctx *t = ctx;
    const char *const sets[] = {"data.normalize=standardize"};
    dml_model_free(t->m); /* the last successful run's */
    t->m = NULL;
    dml_status st = dml_train(TRAIN_CONFIG, sets, 1, &t->data, t->opts, &t->m, t->msg,
                              sizeof t->msg);
    if (st != DML_OK)
        assert_null(t->m);
    if (st != DML_OK && st != DML_ERR_NOMEM)
        print_message("%s: %s\n", dml_status_name(st), t->msg);
    return st;
}

/* dml_train into a fresh run folder, out: each failure must leave no temporary file behind and
 * no report.html cut short (every file is written whole, or not at all). */
typedef struct folder_ctx {
    train_ctx t;
    char out[400];
} folder_ctx;

static dml_status train_folder_call(void *ctx)
{
    folder_ctx *f = ctx;
    dml_train_options o = {.out_dir = f->out};
    f->t.opts = &o;
    dml_status st = train_call(&f->t);
    long calls = n_calls; /* the checks below allocate: not the call's */
    long at = fail_at;
    fail_at = 0;
    if (tu_system("ls -a '%s' 2>/dev/null | grep -q tmp", f->out) == 0)
        fail_msg("%s: a temporary file left behind (%s)", f->out, dml_status_name(st));
    if (tu_system("test ! -e '%s/report.html' || tail -c 15 '%s/report.html' | "
                  "grep -q '</body></html>'", f->out, f->out) != 0)
        fail_msg("%s/report.html cut short", f->out);
    assert_int_equal(tu_system("rm -rf '%s'", f->out), 0); /* the next run's folder is new */
    n_calls = calls;
    fail_at = at;
    return st;
}

typedef struct eval_ctx {
    const dml_model *m;
    const float *x;
    const int64_t *y;
    dml_metrics *mt;
} eval_ctx;

static dml_status eval_call(void *ctx)
{
    eval_ctx *e = ctx;
    dml_metrics_free(e->mt);
    e->mt = NULL;
    dml_eval_data d = {.x = e->x, .n = TN, .d = TD, .y = e->y, .x_db = e->x, .n_db = TN,
                       .y_db = e->y};
    return dml_evaluate(e->m, &d, 1, NULL, &e->mt, NULL, 0);
}

static void test_training_allocations_fail_in_turn(void **state)
{
    (void)state;
    float *x = fx_rows(TN, TD, 3);
    int64_t y[TN];
    for (int i = 0; i < TN; i++)
        y[i] = i % 4;
    train_ctx t = {.data = {.x = x, .n = TN, .d = TD, .y = y}};
    fail_each(train_call, &t, "dml_train");
    dml_model *want;
    char msg[512];
    assert_int_equal(dml_train(TRAIN_CONFIG, (const char *const[]){"data.normalize=standardize"},
                               1, &t.data, NULL, &want, msg, sizeof msg),
                     DML_OK);
    float a[TN * 4], b[TN * 4];
    assert_int_equal(dml_model_encode(t.m, x, TN, a), DML_OK);
    assert_int_equal(dml_model_encode(want, x, TN, b), DML_OK);
    assert_memory_equal(a, b, sizeof a); /* the run after the last failure is undisturbed */
    /* validation and test rows given apart */
    train_ctx tv = {.data = {.x = x, .n = TN - 16, .d = TD, .y = y, .x_val = x + (TN - 16) * TD,
                             .n_val = 16, .y_val = y + TN - 16, .x_test = x, .n_test = TN,
                             .y_test = y}};
    fail_each(train_call, &tv, "dml_train (validation and test rows)");
    dml_model_free(tv.m);
    /* a run folder: checkpoint.h5, metrics.jsonl, report.html and model.h5 written too */
    char root[256];
    folder_ctx f = {.t = {.data = {.x = x, .n = TN, .d = TD, .y = y, .x_test = x, .n_test = TN,
                                   .y_test = y}}};
    tu_mkdtemp(root, sizeof root);
    snprintf(f.out, sizeof f.out, "%s/run", root);
    fail_each(train_folder_call, &f, "dml_train (run folder)");
    dml_model_free(f.t.m);
    assert_int_equal(tu_system("rm -rf '%s'", root), 0);
    eval_ctx e = {want, x, y, NULL};
    fail_each(eval_call, &e, "dml_evaluate");
    assert_true(dml_metrics_count(e.mt) > 0);
    dml_metrics_free(e.mt);
    dml_model_free(t.m);
    dml_model_free(want);
    free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_allocation_fails_in_turn),
        cmocka_unit_test(test_training_allocations_fail_in_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
