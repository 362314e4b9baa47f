/* dml eval MODEL.h5 --data SPEC [--db SPEC [--truth SPEC]] [--pq] [--metrics a,b,...] [--json]
 *          [--projector DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "cli/cli.h"
#include "serve/serve.h"

static const char HELP[] =
    "usage: dml eval MODEL.h5 --data SPEC [--db SPEC [--truth SPEC]] [--pq] [--metrics a,b,...]\n"
    "                [--json] [--projector DIR]\n"
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
    "  -h, --help         this text\n";

typedef struct args {
    const char *model, *data, *db, *truth, *projector;
    int pq, json;
    char *metrics[DML_EVAL_MAX_METRICS];
    int n_metrics;
    char metric_text[1024];
} args;

static int parse(int argc, char **argv, args *a)
{
    memset(a, 0, sizeof *a);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
            fputs(HELP, stdout);
            return 0;
        } else if (!strcmp(s, "--pq")) {
            a->pq = 1;
        } else if (!strcmp(s, "--json")) {
            a->json = 1;
        } else if (!strcmp(s, "--data") && has_value) {
            a->data = argv[++i];
        } else if (!strcmp(s, "--db") && has_value) {
            a->db = argv[++i];
        } else if (!strcmp(s, "--truth") && has_value) {
            a->truth = argv[++i];
        } else if (!strcmp(s, "--projector") && has_value) {
            a->projector = argv[++i];
        } else if (!strcmp(s, "--metrics") && has_value) {
            snprintf(a->metric_text, sizeof a->metric_text, "%s", argv[++i]);
            for (char *tok = strtok(a->metric_text, ","); tok && a->n_metrics < DML_EVAL_MAX_METRICS;
                 tok = strtok(NULL, ","))
                a->metrics[a->n_metrics++] = tok;
        } else if (s[0] != '-' && !a->model) {
            a->model = s;
        } else {
            fprintf(stderr, "dml eval: unexpected argument '%s'\n\n%s", s, HELP);
            return -1;
        }
    }
    if (!a->model || !a->data || (a->truth && !a->db)) {
        fprintf(stderr, "dml eval: %s\n\n%s",
                !a->model ? "which model?" : !a->data ? "--data is required"
                                                      : "--truth needs --db (the rows it names)",
                HELP);
        return -1;
    }
    return 1;
}

/* Queries (and, for a dual encoder, their paired references) embedded by the model. */
static dml_status embed_queries(const dml_model_file *mf, dml_dataset *ds, float **zq, float **zp,
                                dml_error *err)
{
    *zp = NULL;
    if (mf->net.type != DML_NET_DUAL)
        return dml_model_file_encode_dataset(mf, 0, ds, zq, err);
    if (!ds->x_b) { /* two views from one row: its halves */
        dml_dataset halves;
        dml_status st = dml_dataset_halves(ds, &halves, err);
        if (st != DML_OK)
            return st;
        dml_dataset_free(ds);
        *ds = halves;
    }
    dml_status st = dml_model_file_encode_dataset(mf, 0, ds, zq, err);
    return st == DML_OK ? dml_model_file_encode_dataset(mf, 1, ds, zp, err) : st;
}

/* Under mpirun every rank embeds every row and ranks its share of the queries (whole search
 * blocks); the per-query values are shared, so each rank averages the same numbers one
 * process does, and rank 0 prints them. */
static dml_status run(const args *a, const dml_comm *comm, dml_eval_result *res, dml_error *err)
{
    dml_model_file mf;
    dml_dataset q = {0}, db = {0};
    dml_neighbors truth = {0};
    float *zq = NULL, *zp = NULL, *zd = NULL;
    dml_status st = dml_model_file_read(a->model, &mf, err);
    if (st != DML_OK)
        return st;
    if (a->pq && !mf.pq.d)
        st = dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0, "--pq: the model has no codebooks");
    if (st == DML_OK)
        st = dml_dataset_open(a->data, &q, err);
    if (st == DML_OK)
        st = embed_queries(&mf, &q, &zq, &zp, err);
    if (st == DML_OK && a->db) {
        st = dml_dataset_open(a->db, &db, err);
        if (st == DML_OK)
            st = dml_model_file_encode_dataset(&mf, 0, &db, &zd, err);
    }
    char beside[4200];
    const char *truth_spec = a->truth;
    if (!truth_spec && a->db && dml_neighbors_beside(a->data, beside, sizeof beside)) {
        truth_spec = beside;
        if (!comm || comm->rank == 0)
            fprintf(stderr, "dml eval: ground truth from %s (nn_recall_at_k)\n", truth_spec);
    }
    if (st == DML_OK && truth_spec && (st = dml_neighbors_open(truth_spec, &truth, err)) == DML_OK &&
        truth.n != q.n)
        st = dml_error_set(err, DML_ERR_DATA, truth_spec, 0, 0,
                           "neighbours for %d queries, but %s has %d rows", truth.n, a->data, q.n);
    int dim = dml_mlp_dim_out(&mf.net.encoder);
    int failed = comm ? dml_cli_mpi_first_failure(comm, st != DML_OK) : -1;
    if (failed >= 0 && st == DML_OK) /* nobody waits for a rank that stopped */
        st = dml_error_set(err, DML_ERR_IO, NULL, 0, 0,
                           "rank %d failed (its own message says why)", failed);
    if (st == DML_OK) {
        dml_eval_request req = {.d = dim, .queries = zq, .q_labels = q.y, .n_queries = q.n,
                                .distance = strcmp(mf.metric, "inner_product") ? DML_EVAL_L2SQ
                                                                               : DML_EVAL_IP,
                                .pq = a->pq ? &mf.pq : NULL,
                                .metrics = a->n_metrics ? (const char *const *)a->metrics : NULL,
                                .n_metrics = a->n_metrics, .seed = (uint64_t)mf.seed};
        if (zp) {
            req.db = zp;
            req.db_labels = q.y;
            req.n_db = q.n;
            req.paired = 1;
        } else if (zd) {
            req.db = zd;
            req.db_labels = db.y;
            req.n_db = db.n;
            req.truth = truth.ids;
            req.truth_k = truth.k;
        }
        if (comm) {
            req.shard_rank = comm->rank;
            req.shard_size = comm->size;
            req.share_rows = dml_cli_mpi_share_rows;
            req.share_ctx = (void *)comm;
        }
        st = dml_eval_run(&req, res, err);
    }
    if (st == DML_OK && a->projector && (!comm || comm->rank == 0)) {
        st = dml_mkdirs(a->projector, err);
        if (st == DML_OK)
            st = dml_projector_write(a->projector, zq, q.y, q.n, dim, err);
    }
    free(zq);
    free(zp);
    free(zd);
    dml_dataset_free(&q);
    dml_dataset_free(&db);
    dml_neighbors_free(&truth);
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
