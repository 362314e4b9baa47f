/* dml eval's work as a library call: the queries and the database embedded by the model (the
 * database read whole, or streamed in chunks over the memory limit), the ground truth read, then
 * dml_eval_run over them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eval/eval.h"

/* Rows [lo, hi) of ds through a tower into a new *z [hi - lo, dim]. */
static dml_status embed_rows(const dml_eval_model *m, int tower, const dml_dataset *ds, int lo,
                             int hi, float **z, dml_error *err)
{
    int second = tower == 1 && ds->x_b;
    int d = second ? ds->d_b : ds->d, d_in = tower ? m->d_in_b : m->d_in;
    *z = NULL;
    if (d != d_in)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "rows have %d features, but the model's %s takes %d", d,
                             tower ? "encoder_b" : "encoder", d_in);
    *z = malloc(((size_t)(hi - lo) * m->dim + 1) * sizeof **z);
    const float *x = (second ? ds->x_b : ds->x) + (size_t)lo * d;
    dml_status st = !*z ? DML_ERR_NOMEM
                    : hi == lo ? DML_OK
                               : m->embed(m->ctx, tower, x, (size_t)(hi - lo), *z);
    if (st != DML_OK) {
        free(*z);
        *z = NULL;
        return dml_error_set(err, st, ds->source, 0, 0, "out of memory encoding %d rows",
                             hi - lo);
    }
    return DML_OK;
}

dml_status dml_eval_model_embed(const dml_eval_model *m, int tower, const dml_dataset *ds,
                                float **z, dml_error *err)
{
    return embed_rows(m, tower, ds, 0, ds->n, z, err);
}

/* Queries [lo, hi) (hi -1: every one) embedded by the model; for a dual encoder, ds then holds
 * both views (a row's halves when it has one view), and *zp their paired references unless the
 * database is streamed. */
static dml_status embed_queries(const dml_eval_model *m, dml_dataset *ds, int paired_stream,
                                int lo, int hi, float **zq, float **zp, dml_error *err)
{
    *zp = NULL;
    hi = hi < 0 ? ds->n : hi;
    if (!m->d_in_b)
        return embed_rows(m, 0, ds, lo, hi, zq, err);
    if (!ds->x_b) { /* two views from one row: its halves */
        dml_dataset halves;
        dml_status st = dml_dataset_halves(ds, &halves, err);
        if (st != DML_OK)
            return st;
        dml_dataset_free(ds);
        *ds = halves;
    }
    dml_status st = embed_rows(m, 0, ds, lo, hi, zq, err);
    if (st == DML_OK && paired_stream && ds->d_b != m->d_in_b)
        return dml_error_set(err, DML_ERR_DATA, ds->source, 0, 0,
                             "rows have %d features, but the model's encoder_b takes %d", ds->d_b,
                             m->d_in_b);
    return st == DML_OK && !paired_stream ? embed_rows(m, 1, ds, lo, hi, zp, err) : st;
}

/* This process's database rows [lo, hi) embedded: read from the file (rows) or in memory (db). */
static dml_status embed_db_slice(const dml_eval_model *m, dml_rows *rows, const dml_dataset *db,
                                 int lo, int hi, float **z, dml_error *err)
{
    if (db)
        return embed_rows(m, 0, db, lo, hi, z, err);
    float *x = malloc(((size_t)(hi - lo) * rows->d + 1) * sizeof *x);
    *z = malloc(((size_t)(hi - lo) * m->dim + 1) * sizeof **z);
    dml_status st = !x || !*z ? dml_error_set(err, DML_ERR_NOMEM, rows->source, 0, 0,
                                              "out of memory for database rows %d..%d", lo, hi - 1)
                              : dml_rows_read(rows, lo, hi - lo, x, err);
    if (st == DML_OK && hi > lo && (st = m->embed(m->ctx, 0, x, (size_t)(hi - lo), *z)) != DML_OK)
        dml_error_set(err, st, rows->source, 0, 0, "out of memory embedding rows %d..%d", lo,
                      hi - 1);
    free(x);
    if (st != DML_OK) {
        free(*z);
        *z = NULL;
    }
    return st;
}

