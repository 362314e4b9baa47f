/* bench/: the dml side of `make bench`. bench/run.py drives build/bench_dml, whose
 * sub-commands each do one case's work with the library's own functions (the trainer's step,
 * the product quantizer, the searcher) and print one JSON object on stdout. */
#ifndef DML_BENCH_H
#define DML_BENCH_H

#include "train/run.h"

#define DML_BENCH_MAX_SETS 64

typedef struct dml_bench_args {
    const char *pos[4]; /* positional arguments after the sub-command */
    int n_pos;
    char *sets[DML_BENCH_MAX_SETS]; /* config overrides, "key.path=value" */
    int n_sets;
    const char *name;    /* the case's name in the JSON */
    const char *dump;    /* train: folder for the first step's weights, batch and loss */
    const char *queries; /* pq: the ADC search's queries (a data SPEC) */
    const char *init;    /* pq: "random" (FAISS's) or "plusplus" (the trainer's) */
    int steps, warmup, threads, reps, m, nbits, iters, k;
    int single_queries; /* pq: queries of the single-threaded dml_pq_search */
} dml_bench_args;

/* Seconds on a monotonic clock. */
double dml_bench_now(void);
/* The median of v[0..n), n > 0, which it sorts in place (v[0] is then the least). */
double dml_bench_median(double *v, int n);
/* rows x cols values (cols 0: a vector of rows) as .npy, float32 or int32, written atomically. */
dml_status dml_bench_write_npy(const char *path, const void *data, int rows, int cols, int is_int,
                               dml_error *err);
/* Prints "bench_dml <what>: <error>" on stderr; returns the process exit code. */
int dml_bench_fail(const char *what, dml_status st, const dml_error *err);
/* The machine's state when a process starts: GFLOP/s of one cblas_sgemm, [256, 784] @ [784, 512]
 * on OpenBLAS's own thread count, best of 20. bench/torch_peer.py times the same product through
 * numpy (the same OpenBLAS), so a round's two processes can be compared. 0 when out of memory. */
double dml_bench_machine_probe(void);
/* Reads a data SPEC into ds, bytes scaled to [0, 1] as the trainer's normalize: unit does. */
dml_status dml_bench_open_unit(const char *spec, dml_dataset *ds, dml_error *err);

/* bench/bench_train.c */
int dml_bench_train(const dml_bench_args *a); /* steps/s of the trainer's step */
int dml_bench_gemm(const dml_bench_args *a);  /* cblas_sgemm at one step's GEMM shapes */
int dml_bench_embed(const dml_bench_args *a); /* train briefly, write the embeddings */

/* bench/bench_search.c */
int dml_bench_pq(const dml_bench_args *a);   /* PQ training, encoding, ADC search */
int dml_bench_eval(const dml_bench_args *a); /* exact search and map_at_r */

#endif
