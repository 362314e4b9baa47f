/* dml encode MODEL.h5 INPUT OUTPUT.h5 [--pq] [--tower a|b] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/progress.h"
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
    "HDF5, .npy and .fvecs/.bvecs inputs are read, embedded and written 65536 rows at a time\n"
    "(DML_ENCODE_CHUNK_ROWS, a multiple of 4096), so a database larger than memory goes through;\n"
    "other formats are read whole. A progress bar shows on a terminal (a line per 5% otherwise).\n"
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

/* st, or an error naming the first rank that failed when this one did not. */
static dml_status all_ok(const dml_comm *c, dml_status st, dml_error *err)
{
    int failed = c ? dml_cli_mpi_first_failure(c, st != DML_OK) : -1;
    if (failed >= 0 && st == DML_OK)
        st = dml_error_set(err, DML_ERR_IO, NULL, 0, 0,
                           "rank %d failed (its own message says why)", failed);
    return st;
}

/* Under mpirun each rank streams its contiguous slice of the rows and rank 0 writes OUTPUT.h5
 * alone, through the same writer as one process. Debian's HDF5 is the serial build: parallel
 * HDF5 would need another library build for every user, and one writer keeps the file's bytes
 * the writer's own. The ranks go in rounds: each embeds its next range, then rank 0 receives the
 * ranges one rank at a time and writes each where its rows go; a failure anywhere stops every
 * rank at the round's end. One process is the same with one rank and no messages. */
static dml_status stream(const args *a, const dml_comm *comm, dml_rows_encoder *enc,
                         const dml_embeddings *e, dml_error *err)
{
    int rank = comm ? comm->rank : 0, size = comm ? comm->size : 1;
    size_t n = e->n, dim = (size_t)e->dim, cs = e->code_size, lo, hi, rounds = 0;
    size_t row_bytes = dim * sizeof(float) + cs;
    dml_embeddings_out *out = NULL;
    dml_status st = rank == 0 ? dml_embeddings_open(a->output, e, &out, err) : DML_OK;
    /* [size, chunk] rows from every rank in a round; [5, size] their offsets and sizes in all,
     * X then codes, and their first rows */
    char *all = NULL;
    size_t *parts = comm ? calloc(5 * (size_t)size, sizeof *parts) : NULL;
    if (rank == 0 && comm)
        all = malloc(size * enc->chunk * row_bytes + 1);
    if (st == DML_OK && comm && (!parts || (rank == 0 && !all)))
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for a round's rows");
    for (int k = 0; k < size; k++) {
        size_t l, h;
        dml_encode_shard(n, k, size, &l, &h);
        size_t r = (h - l + enc->chunk - 1) / enc->chunk;
        rounds = r > rounds ? r : rounds;
    }
    dml_encode_shard(n, rank, size, &lo, &hi);
    dml_progress bar;
    dml_progress_init_units(&bar, rank == 0 ? stderr : NULL, (long)n, "rows");
    size_t done = 0;
    for (size_t j = 0; j < rounds; j++) {
        size_t at = lo + j * enc->chunk < hi ? lo + j * enc->chunk : hi;
        size_t count = hi - at < enc->chunk ? hi - at : enc->chunk;
        if (st == DML_OK && count)
            st = dml_rows_encoder_run(enc, at, count, err);
        if ((st = all_ok(comm, st, err)) != DML_OK)
            break;
        if (!comm) {
            dml_embeddings_put(out, at, enc->x, enc->codes, e->labelled ? enc->rows->y + at : NULL,
                               count);
            dml_progress_count(&bar, (long)(done += count));
            continue;
        }
        /* round j: rank k's range at k * chunk rows in all (X), then its codes */
        size_t *off = parts, *bytes = parts + size, *off_c = parts + 2 * size,
               *bytes_c = parts + 3 * size, *first = parts + 4 * size;
        for (int k = 0; k < size; k++) {
            size_t l, h;
            dml_encode_shard(n, k, size, &l, &h);
            first[k] = l + j * enc->chunk < h ? l + j * enc->chunk : h;
            size_t c = h - first[k] < enc->chunk ? h - first[k] : enc->chunk;
            off[k] = (size_t)k * enc->chunk * dim * sizeof(float);
            bytes[k] = c * dim * sizeof(float);
            off_c[k] = size * enc->chunk * dim * sizeof(float) + (size_t)k * enc->chunk * cs;
            bytes_c[k] = c * cs;
        }
        if (rank == 0) {
            memcpy(all, enc->x, count * dim * sizeof(float));
            if (cs)
                memcpy(all + off_c[0], enc->codes, count * cs);
        }
        dml_cli_mpi_collect(comm, all, enc->x, off, bytes);
        if (cs)
            dml_cli_mpi_collect(comm, all, enc->codes, off_c, bytes_c);
        for (int k = 0; rank == 0 && k < size; k++) {
            size_t c = bytes[k] / (dim * sizeof(float));
            dml_embeddings_put(out, first[k], (const float *)(all + off[k]),
                               cs ? (const uint8_t *)(all + off_c[k]) : NULL,
                               e->labelled ? enc->rows->y + first[k] : NULL, c);
            done += c;
        }
        dml_progress_count(&bar, (long)done);
    }
    free(all);
    free(parts);
    dml_status closed = out ? dml_embeddings_close(out, st == DML_OK, err) : st;
    return st == DML_OK ? closed : st;
}

