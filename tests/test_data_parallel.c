/* The parallel for: every index of [0, n) handed out exactly once, whatever the thread count. */
#include <string.h>

#include "data/parallel.h"
#include "tests/testutil.h"

static void collect(void *ctx, int begin, int end, int thread)
{
    (void)thread;
    int *hits = ctx;
    for (int i = begin; i < end; i++)
        hits[i]++;
}

static void test_parallel_for_covers_every_index_once(void **state)
{
    (void)state;
    int hits[37] = {0};
    for (int threads = 1; threads <= 5; threads++) {
        memset(hits, 0, sizeof hits);
        dml_parallel_for(threads, 37, collect, hits);
        for (int i = 0; i < 37; i++)
            assert_int_equal(hits[i], 1);
    }
    memset(hits, 0, sizeof hits);
    dml_parallel_for(2, 0, collect, hits); /* nothing to do */
    for (int i = 0; i < 37; i++)
        assert_int_equal(hits[i], 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_for_covers_every_index_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
