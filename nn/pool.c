/* dml's own worker threads: one job at a time, split into one part per thread, the caller doing
 * part 0. OpenBLAS runs on one thread under it (nn/gemm.c), so a step's products and its
 * element-wise passes share the same threads, and the second core is not left yielding in
 * OpenBLAS's idle loop while the first works outside GEMM.
 *
 * A worker spins for a while after each part (a training step issues a job every few tens of
 * microseconds, and waking a sleeping thread costs more than that), then sleeps on a condition
 * variable until the next job. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "nn/nn.h"

/* How long a worker spins before it sleeps. A training step's gaps between jobs (the batch
 * gather, the loss) are well under this; a counted spin was not, as the pause instruction takes
 * from ~10 to ~140 cycles by processor. */
#define SPIN_SECONDS 2e-3
#define MAX_WORKERS 63

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static struct {
    pthread_t ids[MAX_WORKERS];
    int n_workers;
    atomic_flag busy;       /* held by the thread whose job is running (or is being set up) */
    atomic_uint job_number; /* bumped for each job; workers watch it */
    atomic_int parts_left;  /* worker parts of the current job not yet finished */
    atomic_int quit;
    atomic_int sleepers;
    unsigned start_number; /* the job number when the workers were started */
    dml_pool_task task;
    void *ctx;
    int parts;
    pthread_mutex_t lock; /* for sleeping and waking only */
    pthread_cond_t wake;
} pool = {.busy = ATOMIC_FLAG_INIT,
          .lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER};

/* Waits until the job number moves past `seen`; returns the new one. */
static unsigned wait_for_job(unsigned seen)
{
    double give_up = seconds_now() + SPIN_SECONDS;
    for (int i = 1;; i++) {
        unsigned now = atomic_load_explicit(&pool.job_number, memory_order_acquire);
        if (now != seen)
            return now;
        cpu_relax();
        if (i % 256 == 0 && seconds_now() > give_up)
            break;
    }
    /* Going to sleep: announce_job bumps the job number, then looks for sleepers; this thread
     * counts itself a sleeper, then looks at the job number. Both pairs are sequentially
     * consistent, so at least one side sees the other's write: no wake-up is lost. */
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add(&pool.sleepers, 1);
    unsigned now;
    while ((now = atomic_load(&pool.job_number)) == seen)
        pthread_cond_wait(&pool.wake, &pool.lock);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.lock);
    return now;
}

static void *worker_main(void *arg)
{
    int part = (int)(intptr_t)arg;
    unsigned seen = pool.start_number; /* not job_number now: a job may already be announced */
    for (;;) {
        seen = wait_for_job(seen);
        if (atomic_load_explicit(&pool.quit, memory_order_acquire))
            return NULL;
        pool.task(pool.ctx, part, pool.parts);
        atomic_fetch_sub_explicit(&pool.parts_left, 1, memory_order_release);
    }
}

/* Publishes a new job number and wakes any worker that went to sleep. */
static void announce_job(void)
{
    atomic_fetch_add(&pool.job_number, 1); /* sequentially consistent: see wait_for_job */
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
    }
}

static void stop_workers(void)
{
    if (pool.n_workers == 0)
        return;
    atomic_store(&pool.quit, 1);
    announce_job();
    for (int i = 0; i < pool.n_workers; i++)
        pthread_join(pool.ids[i], NULL);
    pool.n_workers = 0;
    atomic_store(&pool.quit, 0);
}

/* A forked child has only the thread that forked: it forgets the parent's workers (and any job
 * the parent was running) and runs every job on its own thread until it sizes the pool again. */
static void forget_workers_in_child(void)
{
    pool.n_workers = 0;
    atomic_flag_clear(&pool.busy);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
}

static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;
static void install_hooks(void)
{
    pthread_atfork(NULL, NULL, forget_workers_in_child);
    atexit(stop_workers);
}

