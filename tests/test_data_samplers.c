/* Samplers: random epochs (drop-last, every row at most once per epoch; or keep-last, every row
 * exactly once), m_per_class batches of
 * exactly B/M classes x M rows, same_class and two-view pairs, seeding, and a saved state that
 * resumes bit-identically. */
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"

#define N 64

/* N rows in 8 classes: class c has 2c + 1 rows for c < 7 (1, 3, ..., 13), class 7 the rest (15). */
static void make_data(dml_dataset *ds)
{
    dml_error err = {0};
    assert_int_equal(dml_dataset_alloc(ds, N, 1, 1, &err), DML_OK);
    for (int i = 0, c = 0, left = 1; i < N; i++) {
        if (!left--) {
            c++;
            left = c < 7 ? 2 * c : N;
        }
        ds->y[i] = c;
        ds->x[i] = (float)i;
    }
    ds->n_classes = 8;
    snprintf(ds->source, sizeof ds->source, "mem.h5");
}

static void all_rows(int32_t *rows, int n)
{
    for (int i = 0; i < n; i++)
        rows[i] = i;
}

static void init_ok(dml_sampler *s, const dml_sampler_spec *spec, const dml_dataset *ds,
                    const int32_t *rows, int n, uint64_t seed)
{
    dml_rng rng;
    dml_rng_seed(&rng, seed);
    dml_error err = {0};
    char msg[1024];
    dml_status st = dml_sampler_init(s, spec, ds, rows, n, &rng, &err);
    dml_error_format(&err, msg, sizeof msg);
    if (st != DML_OK)
        fail_msg("sampler init: %s", msg);
}

static void expect_init_error(const dml_sampler_spec *spec, const dml_dataset *ds,
                              const int32_t *rows, int n, dml_status code, const char *what)
{
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    dml_error err = {0};
    dml_sampler s;
    assert_int_equal(dml_sampler_init(&s, spec, ds, rows, n, &rng, &err), code);
    if (!strstr(err.msg, what))
        fail_msg("message \"%s\" should say \"%s\"", err.msg, what);
    assert_null(s.rows);
}

static void test_random_epochs(void **state)
{
    (void)state;
    dml_dataset ds;
    make_data(&ds);
    int32_t pool[50], idx[8], first[48], seen[N];
    for (int i = 0; i < 50; i++)
        pool[i] = 2 + i; /* rows 2..51 */
    dml_sampler_spec spec = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 8, 0, 0, 0, 0};
    dml_sampler s, t, u;
    init_ok(&s, &spec, &ds, pool, 50, 5);
    init_ok(&t, &spec, &ds, pool, 50, 5);
    init_ok(&u, &spec, &ds, pool, 50, 6);
    assert_int_equal(dml_sampler_steps_per_epoch(&s), 6); /* 50 / 8: the last 2 rows dropped */
    int differs = 0;
    for (int epoch = 0; epoch < 3; epoch++) {
        memset(seen, 0, sizeof seen);
        for (int b = 0; b < 6; b++) {
            int32_t again[8], other[8];
            assert_int_equal(dml_sampler_next(&s, idx), 8);
            dml_sampler_next(&t, again);
            dml_sampler_next(&u, other);
            assert_memory_equal(idx, again, sizeof idx); /* same seed, same batches */
            differs |= memcmp(idx, other, sizeof idx) != 0;
            for (int i = 0; i < 8; i++) {
                assert_true(idx[i] >= 2 && idx[i] <= 51);
                assert_int_equal(seen[idx[i]]++, 0); /* at most once per epoch */
            }
            if (epoch == 0)
                memcpy(first + 8 * b, idx, sizeof idx);
            else if (epoch == 1 && b == 0)
                differs |= 2 * (memcmp(first, idx, sizeof idx) != 0);
        }
    }
    assert_int_equal(differs, 3); /* another seed differs; the next epoch is reshuffled */
    assert_int_equal(s.step, 18);
    dml_sampler_free(&s);
    dml_sampler_free(&t);
    dml_sampler_free(&u);
    assert_null(s.rows);
    dml_dataset_free(&ds);
}

