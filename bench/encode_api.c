/* bench_encode: the C side of the Python API's encode row (bench/python_api.py, issue #28).
 *
 *   bench_encode MODEL.h5 [--rows N] [--repeats R] [--seed S]
 *
 * Opens the model through the public API (include/dml.h only), fills N x dim_in float32 rows
 * from a fixed seed (splitmix64 per value, the top byte as 0..255, the generator
 * python_api.py reproduces with numpy), then calls dml_model_encode on all N rows once
 * untimed (warm-up) and R times timed, into one output buffer it allocated once, as a C caller
 * would. Threads: OpenBLAS's own count (OPENBLAS_NUM_THREADS, set by the driver); nothing else
 * is set. Prints one JSON object: every timed call's seconds, their median and minimum, and
 * the first row's first embedding values and the sum of all of them (the same work check). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dml.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Value i of the stream: splitmix64 of seed + (i + 1) * golden, its top byte. */
static float value_at(uint64_t seed, uint64_t i)
{
    uint64_t z = seed + (i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 56);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: bench_encode MODEL.h5 [--rows N] [--repeats R] [--seed S]\n");
        return 2;
    }
    const char *path = argv[1];
    long rows = 100000, repeats = 5;
    uint64_t seed = 0;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_encode: %s needs a value\n", argv[i]);
            return 2;
        }
        if (!strcmp(argv[i], "--rows"))
            rows = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--repeats"))
            repeats = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed"))
            seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "bench_encode: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (rows < 1 || repeats < 1) {
        fprintf(stderr, "bench_encode: --rows and --repeats must be >= 1\n");
        return 2;
    }
    char msg[512];
    dml_model *m;
    if (dml_model_open(path, &m, msg, sizeof msg) != DML_OK) {
        fprintf(stderr, "bench_encode: %s\n", msg);
        return 1;
    }
    int d_in = dml_model_dim_in(m), dim = dml_model_dim_out(m);
    size_t n_x = (size_t)rows * (size_t)d_in, n_out = (size_t)rows * (size_t)dim;
    float *x = malloc(n_x * sizeof *x), *out = malloc(n_out * sizeof *out);
    double *secs = malloc((size_t)repeats * sizeof *secs);
    if (!x || !out || !secs) {
        fprintf(stderr, "bench_encode: out of memory for %ld rows\n", rows);
        return 1;
    }
    for (size_t i = 0; i < n_x; i++)
        x[i] = value_at(seed, i);
    dml_status st = dml_model_encode(m, x, (size_t)rows, out); /* warm-up, untimed */
    for (long r = 0; r < repeats && st == DML_OK; r++) {
        double t0 = now();
        st = dml_model_encode(m, x, (size_t)rows, out);
        secs[r] = now() - t0;
    }
    if (st != DML_OK) {
        fprintf(stderr, "bench_encode: dml_model_encode: %s\n", dml_status_name(st));
        return 1;
    }
    double sum = 0.0;
    for (size_t i = 0; i < n_out; i++)
        sum += out[i];
    printf("{\"side\": \"c\", \"rows\": %ld, \"d_in\": %d, \"dim_out\": %d, \"repeats\": %ld, "
           "\"seconds\": [",
           rows, d_in, dim, repeats);
    for (long r = 0; r < repeats; r++)
        printf("%s%.9f", r ? ", " : "", secs[r]);
    qsort(secs, (size_t)repeats, sizeof *secs, cmp_double);
    double med = repeats % 2 ? secs[repeats / 2] : 0.5 * (secs[repeats / 2 - 1] + secs[repeats / 2]);
    printf("], \"median_s\": %.9f, \"min_s\": %.9f, \"first\": [", med, secs[0]);
    for (int j = 0; j < 4 && j < dim; j++)
        printf("%s\"%.9g\"", j ? ", " : "", (double)out[j]);
    printf("], \"sum\": %.17g}\n", sum);
    free(secs);
    free(out);
    free(x);
    dml_model_free(m);
    return 0;
}