static dml_status run(const args *a, const dml_comm *comm, dml_model_file *mf, dml_rows *rows,
                      dml_rows_encoder *enc, dml_error *err)
{
    size_t chunk = 0;
    dml_status st = dml_rows_encoder_chunk(&chunk, err);
    /* rank 0 holds a round's ranges from every rank: keep that near one process's range */
    if (comm) {
        size_t per = chunk / (size_t)comm->size / DML_KMEANS_BLOCK * DML_KMEANS_BLOCK;
        chunk = per > DML_KMEANS_BLOCK ? per : DML_KMEANS_BLOCK;
    }
    if (st == DML_OK)
        st = dml_model_file_read(a->model, mf, err);
    if (st == DML_OK && a->tower && mf->net.type != DML_NET_DUAL)
        st = dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0,
                           "--tower b needs a dual encoder; this model is %s",
                           dml_model_file_type_name(mf->net.type));
    if (st == DML_OK && a->pq && !mf->pq.d)
        st = dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0,
                           "the model has no PQ codebooks (/pq): drop --pq");
    if (st == DML_OK)
        st = dml_rows_open(a->input, rows, err);
    dml_input_scale scale;
    /* tower b of a paired file reads its second view: the first says nothing of it */
    if (st == DML_OK && !a->tower && mf->scale.mode[0] && (!comm || comm->rank == 0) &&
        (st = dml_input_scale_of_rows(&scale, rows, err)) == DML_OK)
        dml_input_scale_warn(stderr, "encode", a->model, &mf->scale, &scale, a->input);
    if (st == DML_OK)
        st = dml_rows_encoder_init(enc, mf, a->tower, rows, a->pq, chunk, err);
    if ((st = all_ok(comm, st, err)) != DML_OK)
        return st;
    dml_embeddings e = {a->model, a->input, a->tower ? "encoder_b" : "encoder", (size_t)rows->n,
                        enc->dim, enc->code_size, rows->y != NULL};
    st = stream(a, comm, enc, &e, err);
    if (st == DML_OK && (!comm || comm->rank == 0))
        printf("%s: %d rows -> %d-dim embeddings%s%s\n", a->output, rows->n, e.dim,
               a->pq ? " and PQ codes" : "", comm ? " (sharded over the ranks)" : "");
    return st;
}

int dml_cli_encode(int argc, char **argv)
{
    args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    dml_model_file mf;
    dml_rows rows;
    dml_rows_encoder enc;
    memset(&mf, 0, sizeof mf);
    memset(&rows, 0, sizeof rows);
    memset(&enc, 0, sizeof enc);
    dml_error err = {0};
    const dml_comm *comm = dml_cli_mpi_open(&argc, &argv);
    dml_status st = run(&a, comm, &mf, &rows, &enc, &err);
    char name[64] = "encode";
    if (comm)
        snprintf(name, sizeof name, "encode (rank %d of %d)", comm->rank, comm->size);
    if (st != DML_OK)
        dml_cli_report_error(name, st, &err);
    dml_cli_mpi_close();
    dml_rows_encoder_free(&enc);
    dml_rows_close(&rows);
    dml_model_file_free(&mf);
    return dml_status_exit_code(st);
}
