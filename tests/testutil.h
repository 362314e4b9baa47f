/* Shared helpers for the cmocka tests: gradient checks, temporary folders, Python probes. */
#ifndef DML_TESTUTIL_H
#define DML_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nn/nn.h"

/* Builds the function under test from its input leaves; returns the output node. */
typedef dml_tensor *(*tu_build_fn)(dml_graph *g, dml_tensor **in, void *ctx);

typedef struct tu_input {
    int rows, cols;
    const float *data; /* initial values; copied */
    int no_grad;       /* 1: a constant input (labels-like data), not checked */
} tu_input;

/* Central finite differences (the loss is sum(out * R) for a fixed random R, accumulated in
 * double) against dml_backward, for every element of every input with a gradient. Fails the
 * test when |analytic - numeric| > tol * (1 + max(|analytic|, |numeric|)). Returns the largest
 * such scaled error. */
double tu_gradcheck(tu_build_fn build, void *ctx, int n_in, const tu_input *in, float eps,
                    double tol);

/* Fill with N(0, scale^2) values from a seeded generator. */
void tu_fill_normal(float *x, size_t n, float scale, uint64_t seed);

/* A fresh folder under $TMPDIR (or /tmp); the path is static storage per call site. */
void tu_mkdtemp(char *out, size_t n);

/* 1 if Debian's /usr/bin/python3 (or $PYTHON) imports every module named (comma-separated). */
int tu_python_has(const char *modules);
/* Run "$PYTHON <args>" through the shell; returns its exit status. */
int tu_python_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Path of the dml CLI under test ($DML, default build/dml). */
/* The whole file at path, NUL-terminated, malloc'ed; *len (may be NULL) its bytes. Fails the
 * test when it cannot be read. */
char *tu_read_file(const char *path, size_t *len);
const char *tu_dml_path(void);
/* The fault injector preloaded by the I/O-failure tests (tests/fault_preload.c), built beside
 * the test programs. */
const char *tu_fault_lib_path(void);
/* n rows of width d in `classes` Gaussian classes (row i in class i % classes), seeded, as X
 * (float32) and y (int32) in a new HDF5 file. */
void tu_write_blobs(const char *path, int n, int d, int classes);
/* The trainer tests' fixture: a fresh temporary folder (dir) holding n blob rows in
 * dir/blobs.h5 (data); tu_remove_folder removes it again. */
void tu_blobs_folder(char *dir, size_t dir_size, char *data, size_t data_size, int n, int d,
                     int classes);
void tu_remove_folder(const char *dir);
/* The shell command that trains configs/demo.yaml on data into dir/out, with args and then
 * extra, logging to dir/out.log; exec'ed, so that a background run's pid is dml's. */
void tu_demo_train_command(char *cmd, size_t n, const char *dir, const char *out,
                           const char *data, const char *args, const char *extra);
/* Monotonic seconds. */
double tu_now(void);
/* Run a shell command; returns its exit status (0-255), or -1. */
int tu_system(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Two runs' model.h5 files (run folders): the same steps, encoder weights and codebooks, to the
 * bit. */
void tu_assert_same_model(const char *run_a, const char *run_b);
/* The largest |a - b| / max(|a|, |b|, 1e-4) over every encoder weight and bias (both towers of
 * a dual encoder) and every codeword of two runs' model.h5 files (run folders), which must have
 * trained the same number of steps. The floor holds weights smaller than a thousandth of a
 * layer's typical 0.1 to an absolute 1e-8: rounding noise of 4e-9 on an MNR bias of -3.3e-5 is
 * 1.1e-4 of it. */
double tu_model_rel_diff(const char *run_a, const char *run_b);

/* A difference between two summation orders of one computation (ranks against one process,
 * GradCache chunks against one shot, ...) checked against its bound: prints
 * "  measured <what>: <value> (bound <bound>)", the line `make test-kernels` collects into its
 * table per OpenBLAS kernel, and fails the test when value > bound. */
void tu_assert_measured(const char *what, double value, double bound);

/* Waits up to `seconds` for a file to exist; fails the test otherwise. */
void tu_wait_for_file(const char *path, double seconds);

/* Runs the shell command cmd (a `dml train ... --out run_dir`) in the background and SIGKILLs it
 * once run_dir/checkpoint.h5 exists (up to 120 s: a loaded machine), then reaps it: the first
 * half of a killed-and-resumed test. */
void tu_kill_after_checkpoint(const char *cmd, const char *run_dir);

/* The environment mpirun runs under in the tests: OpenMPI's shared-memory transport without
 * cross-process copies (containers forbid them), idle ranks yielding their core, and, under make
 * sanitize, OpenMPI's own exit-time memory suppressed by library (tests/lsan_openmpi.supp) with
 * full stacks, so dml's own leaks still show. */
void tu_mpi_env(void);

/* Skip the current test with a visible note (cmocka's skip() prints nothing of why). */
#define TU_SKIP(why) do { print_message("[  SKIP    ] %s\n", (why)); skip(); } while (0)

#endif
