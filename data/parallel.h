/* A parallel for over contiguous ranges with plain pthreads, for work that is independent per
 * row while OpenBLAS is idle: the search scans and metric passes, the augmentation of a batch. */
#ifndef DML_DATA_PARALLEL_H
#define DML_DATA_PARALLEL_H

/* Runs fn(ctx, begin, end, thread) over [0, n) split into contiguous ranges on up to threads
 * threads (thread in [0, threads)); returns when all are done. */
typedef void (*dml_range_fn)(void *ctx, int begin, int end, int thread);
void dml_parallel_for(int threads, int n, dml_range_fn fn, void *ctx);
/* threads <= 0: one per online core; at most 64. */
int dml_parallel_threads(int threads);

#endif