/* Every query's embedding, gathered from the processes' slices into a new *all. */
static dml_status gather_queries(const dml_eval_model_request *req, const dml_eval_slices *sl,
                                 int n, const float *mine, float **all, dml_error *err)
{
    int dim = req->model->dim, *begin = malloc(((size_t)req->shard_size + 1) * sizeof *begin);
    *all = malloc(((size_t)n * dim + 1) * sizeof **all);
    if (!begin || !*all) {
        free(begin);
        free(*all);
        *all = NULL;
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                             "out of memory gathering %d query embeddings", n);
    }
    for (int r = 0; r < req->shard_size; r++)
        dml_eval_slice(n, r, req->shard_size, &begin[r], &begin[r + 1]);
    memcpy(*all + (size_t)sl->q_lo * dim, mine, (size_t)(sl->q_hi - sl->q_lo) * dim * sizeof **all);
    req->share_rows(req->share_ctx, *all, (size_t)dim * sizeof **all, begin);
    free(begin);
    return DML_OK;
}

/* What embeds the chunks of a streamed database: rows read from the database file, or (a dual
 * encoder) the queries' second views. */
typedef struct stream_src {
    const dml_eval_model *m;
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
    dml_status st = src->m->embed(src->m->ctx, src->q ? 1 : 0, x, (size_t)count, z);
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

/* Half the machine's RAM: the memory limit when the request gives none. */
static double default_limit(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (double)pages * (double)size / 2.0 : 2.0 * (1 << 30);
}

/* Label metrics over no query, or over references of one label (every ranking then starts with
 * a row of the query's label, and every kNN vote is for it), measure nothing: refused rather
 * than reported as n/a or 1.0. */
static dml_status check_scored(const char *queries, const char *db, const dml_eval_result *res,
                               dml_error *err)
{
    if (res->n_classes == 0) /* no label metric */
        return DML_OK;
    if (res->scored_queries == 0 && !res->protocol2)
        return dml_error_set(err, DML_ERR_DATA, queries, 0, 0,
                             "no row shares its label with another (%d rows, %d labels), so no "
                             "query can be scored by the label metrics (map_at_r, precision_at_1, "
                             "...): expected two rows or more of a label",
                             res->n_queries, res->n_classes);
    if (res->scored_queries == 0)
        return dml_error_set(err, DML_ERR_DATA, queries, 0, 0,
                             "none of the %d queries has a label found in the database %s, so "
                             "none can be scored by the label metrics (map_at_r, "
                             "knn_accuracy, ...): expected queries of the database's labels",
                             res->n_queries, db);
    if (res->n_classes == 1)
        return dml_error_set(err, DML_ERR_DATA, db, 0, 0,
                             "every %s row has the same label, so every label metric (map_at_r, "
                             "knn_accuracy, ...) would be 1.0 whatever the model: expected rows "
                             "of two labels or more",
                             res->protocol2 ? "database" : "query");
    return DML_OK;
}

/* Under sharding each process embeds its slice of the queries and of the database and ranks
 * its queries among every process's references (eval/shard.c); the per-query values are
 * shared, so each averages the same numbers one process does. A database over the memory limit
 * is streamed, on one process only. */
dml_status dml_eval_model_run(const dml_eval_model_request *req, dml_eval_result *res,
                              dml_error *err)
{
    const dml_eval_model *m = req->model;
    dml_dataset *q = req->queries, db = {0};
    dml_rows rows = {0};
    dml_neighbors truth = {0};
    float *zq = NULL, *zp = NULL, *zd = NULL;
    stream_src src = {0};
    dml_eval_stream stream = {0};
    int streamed = 0, n_db = 0, dim = m->dim, paired = m->d_in_b > 0;
    int has_db = req->db_spec || req->db;
    const char *db_name = req->db_spec ? req->db_spec : req->db ? req->db->source : q->source;
    double limit = req->memory_limit > 0 ? req->memory_limit : default_limit(), need = 0.0;
    size_t code_size = req->pq && m->pq ? dml_pq_code_size(m->pq) : 0;
    dml_status st = DML_OK;
    if (req->pq && !m->pq)
        st = dml_error_set(err, DML_ERR_USAGE, m->name, 0, 0,
                           "PQ metrics asked for, but the model has no codebooks");
    else if ((req->truth_spec || req->truth) && !has_db)
        st = dml_error_set(err, DML_ERR_USAGE, req->truth ? req->truth->source : req->truth_spec,
                           0, 0,
                           "a ground truth needs a database (the rows it names)");
    dml_input_scale scale;
    int check_scale = req->log && m->scale && m->scale->mode[0]; /* unknown: nothing to say */
    if (st == DML_OK && check_scale &&
        (st = dml_input_scale_measure(&scale, q, 0, NULL, q->n, err)) == DML_OK)
        dml_input_scale_warn(req->log, "eval", m->name, m->scale, &scale, q->source);
    if (st == DML_OK && paired) { /* the database: the queries' positives, their raw rows held */
        n_db = q->n;
        need = (double)q->n * ((double)dim * sizeof(float) + (double)code_size);
    } else if (st == DML_OK && req->db_spec &&
               (st = dml_rows_open(req->db_spec, &rows, err)) == DML_OK) {
        n_db = rows.n;
        need = dml_rows_bytes(&rows) + (double)rows.n * ((double)dim * sizeof(float) + code_size);
        if (rows.d != m->d_in)
            st = dml_error_set(err, DML_ERR_DATA, rows.file, 0, 0,
                               "rows have %d features, but the model's encoder takes %d", rows.d,
                               m->d_in);
        else if (check_scale && (st = dml_input_scale_of_rows(&scale, &rows, err)) == DML_OK)
            dml_input_scale_warn(req->log, "eval", m->name, m->scale, &scale, req->db_spec);
    }
    /* Sharded, a rank holds about its share of the rows. */
    double share = req->shard_size > 1 && req->share_rows ? need / req->shard_size : need;
    streamed = st == DML_OK && (paired || req->db_spec) && (req->stream || share > limit);
    if (streamed && req->shard_size > 1)
        st = dml_error_set(err, DML_ERR_USAGE, db_name, 0, 0,
                           "the database is searched in chunks (%s), on one process only: run "
                           "dml eval without mpirun%s",
                           req->stream ? "--stream" : "it is over --memory-limit",
                           req->stream ? "" : ", or raise --memory-limit");
    int sharded = st == DML_OK && !streamed && req->shard_size > 1 && req->share_rows;
    dml_eval_slices sl = {0};
    if (sharded) { /* protocol 1 and paired: the references are the queries' rows */
        dml_eval_slice(q->n, req->shard_rank, req->shard_size, &sl.q_lo, &sl.q_hi);
        sl.db_lo = sl.q_lo;
        sl.db_hi = sl.q_hi;
        if (has_db && !paired)
            dml_eval_slice(req->db_spec ? rows.n : req->db->n, req->shard_rank, req->shard_size,
                           &sl.db_lo, &sl.db_hi);
        if (req->log)
            fprintf(req->log, "dml eval: %d processes; this one embeds queries [%d, %d) of %d "
                    "and references [%d, %d)\n", req->shard_size, sl.q_lo, sl.q_hi, q->n,
                    sl.db_lo, sl.db_hi);
    }
    if (st == DML_OK)
        st = embed_queries(m, q, streamed, sl.q_lo, sharded ? sl.q_hi : -1, &zq, &zp, err);
    if (st == DML_OK && streamed) {
        int align = DML_STREAM_ALIGN;
        stream.chunk = req->chunk > 0
                           ? (req->chunk + align - 1) / align * align
                           : dml_eval_stream_chunk(chunk_budget(limit), q->n, paired ? 0 : rows.d,
                                                   dim, (int)code_size,
                                                   (paired ? q->y : rows.y) != NULL);
        src = (stream_src){.m = m, .rows = paired ? NULL : &rows, .q = paired ? q : NULL};
        size_t chunk = stream.chunk < n_db ? (size_t)stream.chunk : (size_t)n_db;
        if (!paired && !(src.x = malloc(chunk * (size_t)rows.d * sizeof *src.x)))
            st = dml_error_set(err, DML_ERR_NOMEM, req->db_spec, 0, 0,
                               "out of memory for a chunk of %zu rows", chunk);
        stream.embed = embed_chunk;
        stream.ctx = &src;
        stream.progress = req->log;
        if (req->log)
            fprintf(req->log, "dml eval: %d database rows (%.0f MB in memory, limit %.0f MB) "
                    "searched in chunks of %d rows\n", n_db, need / (1 << 20), limit / (1 << 20),
                    stream.chunk);
    } else if (st == DML_OK && has_db && !paired && sharded) {
        st = embed_db_slice(m, &rows, req->db_spec ? NULL : req->db, sl.db_lo, sl.db_hi, &zd, err);
    } else if (st == DML_OK && has_db && !paired) {
        if (req->db_spec) /* read once: whole formats are already in memory */
            st = dml_rows_take(&rows, &db, err);
        if (st == DML_OK)
            st = dml_eval_model_embed(m, 0, req->db_spec ? &db : req->db, &zd, err);
    }
    char beside[4200];
    const char *truth_spec = req->truth_spec;
    const dml_neighbors *nb = req->truth ? req->truth : &truth;
    if (!truth_spec && !req->truth && req->db_spec &&
        dml_neighbors_beside(q->source, beside, sizeof beside)) {
        truth_spec = beside;
        if (req->log)
            fprintf(req->log, "dml eval: ground truth from %s (nn_recall_at_k)\n", truth_spec);
    }
    if (st == DML_OK && truth_spec)
        st = dml_neighbors_open(truth_spec, &truth, err);
    if (st == DML_OK && nb->ids && nb->n != q->n)
        st = dml_error_set(err, DML_ERR_DATA, nb->source, 0, 0,
                           "neighbours for %d queries, but %s has %d rows", nb->n, q->source,
                           q->n);
    int failed = req->first_failure ? req->first_failure(req->share_ctx, st != DML_OK) : -1;
    if (failed >= 0 && st == DML_OK) /* nobody waits for a rank that stopped */
        st = dml_error_set(err, DML_ERR_IO, NULL, 0, 0,
                           "rank %d failed (its own message says why)", failed);
    if (st == DML_OK) {
        dml_eval_request er = {.d = dim, .queries = zq, .q_labels = q->y, .n_queries = q->n,
                               .distance = m->distance, .pq = req->pq ? m->pq : NULL,
                               .metrics = req->metrics, .n_metrics = req->n_metrics,
                               .seed = m->seed, .stream = streamed ? &stream : NULL,
                               .shard_rank = req->shard_rank, .shard_size = req->shard_size,
                               .share_rows = req->share_rows, .share_ctx = req->share_ctx,
                               .slices = sharded ? &sl : NULL};
        if (paired) {
            er.db = zp;
            er.db_labels = q->y;
            er.n_db = q->n;
            er.paired = 1;
        } else if (has_db) {
            er.db = zd;
            int file_rows = streamed || (sharded && req->db_spec); /* rows still open */
            er.db_labels = file_rows ? rows.y : req->db_spec ? db.y : req->db->y;
            er.n_db = file_rows ? n_db : req->db_spec ? db.n : req->db->n;
            er.truth = nb->ids;
            er.truth_k = nb->k;
        }
        st = dml_eval_run(&er, res, err);
        if (st == DML_OK)
            st = check_scored(q->source, db_name, res, err);
    }
    if (st == DML_OK && req->embeddings && sharded)
        st = gather_queries(req, &sl, q->n, zq, req->embeddings, err);
    else if (st == DML_OK && req->embeddings) {
        *req->embeddings = zq;
        zq = NULL;
    }
    free(src.x);
    free(zq);
    free(zp);
    free(zd);
    dml_dataset_free(&db);
    dml_rows_close(&rows);
    dml_neighbors_free(&truth);
    return st;
}
