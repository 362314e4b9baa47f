/* dml eval MODEL.h5 --data SPEC [--db SPEC [--truth SPEC]] [--pq] [--metrics a,b,...] [--json]
 *          [--projector DIR] [--memory-limit SIZE] [--stream] [--chunk ROWS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/rows.h"
#include "data/size.h"

#include "eval/eval.h"
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
    "                     One process only (not under mpirun)\n"
    "  --stream           search the database in chunks whatever its size\n"
    "  --chunk ROWS       database rows per chunk (rounded up to a multiple of 65536; default\n"
    "                     from --memory-limit)\n"
    "  -h, --help         this text\n";

typedef struct args {
    const char *model, *data, *db, *truth, *projector;
    int pq, json, stream, chunk;
    double memory_limit; /* bytes; 0: half the RAM */
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

/* Label metrics over no query, or over references of one label (every ranking then starts with
 * a row of the query's label, and every kNN vote is for it), measure nothing: refused rather
 * than printed as n/a or 1.0. */
static dml_status check_scored(const args *a, const dml_eval_result *res, dml_error *err)
{
    if (res->n_classes == 0) /* no label metric */
        return DML_OK;
    if (res->scored_queries == 0 && !res->protocol2)
        return dml_error_set(err, DML_ERR_DATA, a->data, 0, 0,
                             "no row shares its label with another (%d rows, %d labels), so no "
                             "query can be scored by the label metrics (map_at_r, precision_at_1, "
                             "...): expected two rows or more of a label",
                             res->n_queries, res->n_classes);
    if (res->scored_queries == 0)
        return dml_error_set(err, DML_ERR_DATA, a->data, 0, 0,
                             "none of the %d queries has a label found in the database %s, so "
                             "none can be scored by the label metrics (map_at_r, "
                             "knn_accuracy, ...): expected queries of the database's labels",
                             res->n_queries, a->db ? a->db : a->data);
    if (res->n_classes == 1)
        return dml_error_set(err, DML_ERR_DATA, a->db ? a->db : a->data, 0, 0,
                             "every %s row has the same label, so every label metric (map_at_r, "
                             "knn_accuracy, ...) would be 1.0 whatever the model: expected rows "
                             "of two labels or more",
                             res->protocol2 ? "database" : "query");
    return DML_OK;
}

/* Queries embedded by the model; for a dual encoder, ds then holds both views (a row's halves
 * when it has one view), and *zp their paired references unless the database is streamed. */
static dml_status embed_queries(const dml_model_file *mf, dml_dataset *ds, int paired_stream,
                                float **zq, float **zp, dml_error *err)
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
    if (st == DML_OK && paired_stream && ds->d_b != dml_mlp_dim_in(&mf->net.encoder_b))
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "rows have %d features, but the model's encoder_b takes %d", ds->d_b,
                             dml_mlp_dim_in(&mf->net.encoder_b));
    return st == DML_OK && !paired_stream ? dml_model_file_encode_dataset(mf, 1, ds, zp, err) : st;
}

/* What embeds the chunks of a streamed database: rows read from the --db file, or (a dual
 * encoder) the queries' second views. */
typedef struct stream_src {
    const dml_model_file *mf;
    dml_rows *rows;       /* NULL: paired */
    const dml_dataset *q; /* paired: its x_b */
    float *x;             /* [chunk, rows->d] the rows read, sized once */
} stream_src;

static dml_status embed_chunk(void *ctx, int lo, int count, float *z, dml_error *err)
{
    stream_src *src = ctx;
    const float *x = src->q ? src->q->x_b + (size_t)lo * src->q->d_b : src->x;
    if (!src->q) {
        dml_status st = dml_rows_read(src->rows, lo, count, src->x, err);
        if (st != DML_OK)
            return st;
    }
    dml_status st = dml_model_file_encode(src->mf, src->q ? 1 : 0, x, (size_t)count, z);
    return st == DML_OK ? DML_OK
                        : dml_error_set(err, st, src->q ? src->q->source : src->rows->source, 0, 0,
                                        "out of memory embedding rows %d..%d", lo, lo + count - 1);
}

/* What the chunks may take of the limit: not what the process already holds (the program, its
 * libraries, the model and the queries: the resident set now, from /proc/self/statm), nor
 * OpenBLAS's GEMM buffers, touched on the first search. */
#define BLAS_RESERVE (32.0 * (1 << 20))
static double chunk_budget(double limit)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    if (f)
        fclose(f);
    return limit - (double)resident * (double)sysconf(_SC_PAGESIZE) - BLAS_RESERVE;
}

/* Half the machine's RAM: what --memory-limit is without a value. */
static double default_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * (double)size / 2.0 : 2.0 * (1 << 30);
}

/* Under mpirun every rank embeds every row and ranks its share of the queries (whole search
 * blocks); the per-query values are shared, so each rank averages the same numbers one
 * process does, and rank 0 prints them. A database over the memory limit is streamed, on one
 * process only. */