/* Block-random order: rows 2..51 in blocks of 5 rows (rows 0-4, 5-9, ...), two blocks a
 * window. An epoch serves every row once; the rows of each window's 10 slots come from two
 * blocks only; a saved state draws the same next batches. */
static void test_random_block_order(void **state)
{
    (void)state;
    dml_dataset ds;
    make_data(&ds);
    int32_t pool[50], order[50];
    for (int i = 0; i < 50; i++)
        pool[i] = 2 + i;
    dml_sampler_spec spec = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 10, 0, 0, 5, 2};
    dml_sampler s, t;
    init_ok(&s, &spec, &ds, pool, 50, 5);
    init_ok(&t, &spec, &ds, pool, 50, 5);
    assert_int_equal(s.n_blocks, (N + 4) / 5);
    for (int b = 0; b < 5; b++)
        assert_int_equal(dml_sampler_next(&s, order + 10 * b), 10);
    int seen[N] = {0};
    for (int i = 0; i < 50; i++)
        assert_int_equal(seen[order[i]]++, 0);
    /* Cut greedily where a third block appears: 11 blocks, two a window, make 6 windows (a
     * full shuffle would need far more). */
    int at = 0, windows = 0;
    while (at < 50) {
        int blocks[2] = {-1, -1}, n_blocks = 0, size = 0;
        for (int i = at; i < 50; i++) {
            int b = order[i] / 5;
            if (b != blocks[0] && b != blocks[1]) {
                if (n_blocks == 2)
                    break;
                blocks[n_blocks++] = b;
            }
            size++;
        }
        at += size;
        windows++;
    }
    assert_int_equal(windows, 6);
    uint8_t saved[256];
    assert_true(dml_sampler_state_size(&s) <= sizeof saved);
    dml_sampler_state_save(&s, saved);
    dml_error err = {0};
    assert_int_equal(dml_sampler_state_load(&t, saved, dml_sampler_state_size(&s), &err), DML_OK);
    int32_t a[10], b[10];
    for (int k = 0; k < 7; k++) {
        dml_sampler_next(&s, a);
        dml_sampler_next(&t, b);
        assert_memory_equal(a, b, sizeof a);
    }
    /* not a same_class or m_per_class order */
    dml_sampler_spec same = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_SAME_CLASS, 10, 0, 0, 5, 2};
    dml_sampler u;
    assert_int_equal(dml_sampler_init(&u, &same, &ds, pool, 50, &(dml_rng){{1, 2, 3, 4}}, &err),
                     DML_ERR_USAGE);
    assert_non_null(strstr(err.msg, "block-random order"));
    dml_sampler_free(&s);
    dml_sampler_free(&t);
    dml_dataset_free(&ds);
}

/* A rank's share of the current shuffle: of each batch of this epoch (6 of 8 rows and the 2
 * left, kept), the rows [rank b / ranks, (rank + 1) b / ranks), in batch order; without
 * keep_last the 2 left are no batch, and no rank's. */
static void test_shard_rows(void **state)
{
    (void)state;
    dml_dataset ds;
    make_data(&ds);
    int32_t pool[50], batches[7][8], share[50];
    int sizes[7];
    for (int i = 0; i < 50; i++)
        pool[i] = 2 + i;
    for (int keep = 0; keep <= 1; keep++) {
        dml_sampler_spec spec = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 8, 0, keep, 5, 2};
        dml_sampler s;
        init_ok(&s, &spec, &ds, pool, 50, 9);
        int n_batches = keep ? 7 : 6;
        for (int k = 0; k < n_batches; k++)
            sizes[k] = dml_sampler_next(&s, batches[k]);
        assert_int_equal(sizes[n_batches - 1], keep ? 2 : 8);
        for (int ranks = 1; ranks <= 2; ranks++)
            for (int rank = 0; rank < ranks; rank++) {
                int n = dml_sampler_shard_rows(&s, ranks, rank, share), at = 0;
                for (int k = 0; k < n_batches; k++) {
                    int part = sizes[k] / ranks;
                    assert_true(at + part <= n);
                    assert_memory_equal(share + at, batches[k] + rank * part,
                                        (size_t)part * sizeof *share);
                    at += part;
                }
                assert_int_equal(n, at);
                assert_int_equal(n, (keep ? 50 : 48) / ranks);
            }
        dml_sampler_free(&s);
    }
    dml_dataset_free(&ds);
}

