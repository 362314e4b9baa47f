/* dml eval MODEL.h5 --data SPEC [--db SPEC [--truth SPEC]] [--pq] [--metrics a,b,...] [--json]
 *          [--projector DIR] [--memory-limit SIZE] [--stream] [--chunk ROWS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/size.h"

#include "eval/metric_table.h"
#include "cli/cli.h"
#include "serve/serve.h"

static const char HELP[] =
    "usage: dml eval MODEL.h5 --data SPEC [--db SPEC [--truth SPEC]] [--pq] [--metrics a,b,...]\n"
    "                [--json] [--projector DIR] [--memory-limit SIZE] [--stream] [--chunk ROWS]\n"
    "\n"
    "Embeds SPEC with the model and reports retrieval metrics (docs: shared metrics.md).\n"
    "Without --db every row is a query searched among the others (self excluded); with --db\n"
    "the rows of SPEC are queries searched in the database SPEC. A dual encoder embeds the\n"
    "first view (or the left half of each row) as queries and the second view (or the right\n"
    "half) as their references: recall_at_k and mrr_at_10.\n"
    "\n"
    "  --data SPEC        the queries (a data spec: file.h5[:/X], IDX, .npy, .fvecs, .csv,\n"
    "                     fashion-mnist:train|test)\n"
    "  --db SPEC          a database to search (protocol 2: map_all, knn_accuracy)\n"
    "  --truth SPEC       each query's true nearest database rows by the raw vectors\n"
    "                     (file.ivecs, or file.hdf5:/neighbors): nn_recall_at_1/10/100, what\n"
    "                     the encoder (and with --pq its codes) keep of exact search. An\n"
    "                     ann-benchmarks file's own is used by default: --data F.hdf5:/test\n"
    "                     --db F.hdf5:/train reads F.hdf5:/neighbors\n"
    "  --pq               also every retrieval metric on the model's PQ codes (ADC)\n"
    "  --metrics LIST     comma-separated metric keys (default: all the data allow)\n"
    "  --json             one JSON object instead of the table\n"
    "  --projector DIR    write DIR/vectors.tsv and DIR/metadata.tsv (Embedding Projector)\n"
    "  --memory-limit SIZE  a database whose rows and embeddings (and codes) would take more\n"
    "                     (e.g. 512MB, 2GB; powers of 1024; a bare number is MB, as in a\n"
    "                     config's data.memory_limit; default half the machine's RAM)\n"
    "                     is read, embedded and searched in chunks sized to SIZE, each query\n"
    "                     keeping its top-k: the same numbers, without map_all, and without\n"
    "                     map_at_r / r_precision when a label has over 1000 database rows.\n"
    "                     One process only: under mpirun each rank holds its share of the\n"
    "                     rows, compared with the limit, and chunks are refused\n"
    "  --stream           search the database in chunks whatever its size\n"
    "  --chunk ROWS       database rows per chunk (rounded up to a multiple of 65536; default\n"
    "                     from --memory-limit)\n"
    "  -h, --help         this text\n"
    "\n"
    "Metric keys (--metrics), each computed when the data allow it:\n";

/* HELP, then a line per row of the metric table. */
static void help(FILE *f)
{
    fputs(HELP, f);
    for (int m = 0; m < DML_METRIC_COUNT; m++)
        fprintf(f, "  %-18s %s\n", dml_metric_rows[m].name, dml_metric_rows[m].doc);
}

typedef struct args {
    const char *model, *data, *db, *truth, *projector;
    int pq, json, stream, chunk;
    double memory_limit; /* bytes; 0: half the RAM */
    dml_eval_metric_list metrics;
} args;

