/* dml encode MODEL.h5 INPUT OUTPUT.h5 [--pq] [--tower a|b] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "serve/serve.h"

static const char HELP[] =
    "usage: dml encode MODEL.h5 INPUT OUTPUT.h5 [--pq] [--tower a|b]\n"
    "\n"
    "Embeds every row of the data SPEC INPUT with the model (its input normalisation, MLP and\n"
    "output normalisation) and writes OUTPUT.h5, which dml reads back as a data SPEC:\n"
    "  X      float32 [n, dim]       the embeddings\n"
    "  codes  uint8 [n, code_size]   with --pq: their PQ codes, packed as FAISS's IndexPQ packs them\n"
    "  y      int64 [n]              the input's labels, when it has them\n"
    "\n"
    "  --pq          also encode the embeddings with the model's PQ codebooks\n"
    "  --tower a|b   the tower of a dual encoder: a (default) or b, the positive side, which reads\n"
    "                INPUT's second view when it has one\n"
    "  -h, --help    this text\n";

typedef struct args {
    const char *model, *input, *output;
    int pq, tower;
} args;

/* -1 to go on; otherwise the exit code. */
static int parse(int argc, char **argv, args *a)
{
    const char **pos[3] = {&a->model, &a->input, &a->output};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--pq")) {
            a->pq = 1;
        } else if (!strcmp(argv[i], "--tower")) {
            if (i + 1 == argc || (strcmp(argv[i + 1], "a") != 0 && strcmp(argv[i + 1], "b") != 0)) {
                fprintf(stderr, "dml encode: --tower takes a or b\n\n%s", HELP);
                return 2;
            }
            a->tower = argv[++i][0] == 'b';
        } else if (argv[i][0] != '-' && n_pos < 3) {
            *pos[n_pos++] = argv[i];
        } else {
            fprintf(stderr, "dml encode: unexpected argument '%s'\n\n%s", argv[i], HELP);
            return 2;
        }
    }
    if (n_pos < 3) {
        fprintf(stderr, "dml encode: expected MODEL.h5 INPUT OUTPUT.h5\n\n%s", HELP);
        return 2;
    }
    return -1;
}

/* The rows [lo, hi) a rank encodes: whole DML_ENCODE_BLOCKs, split as evenly as they go, so
 * every forward pass is one the single process makes too and the bytes are the same. */