/* keep_last: each epoch ends with the rows left (50 = 6 x 8 + 2), every row exactly once;
 * pairs ignore it (their batches are always full). */
static void test_random_keep_last(void **state)
{
    (void)state;
    dml_dataset ds;
    make_data(&ds);
    int32_t pool[50], idx[8], seen[N];
    for (int i = 0; i < 50; i++)
        pool[i] = 2 + i;
    dml_sampler_spec spec = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 8, 0, 1, 0, 0};
    dml_sampler s;
    init_ok(&s, &spec, &ds, pool, 50, 5);
    assert_int_equal(dml_sampler_steps_per_epoch(&s), 7);
    for (int epoch = 0; epoch < 3; epoch++) {
        memset(seen, 0, sizeof seen);
        for (int b = 0; b < 7; b++) {
            int count = dml_sampler_next(&s, idx);
            assert_int_equal(count, b < 6 ? 8 : 2);
            for (int i = 0; i < count; i++)
                assert_int_equal(seen[idx[i]]++, 0);
        }
        for (int i = 0; i < 50; i++)
            assert_int_equal(seen[2 + i], 1); /* the whole pool, once */
    }
    dml_sampler_free(&s);
    int32_t all[N], a[16], p[16];
    all_rows(all, N);
    dml_sampler_spec pairs = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_OTHER_VIEW, 16, 0, 1, 0, 0};
    init_ok(&s, &pairs, &ds, all, 60, 5);
    assert_int_equal(dml_sampler_steps_per_epoch(&s), 3); /* 60 / 16, rounded down */
    for (int b = 0; b < 4; b++)
        assert_int_equal(dml_sampler_next_pairs(&s, a, p), 16);
    dml_sampler_free(&s);
    dml_dataset_free(&ds);
}

static void test_m_per_class(void **state)
{
    (void)state;
    dml_dataset ds;
    make_data(&ds);
    int32_t pool[N], idx[12];
    all_rows(pool, N);
    dml_sampler_spec spec = {DML_SAMPLER_M_PER_CLASS, DML_PAIR_MODE_NONE, 12, 3, 0, 0, 0};
    dml_sampler s;
    init_ok(&s, &spec, &ds, pool, N, 9);
    assert_int_equal(dml_sampler_steps_per_epoch(&s), N / 12);
    int class_hits[8] = {0};
    for (int b = 0; b < 200; b++) {
        assert_int_equal(dml_sampler_next(&s, idx), 12);
        int in_batch[8] = {0};
        for (int g = 0; g < 4; g++) {
            const int32_t *grp = idx + 3 * g;
            int c = ds.y[grp[0]];
            assert_int_equal(in_batch[c]++, 0); /* 4 distinct classes */
            class_hits[c]++;
            for (int i = 0; i < 3; i++) {
                assert_int_equal(ds.y[grp[i]], c); /* 3 rows of that class */
                for (int j = 0; j < i && c >= 1; j++) /* classes with >= 3 rows: distinct rows */
                    assert_int_not_equal(grp[i], grp[j]);
            }
        }
    }
    for (int c = 0; c < 8; c++) /* each round of 8 classes takes 2 batches of 4 */
        assert_int_equal(class_hits[c], 100);
    dml_sampler_free(&s);
    dml_dataset_free(&ds);
}