static dml_status run(const args *a, const dml_comm *comm, dml_eval_result *res, dml_error *err)
{
    dml_model_file mf;
    dml_dataset q = {0}, db = {0};
    dml_rows rows = {0};
    dml_neighbors truth = {0};
    float *zq = NULL, *zp = NULL, *zd = NULL;
    stream_src src = {0};
    dml_eval_stream stream = {0};
    int quiet = comm && comm->rank > 0, streamed = 0, n_db = 0;
    double limit = a->memory_limit > 0 ? a->memory_limit : default_limit(), need = 0.0;
    dml_status st = dml_model_file_read(a->model, &mf, err);
    if (st != DML_OK)
        return st;
    int dim = dml_mlp_dim_out(&mf.net.encoder), paired = mf.net.type == DML_NET_DUAL;
    size_t code_size = a->pq && mf.pq.d ? dml_pq_code_size(&mf.pq) : 0;
    if (a->pq && !mf.pq.d)
        st = dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0, "--pq: the model has no codebooks");
    if (st == DML_OK)
        st = dml_dataset_open(a->data, &q, err);
    dml_input_scale scale;
    int check_scale = !quiet && mf.scale.mode[0]; /* a model without the record: nothing to say */
    if (st == DML_OK && check_scale &&
        (st = dml_input_scale_measure(&scale, &q, 0, NULL, q.n, err)) == DML_OK)
        dml_cli_warn_scale("eval", a->model, &mf, 0, &scale, a->data);
    if (st == DML_OK && paired) { /* the database: the queries' positives, their raw rows held */
        n_db = q.n;
        need = (double)q.n * ((double)dim * sizeof(float) + (double)code_size);
    } else if (st == DML_OK && a->db && (st = dml_rows_open(a->db, &rows, err)) == DML_OK) {
        n_db = rows.n;
        need = dml_rows_bytes(&rows) + (double)rows.n * ((double)dim * sizeof(float) + code_size);
        if (rows.d != dml_mlp_dim_in(&mf.net.encoder))
            st = dml_error_set(err, DML_ERR_DATA, rows.file, 0, 0,
                               "rows have %d features, but the model's encoder takes %d", rows.d,
                               dml_mlp_dim_in(&mf.net.encoder));
        else if (check_scale && (st = dml_input_scale_of_rows(&scale, &rows, err)) == DML_OK)
            dml_cli_warn_scale("eval", a->model, &mf, 0, &scale, a->db);
    }
    streamed = st == DML_OK && (paired || a->db) && (a->stream || need > limit);
    if (streamed && comm && comm->size > 1)
        st = dml_error_set(err, DML_ERR_USAGE, a->db ? a->db : a->data, 0, 0,
                           "the database is searched in chunks (%s), on one process only: run "
                           "dml eval without mpirun%s",
                           a->stream ? "--stream" : "it is over --memory-limit",
                           a->stream ? "" : ", or raise --memory-limit");
    if (st == DML_OK)
        st = embed_queries(&mf, &q, streamed, &zq, &zp, err);
    if (st == DML_OK && streamed) {
        stream.chunk = a->chunk > 0 ? (a->chunk + DML_STREAM_ALIGN - 1) / DML_STREAM_ALIGN * DML_STREAM_ALIGN
                                    : dml_eval_stream_chunk(chunk_budget(limit), q.n, paired ? 0 : rows.d, dim,
                                                            (int)code_size,
                                                            (paired ? q.y : rows.y) != NULL);
        src = (stream_src){.mf = &mf, .rows = paired ? NULL : &rows, .q = paired ? &q : NULL};
        size_t chunk = stream.chunk < n_db ? (size_t)stream.chunk : (size_t)n_db;
        if (!paired && !(src.x = malloc(chunk * (size_t)rows.d * sizeof *src.x)))
            st = dml_error_set(err, DML_ERR_NOMEM, a->db, 0, 0,
                               "out of memory for a chunk of %zu rows", chunk);
        stream.embed = embed_chunk;
        stream.ctx = &src;
        stream.progress = quiet ? NULL : stderr;
        if (!quiet)
            fprintf(stderr, "dml eval: %d database rows (%.0f MB in memory, limit %.0f MB) searched "
                    "in chunks of %d rows\n", n_db, need / (1 << 20), limit / (1 << 20),
                    stream.chunk);
    } else if (st == DML_OK && a->db && !paired) {
        st = dml_rows_take(&rows, &db, err); /* read once: whole formats are already in memory */
        if (st == DML_OK)
            st = dml_model_file_encode_dataset(&mf, 0, &db, &zd, err);
    }
    char beside[4200];
    const char *truth_spec = a->truth;
    if (!truth_spec && a->db && dml_neighbors_beside(a->data, beside, sizeof beside)) {
        truth_spec = beside;
        if (!quiet)
            fprintf(stderr, "dml eval: ground truth from %s (nn_recall_at_k)\n", truth_spec);
    }
    if (st == DML_OK && truth_spec && (st = dml_neighbors_open(truth_spec, &truth, err)) == DML_OK &&
        truth.n != q.n)
        st = dml_error_set(err, DML_ERR_DATA, truth_spec, 0, 0,
                           "neighbours for %d queries, but %s has %d rows", truth.n, a->data, q.n);
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
                                .n_metrics = a->n_metrics, .seed = (uint64_t)mf.seed,
                                .stream = streamed ? &stream : NULL};
        if (paired) {
            req.db = zp;
            req.db_labels = q.y;
            req.n_db = q.n;
            req.paired = 1;
        } else if (a->db) {
            req.db = zd;
            req.db_labels = streamed ? rows.y : db.y;
            req.n_db = n_db;
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
        if (st == DML_OK)
            st = check_scored(a, res, err);
    }
    if (st == DML_OK && a->projector && !quiet) {
        st = dml_mkdirs(a->projector, err);
        if (st == DML_OK)
            st = dml_projector_write(a->projector, zq, q.y, q.n, dim, err);
    }
    free(src.x);
    free(zq);
    free(zp);
    free(zd);
    dml_dataset_free(&q);
    dml_dataset_free(&db);
    dml_rows_close(&rows);
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
