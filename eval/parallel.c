/* A parallel for over contiguous ranges with plain pthreads: the search scans and the metric
 * passes are independent per query, and OpenBLAS is idle while they run. */
#include <pthread.h>
#include <unistd.h>

#include "eval/eval.h"

#define MAX_THREADS 64

typedef struct task {
    dml_range_fn fn;
    void *ctx;
    int begin, end, thread;
} task;

static void *run_task(void *arg)
{
    task *t = arg;
    t->fn(t->ctx, t->begin, t->end, t->thread);
    return NULL;
}

int dml_eval_threads(int threads)
{
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    return threads > MAX_THREADS ? MAX_THREADS : threads;
}

void dml_parallel_for(int threads, int n, dml_range_fn fn, void *ctx)
{
    threads = dml_eval_threads(threads);
    if (threads > n)
        threads = n;
    if (threads <= 1) {
        if (n > 0)
            fn(ctx, 0, n, 0);
        return;
    }
    task tasks[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++)
        tasks[t] = (task){fn, ctx, (int)((long)n * t / threads), (int)((long)n * (t + 1) / threads), t};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, run_task, &tasks[t]) == 0;
    run_task(&tasks[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else /* no thread to be had: do its share here */
            run_task(&tasks[t]);
    }
}