static void test_same_class_pairs(void **state)
{
    (void)state;
    dml_dataset ds;
    make_data(&ds);
    int32_t pool[N], a[16], p[16];
    all_rows(pool, N);
    dml_sampler_spec spec = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_SAME_CLASS, 16, 0, 0, 0, 0};
    dml_sampler s;
    init_ok(&s, &spec, &ds, pool, N, 3);
    assert_int_equal(dml_sampler_steps_per_epoch(&s), 63 / 16); /* row 0 (class 0) has no partner */
    int used[N] = {0};
    for (int b = 0; b < 300; b++) {
        assert_int_equal(dml_sampler_next_pairs(&s, a, p), 16);
        for (int i = 0; i < 16; i++) {
            assert_int_not_equal(a[i], p[i]);
            assert_int_equal(ds.y[a[i]], ds.y[p[i]]);
            assert_int_not_equal(a[i], 0);
            used[p[i]]++;
        }
    }
    for (int i = 1; i < N; i++) /* every row with a partner serves as a positive */
        assert_true(used[i] > 0);
    dml_sampler_free(&s);

    /* The other view: each anchor is paired with its own row, and every row is an anchor
     * once per epoch (labels play no part). */
    dml_sampler_spec views = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_OTHER_VIEW, 16, 0, 0, 0, 0};
    free(ds.y);
    ds.y = NULL;
    init_ok(&s, &views, &ds, pool, N, 3);
    assert_int_equal(dml_sampler_steps_per_epoch(&s), 4);
    memset(used, 0, sizeof used);
    for (int b = 0; b < 4; b++) {
        dml_sampler_next_pairs(&s, a, p);
        assert_memory_equal(a, p, sizeof a);
        for (int i = 0; i < 16; i++)
            assert_int_equal(used[a[i]]++, 0);
    }
    dml_sampler_free(&s);
    dml_dataset_free(&ds);
}

/* Draws k batches from s, saves, draws 25 more; a fresh sampler loaded with the state must
 * draw the same 25. */
static void check_resume(const dml_sampler_spec *spec, const dml_dataset *ds, const int32_t *pool,
                         int n, int k)
{
    int b = spec->batch_size;
    int32_t *want = malloc(sizeof *want * 2 * (size_t)b * 25);
    int32_t *got = malloc(sizeof *got * 2 * (size_t)b);
    int counts[25];
    dml_sampler s, r;
    init_ok(&s, spec, ds, pool, n, 21);
    for (int i = 0; i < k; i++)
        spec->pairs ? dml_sampler_next_pairs(&s, want, want + b) : dml_sampler_next(&s, want);
    uint8_t *saved = malloc(dml_sampler_state_size(&s));
    dml_sampler_state_save(&s, saved);
    for (int i = 0; i < 25; i++) {
        int32_t *w = want + 2 * (size_t)b * i;
        counts[i] = spec->pairs ? dml_sampler_next_pairs(&s, w, w + b) : dml_sampler_next(&s, w);
    }
    init_ok(&r, spec, ds, pool, n, 999); /* another seed: the state decides */
    dml_error err = {0};
    assert_int_equal(dml_sampler_state_load(&r, saved, dml_sampler_state_size(&r), &err), DML_OK);
    assert_int_equal(r.step, k);
    for (int i = 0; i < 25; i++) {
        const int32_t *w = want + 2 * (size_t)b * i;
        if (spec->pairs) {
            dml_sampler_next_pairs(&r, got, got + b);
            assert_memory_equal(got, w, 2 * (size_t)b * sizeof *got);
        } else {
            assert_int_equal(dml_sampler_next(&r, got), counts[i]);
            assert_memory_equal(got, w, (size_t)counts[i] * sizeof *got);
        }
    }
    free(saved);
    free(want);
    free(got);
    dml_sampler_free(&s);
    dml_sampler_free(&r);
}