static void shard(size_t n, int rank, int size, size_t *lo, size_t *hi)
{
    size_t blocks = (n + DML_ENCODE_BLOCK - 1) / DML_ENCODE_BLOCK;
    size_t a = DML_ENCODE_BLOCK * (blocks * (size_t)rank / (size_t)size);
    size_t b = DML_ENCODE_BLOCK * (blocks * (size_t)(rank + 1) / (size_t)size);
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

/* st, or an error naming the first rank that failed when this one did not. */
static dml_status all_ok(const dml_comm *c, dml_status st, dml_error *err)
{
    int failed = c ? dml_cli_mpi_first_failure(c, st != DML_OK) : -1;
    if (failed >= 0 && st == DML_OK)
        st = dml_error_set(err, DML_ERR_IO, NULL, 0, 0,
                           "rank %d failed (its own message says why)", failed);
    return st;
}

/* Under mpirun each rank embeds (and PQ-encodes) its contiguous slice of the rows; rank 0
 * gathers the slices in bounded messages and writes OUTPUT.h5 alone, through the same writer as
 * one process. Debian's HDF5 is the serial build: parallel HDF5 would need another library
 * build for every user, and one writer keeps the file's bytes the writer's own. */
static dml_status run(const args *a, const dml_comm *comm, dml_model_file *mf, dml_dataset *ds,
                      dml_error *err)
{
    dml_status st = dml_model_file_read(a->model, mf, err);
    if (st == DML_OK && a->tower && mf->net.type != DML_NET_DUAL)
        st = dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0,
                           "--tower b needs a dual encoder; this model is %s",
                           dml_model_file_type_name(mf->net.type));
    if (st == DML_OK && a->pq && !mf->pq.d)
        st = dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0,
                           "the model has no PQ codebooks (/pq): drop --pq");
    if (st == DML_OK)
        st = dml_dataset_open(a->input, ds, err);
    if ((st = all_ok(comm, st, err)) != DML_OK)
        return st;
    int rank = comm ? comm->rank : 0, size = comm ? comm->size : 1;
    size_t n = (size_t)ds->n, lo, hi;
    shard(n, rank, size, &lo, &hi);
    dml_dataset part = *ds; /* a view of rows [lo, hi) */
    part.n = (int)(hi - lo);
    part.x = ds->x + lo * ds->d;
    part.x_b = ds->x_b ? ds->x_b + lo * ds->d_b : NULL;
    float *x = NULL, *x_all = NULL;
    uint8_t *codes = NULL, *codes_all = NULL;
    size_t cs = a->pq ? dml_pq_code_size(&mf->pq) : 0;
    const dml_mlp *m = dml_model_file_tower(mf, a->tower);
    size_t dim = m ? (size_t)dml_mlp_dim_out(m) : 0;
    st = dml_model_file_encode_dataset(mf, a->tower, &part, &x, err);
    if (st == DML_OK && a->pq && !(codes = malloc((hi - lo) * cs + 1)))
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for %d codes", part.n);
    if (st == DML_OK && codes)
        dml_pq_encode(&mf->pq, x, hi - lo, codes);
    if (st == DML_OK && comm && rank == 0 &&
        (!(x_all = malloc(n * dim * sizeof(float) + 1)) || (a->pq && !(codes_all = malloc(n * cs + 1)))))
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for %zu rows", n);
    /* [4, size]: each rank's byte offset and size in X, then in codes */
    size_t *parts = comm && st == DML_OK ? malloc(4 * (size_t)size * sizeof *parts) : NULL;
    if (comm && st == DML_OK && !parts)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory");
    if ((st = all_ok(comm, st, err)) == DML_OK && comm) {
        size_t *off = parts, *bytes = parts + size, *off_c = parts + 2 * size,
               *bytes_c = parts + 3 * size;
        for (int k = 0; k < size; k++) {
            size_t l, h;
            shard(n, k, size, &l, &h);
            off[k] = l * dim * sizeof(float);
            bytes[k] = (h - l) * dim * sizeof(float);
            off_c[k] = l * cs;
            bytes_c[k] = (h - l) * cs;
        }
        if (rank == 0) {
            memcpy(x_all, x, (hi - lo) * dim * sizeof(float));
            if (codes)
                memcpy(codes_all, codes, (hi - lo) * cs);
        }
        dml_cli_mpi_collect(comm, x_all, x, off, bytes);
        if (a->pq)
            dml_cli_mpi_collect(comm, codes_all, codes, off_c, bytes_c);
    }
    free(parts);
    if (st == DML_OK && rank == 0) {
        dml_embeddings e = {a->model, a->input, a->tower ? "encoder_b" : "encoder", n, (int)dim,
                            comm ? x_all : x, comm ? codes_all : codes, cs, ds->y};
        st = dml_embeddings_write(a->output, &e, err);
        if (st == DML_OK)
            printf("%s: %d rows -> %d-dim embeddings%s%s\n", a->output, ds->n, e.dim,
                   a->pq ? " and PQ codes" : "", comm ? " (sharded over the ranks)" : "");
    }
    free(x);
    free(codes);
    free(x_all);
    free(codes_all);
    return st;
}

int dml_cli_encode(int argc, char **argv)
{
    args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    dml_model_file mf;
    dml_dataset ds;
    memset(&mf, 0, sizeof mf);
    memset(&ds, 0, sizeof ds);
    dml_error err = {0};
    const dml_comm *comm = dml_cli_mpi_open(&argc, &argv);
    dml_status st = run(&a, comm, &mf, &ds, &err);
    char name[64] = "encode";
    if (comm)
        snprintf(name, sizeof name, "encode (rank %d of %d)", comm->rank, comm->size);
    if (st != DML_OK)
        dml_cli_report_error(name, st, &err);
    dml_cli_mpi_close();
    dml_dataset_free(&ds);
    dml_model_file_free(&mf);
    return dml_status_exit_code(st);
}
