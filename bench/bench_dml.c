/* bench_dml: the dml side of `make bench` (run by bench/run.py; see bench/README.md).
 *
 *   bench_dml train CONFIG [--set k=v]... [--steps N] [--warmup N] [--threads N] [--dump DIR]
 *                   [--reps N]      (N > 0: the GEMM ceiling too, as the gemm sub-command)
 *   bench_dml gemm CONFIG [--set k=v]... [--threads N] [--reps 20]
 *   bench_dml embed CONFIG OUTDIR [--set k=v]... [--steps N] [--threads N]
 *   bench_dml pq SPEC [--queries SPEC] [--m 8] [--nbits 8] [--iters 25] [--init random]
 *                [--k 100] [--single-queries 2000] [--threads N]
 *   bench_dml eval DB_SPEC QUERY_SPEC [--k 100] [--threads N]
 *
 * Each prints one JSON object on stdout. Set-up (reading data, building the model) is never
 * timed; every timed region calls only library functions. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "bench/bench.h"

dml_status dml_bench_write_npy(const char *path, const void *data, int rows, int cols, int is_int,
                               dml_error *err)
{
    char dict[160], tmp[1100];
    int len = cols > 0 ? snprintf(dict, sizeof dict,
                                  "{'descr': '%s', 'fortran_order': False, 'shape': (%d, %d), }",
                                  is_int ? "<i4" : "<f4", rows, cols)
                       : snprintf(dict, sizeof dict,
                                  "{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }",
                                  is_int ? "<i4" : "<f4", rows);
    int total = 10 + len + 1, pad = (64 - total % 64) % 64; /* the data starts 64-byte aligned */
    unsigned hlen = (unsigned)(len + pad + 1);
    unsigned char head[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                              (unsigned char)(hlen >> 8)};
    dml_tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write");
    size_t n = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    fwrite(head, 1, sizeof head, f);
    fwrite(dict, 1, (size_t)len, f);
    for (int i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
    fwrite(data, 4, n, f);
    if (fclose(f) != 0)
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "write failed");
    return dml_file_commit(tmp, path, err);
}

double dml_bench_machine_probe(void)
{
    enum { M = 256, K = 784, N = 512, WARMUP = 3, REPS = 20 };
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N),
          *c = malloc(sizeof(float) * M * N);
    double best = 0.0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            a[i] = (float)(i % 97) / 97.0f;
        for (size_t i = 0; i < (size_t)K * N; i++)
            b[i] = (float)(i % 89) / 89.0f;
        for (int r = 0; r < WARMUP + REPS; r++) {
            double t = dml_bench_now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f,
                        c, N);
            double rate = 2e-9 * M * N * K / (dml_bench_now() - t);
            if (r >= WARMUP && rate > best)
                best = rate;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

int dml_bench_fail(const char *what, dml_status st, const dml_error *err)
{
    char msg[1024];
    dml_error_format(err, msg, sizeof msg);
    fprintf(stderr, "bench_dml %s: %s (%s)\n", what, msg, dml_status_name(st));
    return st == DML_OK ? 1 : dml_status_exit_code(st);
}

dml_status dml_bench_open_unit(const char *spec, dml_dataset *ds, dml_error *err)
{
    dml_status st = dml_dataset_open(spec, ds, err);
    dml_input_norm norm;
    if (st == DML_OK && (st = dml_input_norm_fit(&norm, DML_NORM_UNIT, ds, 0, NULL, 0, err)) == DML_OK) {
        dml_input_norm_apply(&norm, ds->x, (size_t)ds->n);
        dml_input_norm_free(&norm);
    }
    return st;
}

static const char USAGE[] =
    "usage: bench_dml train|gemm|embed|pq|eval ... (see bench/bench_dml.c and bench/README.md)\n";

/* --name value options; everything else is positional. */
static int parse(int argc, char **argv, dml_bench_args *a)
{
    *a = (dml_bench_args){.name = argv[1], .init = "random", .steps = 40, .warmup = 5,
                          .threads = 0, .reps = 0, .m = 8, .nbits = 8, .iters = 25, .k = 100,
                          .single_queries = 2000};
    static const struct {
        const char *flag;
        size_t at; /* offset of an int field, or 0 for the strings below */
    } INTS[] = {{"--steps", offsetof(dml_bench_args, steps)},
                {"--warmup", offsetof(dml_bench_args, warmup)},
                {"--threads", offsetof(dml_bench_args, threads)},
                {"--reps", offsetof(dml_bench_args, reps)},
                {"--m", offsetof(dml_bench_args, m)},
                {"--nbits", offsetof(dml_bench_args, nbits)},
                {"--iters", offsetof(dml_bench_args, iters)},
                {"--k", offsetof(dml_bench_args, k)},
                {"--single-queries", offsetof(dml_bench_args, single_queries)}};
    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i];
        int done = 0;
        for (size_t j = 0; j < sizeof INTS / sizeof *INTS && !done; j++)
            if (!strcmp(arg, INTS[j].flag) && i + 1 < argc) {
                *(int *)((char *)a + INTS[j].at) = atoi(argv[++i]);
                done = 1;
            }
        if (done)
            continue;
        if (!strcmp(arg, "--set") && i + 1 < argc && a->n_sets < DML_BENCH_MAX_SETS)
            a->sets[a->n_sets++] = argv[++i];
        else if (!strcmp(arg, "--name") && i + 1 < argc)
            a->name = argv[++i];
        else if (!strcmp(arg, "--dump") && i + 1 < argc)
            a->dump = argv[++i];
        else if (!strcmp(arg, "--queries") && i + 1 < argc)
            a->queries = argv[++i];
        else if (!strcmp(arg, "--init") && i + 1 < argc)
            a->init = argv[++i];
        else if (arg[0] != '-' && a->n_pos < 4)
            a->pos[a->n_pos++] = arg;
        else {
            fprintf(stderr, "bench_dml: unexpected argument '%s'\n%s", arg, USAGE);
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(const dml_bench_args *);
        int n_pos;
    } CMDS[] = {{"train", dml_bench_train, 1}, {"gemm", dml_bench_gemm, 1},
                {"embed", dml_bench_embed, 2}, {"pq", dml_bench_pq, 1},
                {"eval", dml_bench_eval, 2}};
    dml_bench_args a;
    for (size_t i = 0; argc >= 2 && i < sizeof CMDS / sizeof *CMDS; i++)
        if (!strcmp(argv[1], CMDS[i].name)) {
            if (!parse(argc, argv, &a))
                return 2;
            if (a.n_pos != CMDS[i].n_pos) {
                fprintf(stderr, "bench_dml %s: expected %d positional argument(s)\n%s",
                        CMDS[i].name, CMDS[i].n_pos, USAGE);
                return 2;
            }
            return CMDS[i].run(&a);
        }
    fputs(USAGE, stderr);
    return 2;
}