static void test_save_restore(void **state)
{
    (void)state;
    dml_dataset ds;
    make_data(&ds);
    int32_t pool[N];
    all_rows(pool, N);
    const dml_sampler_spec specs[4] = {{DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 10, 0, 0, 0, 0},
                                       {DML_SAMPLER_M_PER_CLASS, DML_PAIR_MODE_NONE, 9, 3, 0, 0, 0},
                                       {DML_SAMPLER_RANDOM, DML_PAIR_MODE_SAME_CLASS, 10, 0, 0, 0, 0},
                                       {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 10, 0, 1, 0, 0}};
    /* Fresh, mid-epoch, exactly at an epoch's end (6 batches of 10 of 64; with keep_last, the
     * 7th batch of 4 follows), and later. */
    const int ks[6] = {0, 1, 3, 6, 7, 13};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 6; j++)
            check_resume(&specs[i], &ds, pool, N, ks[j]);

    /* A state from another sampler is refused. */
    dml_sampler s, other;
    init_ok(&s, &specs[0], &ds, pool, N, 1);
    init_ok(&other, &specs[0], &ds, pool, N - 1, 1);
    uint8_t saved[256];
    assert_true(dml_sampler_state_size(&s) <= sizeof saved);
    dml_sampler_state_save(&s, saved);
    dml_error err = {0};
    assert_int_equal(dml_sampler_state_load(&other, saved, dml_sampler_state_size(&s), &err),
                     DML_ERR_DATA);
    assert_non_null(strstr(err.msg, "belongs to another sampler"));
    assert_int_equal(dml_sampler_state_load(&s, saved, 7, &err), DML_ERR_DATA);
    saved[0] ^= 1;
    assert_int_equal(dml_sampler_state_load(&s, saved, dml_sampler_state_size(&s), &err),
                     DML_ERR_DATA);
    assert_non_null(strstr(err.msg, "not a sampler state"));
    dml_sampler_free(&s);
    dml_sampler_free(&other);
    dml_dataset_free(&ds);
}

static void test_init_errors(void **state)
{
    (void)state;
    dml_dataset ds;
    make_data(&ds);
    int32_t pool[N];
    all_rows(pool, N);
    const dml_sampler_spec mpc = {DML_SAMPLER_M_PER_CLASS, DML_PAIR_MODE_NONE, 12, 5, 0, 0, 0};
    expect_init_error(&mpc, &ds, pool, N, DML_ERR_USAGE, "positive divisor of batch_size 12");
    const dml_sampler_spec wide = {DML_SAMPLER_M_PER_CLASS, DML_PAIR_MODE_NONE, 36, 4, 0, 0, 0};
    expect_init_error(&wide, &ds, pool, N, DML_ERR_DATA, "needs batch_size / m = 9 classes");
    const dml_sampler_spec pairs = {DML_SAMPLER_M_PER_CLASS, DML_PAIR_MODE_SAME_CLASS, 12, 3, 0, 0, 0};
    expect_init_error(&pairs, &ds, pool, N, DML_ERR_USAGE, "pairs are drawn by the random sampler");
    const dml_sampler_spec zero = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 0, 0, 0, 0, 0};
    expect_init_error(&zero, &ds, pool, N, DML_ERR_USAGE, "batch_size 0");
    const dml_sampler_spec big = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 65, 0, 0, 0, 0};
    expect_init_error(&big, &ds, pool, N, DML_ERR_DATA, "batch_size 65 is larger than the 64 rows");
    const dml_sampler_spec rnd = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, 4, 0, 0, 0, 0};
    int32_t bad[3] = {0, 64, 1}, twice[3] = {5, 6, 5};
    expect_init_error(&rnd, &ds, bad, 3, DML_ERR_USAGE, "row 64 is outside 0..63");
    expect_init_error(&rnd, &ds, twice, 3, DML_ERR_USAGE, "row 5 is there twice");
    const dml_sampler_spec same = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_SAME_CLASS, 1, 0, 0, 0, 0};
    int32_t singles[3] = {0, 1, 4}; /* classes 0, 1 and 2: one row each in this pool */
    expect_init_error(&same, &ds, singles, 3, DML_ERR_DATA, "need a class with two rows");
    free(ds.y);
    ds.y = NULL;
    expect_init_error(&mpc, &ds, pool, N, DML_ERR_USAGE, "positive divisor");
    const dml_sampler_spec mpc_ok = {DML_SAMPLER_M_PER_CLASS, DML_PAIR_MODE_NONE, 12, 3, 0, 0, 0};
    expect_init_error(&mpc_ok, &ds, pool, N, DML_ERR_DATA, "needs labels");
    dml_dataset_free(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_epochs),
        cmocka_unit_test(test_random_block_order),
        cmocka_unit_test(test_random_keep_last),
        cmocka_unit_test(test_shard_rows),
        cmocka_unit_test(test_m_per_class),
        cmocka_unit_test(test_same_class_pairs),
        cmocka_unit_test(test_save_restore),
        cmocka_unit_test(test_init_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