static int parse(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            help(stdout);
            return 0;
        } else if (!strcmp(s, "--pq")) {
            a->pq = 1;
        } else if (!strcmp(s, "--json")) {
            a->json = 1;
        } else if (!strcmp(s, "--stream")) {
            a->stream = 1;
        } else if (!strcmp(s, "--memory-limit") && has_value) {
            if (!dml_size_parse(argv[++i], &a->memory_limit) || a->memory_limit < 1.0) {
                fprintf(stderr, "dml eval: --memory-limit %s: expected a size such as 512MB or 2GB "
                                "(a bare number is MB)\n", argv[i]);
                return -1;
            }
        } else if (!strcmp(s, "--chunk") && has_value) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1L << 30) {
                fprintf(stderr, "dml eval: --chunk %s: expected a number of rows >= 1\n", argv[i]);
                return -1;
            }
            a->chunk = (int)v;
        } else if (!strcmp(s, "--data") && has_value) {
            a->data = argv[++i];
        } else if (!strcmp(s, "--db") && has_value) {
            a->db = argv[++i];
        } else if (!strcmp(s, "--truth") && has_value) {
            a->truth = argv[++i];
        } else if (!strcmp(s, "--projector") && has_value) {
            a->projector = argv[++i];
        } else if (!strcmp(s, "--metrics") && has_value) {
            dml_error err = {0};
            if (dml_eval_metric_list_parse(argv[++i], "--metrics", &a->metrics, &err) != DML_OK) {
                dml_cli_report_error("eval", err.code, &err);
                return -1;
            }
        } else if (s[0] != '-' && !a->model) {
            a->model = s;
        } else {
            fprintf(stderr, "dml eval: unexpected argument '%s'\n\n", s);
            help(stderr);
            return -1;
        }
    }
    if (!a->model || !a->data || (a->truth && !a->db)) {
        fprintf(stderr, "dml eval: %s\n\n",
                !a->model ? "which model?" : !a->data ? "--data is required"
                                                      : "--truth needs --db (the rows it names)");
        help(stderr);
        return -1;
    }
    return 1;
}

/* dml_eval_model_request.first_failure over MPI (ctx: the dml_comm). */
static int first_failure(void *ctx, int failed)
{
    return dml_cli_mpi_first_failure(ctx, failed);
}

/* Under mpirun each rank embeds its slice of the rows and ranks its share of the queries
 * (docs/scale.md); rank 0 prints. */
static dml_status run(const args *a, const dml_comm *comm, dml_eval_result *res, dml_error *err)
{
    dml_model_file mf;
    dml_dataset q = {0};
    float *z = NULL;
    int quiet = comm && comm->rank > 0;
    dml_status st = dml_model_file_read(a->model, &mf, err);
    if (st != DML_OK)
        return st;
    if (a->pq && !mf.pq.d)
        st = dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0, "--pq: the model has no codebooks");
    if (st == DML_OK)
        st = dml_dataset_open(a->data, &q, err);
    if (st == DML_OK) {
        dml_eval_model model;
        dml_model_file_eval_model(&mf, a->model, &model);
        dml_eval_model_request req = {
            .model = &model, .queries = &q, .db_spec = a->db, .truth_spec = a->truth,
            .pq = a->pq, .metrics = a->metrics.n ? a->metrics.keys : NULL,
            .n_metrics = a->metrics.n, .memory_limit = a->memory_limit, .stream = a->stream,
            .chunk = a->chunk, .log = quiet ? NULL : stderr,
            .embeddings = a->projector ? &z : NULL}; /* sharded: gathered whole */
        if (comm) {
            req.shard_rank = comm->rank;
            req.shard_size = comm->size;
            req.share_rows = dml_cli_mpi_share_rows;
            req.first_failure = first_failure;
            req.share_ctx = (void *)comm;
        }
        st = dml_eval_model_run(&req, res, err);
    } else if (comm) { /* the other ranks wait for this one before their search */
        dml_cli_mpi_first_failure(comm, 1);
    }
    if (st == DML_OK && a->projector && !quiet) {
        st = dml_mkdirs(a->projector, err);
        if (st == DML_OK)
            st = dml_projector_write(a->projector, z, q.y, q.n, dml_mlp_dim_out(&mf.net.encoder),
                                     err);
    }
    free(z);
    dml_dataset_free(&q);
    dml_model_file_free(&mf);
    return st;
}

int dml_cli_eval(int argc, char **argv)
{
    args a;
    int ok = parse(argc, argv, &a);
    if (ok <= 0)
        return ok == 0 ? 0 : 2;
    dml_eval_result res;
    dml_error err = {0};
    const dml_comm *comm = dml_cli_mpi_open(&argc, &argv);
    dml_status st = run(&a, comm, &res, &err);
    char name[64] = "eval";
    if (comm)
        snprintf(name, sizeof name, "eval (rank %d of %d)", comm->rank, comm->size);
    int quiet = comm && comm->rank > 0;
    dml_cli_mpi_close();
    if (st != DML_OK) {
        dml_cli_report_error(name, st, &err);
        return dml_status_exit_code(st);
    }
    if (quiet)
        return 0;
    if (a.json) {
        dml_eval_write_json(&res, stdout);
        fputc('\n', stdout);
    } else {
        dml_eval_print_table(&res, stdout);
    }
    return 0;
}