int dml_pool_resize(int threads)
{
    pthread_once(&hooks_once, install_hooks);
    while (atomic_flag_test_and_set_explicit(&pool.busy, memory_order_acquire))
        cpu_relax(); /* another thread's job is running: resize after it */
    int want = threads < 1 ? 0 : threads - 1;
    if (want > MAX_WORKERS)
        want = MAX_WORKERS;
    if (want != pool.n_workers) {
        stop_workers();
        pool.start_number = atomic_load(&pool.job_number);
        for (int i = 0; i < want; i++) {
            if (pthread_create(&pool.ids[i], NULL, worker_main, (void *)(intptr_t)(i + 1)) != 0)
                break; /* fewer threads than asked: the jobs are split over those there are */
            pool.n_workers = i + 1;
        }
    }
    int n = pool.n_workers + 1;
    atomic_flag_clear_explicit(&pool.busy, memory_order_release);
    return n;
}

void dml_pool_run(dml_pool_task task, void *ctx)
{
    /* One job at a time: a job started while another runs (from another thread, or from inside a
     * part) runs whole on its caller's thread. */
    if (atomic_flag_test_and_set_explicit(&pool.busy, memory_order_acquire)) {
        task(ctx, 0, 1);
        return;
    }
    if (pool.n_workers == 0) {
        atomic_flag_clear_explicit(&pool.busy, memory_order_release);
        task(ctx, 0, 1);
        return;
    }
    int parts = pool.n_workers + 1;
    pool.task = task;
    pool.ctx = ctx;
    pool.parts = parts;
    atomic_store_explicit(&pool.parts_left, pool.n_workers, memory_order_relaxed);
    announce_job();
    task(ctx, 0, parts);
    while (atomic_load_explicit(&pool.parts_left, memory_order_acquire) > 0)
        cpu_relax();
    atomic_flag_clear_explicit(&pool.busy, memory_order_release);
}

void dml_pool_range(size_t n, size_t align, int part, int parts, size_t *start, size_t *end)
{
    size_t chunk = (n / (size_t)parts + align - 1) / align * align;
    size_t s = chunk * (size_t)part, e = s + chunk;
    *start = s < n ? s : n;
    *end = part == parts - 1 || e > n ? n : e;
}

typedef struct {
    dml_pool_chunk_task task;
    void *ctx;
    int n_chunks;
    atomic_int next;
} chunk_job;

/* On one thread the chunks are taken in order without the atomic counter: a locked addition
 * per chunk cost the small model's step (a few hundred chunks, all on the caller) 6%. */
static void claim_chunks(void *ctx, int part, int parts)
{
    (void)part;
    chunk_job *job = ctx;
    if (parts == 1) {
        for (int k = 0; k < job->n_chunks; k++)
            job->task(job->ctx, k, job->n_chunks);
        return;
    }
    for (int k; (k = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed)) < job->n_chunks;)
        job->task(job->ctx, k, job->n_chunks);
}

void dml_pool_run_chunks(dml_pool_chunk_task task, void *ctx, int n_chunks, size_t elements)
{
    chunk_job job = {task, ctx, n_chunks, 0};
    if (elements < DML_POOL_MIN_ELEMENTS)
        claim_chunks(&job, 0, 1);
    else
        dml_pool_run(claim_chunks, &job);
}

/* Row passes: a handful of chunks per thread, so that a thread whose rows sit in the other
 * core's cache does not hold the other back. */
enum { ROW_CHUNKS = 8 };

typedef struct {
    dml_pool_rows_task task;
    void *ctx;
    int rows;
} rows_job;

static void rows_chunk(void *ctx, int chunk, int n_chunks)
{
    const rows_job *job = ctx;
    size_t s, e;
    dml_pool_range((size_t)job->rows, 1, chunk, n_chunks, &s, &e);
    if (s < e)
        job->task(job->ctx, (int)s, (int)e);
}

void dml_pool_run_rows(dml_pool_rows_task task, void *ctx, int rows, int cols)
{
    rows_job job = {task, ctx, rows};
    if ((size_t)rows * (size_t)cols < DML_POOL_MIN_ELEMENTS)
        task(ctx, 0, rows); /* the rows are independent: one range is the chunks' arithmetic */
    else
        dml_pool_run_chunks(rows_chunk, &job, ROW_CHUNKS, (size_t)rows * (size_t)cols);
}
