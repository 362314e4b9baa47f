/* eval/: exact and PQ (ADC) nearest-neighbour search in blocks, the retrieval metrics of
 * design/metrics.md, and a run's report (report.html, Embedding Projector files).
 *
 * Searching never holds a queries x references matrix: queries go through in blocks, one GEMM
 * (or one ADC table per query) scores a block against every reference, and each query keeps a
 * bounded top-k (ties: the lower reference row first). dml_eval_model_run (eval/database.c) is
 * dml eval's whole work: a model's embeddings of the queries and a database, then the metrics.
 *
 *   dml_eval_request req = {.d = 64, .queries = z, .q_labels = y, .n_queries = n};
 *   dml_eval_result res;
 *   if (dml_eval_run(&req, &res, &err) == DML_OK)
 *       dml_eval_print_table(&res, stdout);
 */
#ifndef DML_EVAL_H
#define DML_EVAL_H

#include <stdint.h>
#include <stdio.h>

#include "nn/nn.h"

/* ---------------------------------------------------------------------------------------------
 * Search. */

/* How references are ranked. The PQ search is always squared L2 by ADC. */
typedef enum dml_eval_distance {
    DML_EVAL_L2SQ,   /* squared euclidean (the default) */
    DML_EVAL_L2,     /* euclidean: the same ranking, distances reported as sqrt */
    DML_EVAL_IP,     /* inner product: larger is nearer; reported as the product itself */
    DML_EVAL_COSINE  /* 1 - cos: rows normalised first */
} dml_eval_distance;

#define DML_SELECT_HEAP_MAX_K 128 /* larger k select by radix, with a dml_select_buf */

/* One thread's scratch for selecting among n candidates. */
typedef struct dml_select_buf {
    uint32_t *keys[3]; /* [n] sortable score bits: candidates, next candidates, chosen */
    int32_t *rows[3];  /* [n] their rows */
} dml_select_buf;

dml_status dml_select_buf_init(dml_select_buf *b, int n, dml_error *err);
void dml_select_buf_free(dml_select_buf *b);
/* The k smallest of row[n] other than row[skip] (-1: none), by (score, row): idx[k] rows and
 * score[k], nearest first. Returns how many there were (at most k); the rest of idx is -1 and of
 * score +inf. A bounded heap for small k, a radix select for large k (b's scratch). */
int dml_select_k(const float *row, int n, int skip, int k, dml_select_buf *b, int32_t *idx,
                 float *score);

/* (score, row) as one 64-bit key in (score, row) order: dml_select_k's order, one compare. */
uint64_t dml_select_key(float score, int32_t row);
/* A max-heap of such keys: moves h[i] down to its place among h[0, n). */
void dml_select_sift(uint64_t *h, int i, int n);

/* ADC top-k of up to DML_ADC_GROUP queries at once over 8-bit codes (eval/adc.c). */
#define DML_ADC_GROUP 4 /* one SSE/NEON vector of floats */
typedef struct dml_adc_work { /* one thread's scratch */
    float *tables;  /* [m * 256, DML_ADC_GROUP] the group's tables, interleaved */
    float *books;   /* [m, dsub, 256] the codebooks, each centroid a column */
    float *dist;    /* [chunk, DML_ADC_GROUP] a chunk's distances */
    uint8_t *lanes; /* [chunk] a row's lanes below their k-th, as bits */
    int16_t *hits;  /* [chunk] the rows with any */
    uint64_t *keys; /* [DML_ADC_GROUP, 4 * DML_SELECT_HEAP_MAX_K] candidates, dml_select_key's */
} dml_adc_work;

dml_status dml_adc_work_init(dml_adc_work *w, const dml_pq *pq); /* DML_ERR_NOMEM or DML_OK */
void dml_adc_work_free(dml_adc_work *w);
/* For each of queries[nq, d] (nq <= DML_ADC_GROUP), the k <= DML_SELECT_HEAP_MAX_K nearest of
 * codes[n_ref] other than row skip[q] (-1: none), by (distance, row): idx[q * k ..] and
 * score[q * k ..], found[q] of them, the rest -1 and +inf. The same results as
 * dml_pq_adc_distances then dml_select_k, query by query. pq->nbits must be 8. */
void dml_adc_topk(const dml_pq *pq, const uint8_t *codes, int n_ref, const float *queries, int nq,
                  const int *skip, int k, dml_adc_work *w, int32_t *idx, float *score, int *found);

/* A reference set prepared for blocked search, with its scratch. Scores are "smaller is
 * nearer": squared distance (L2, ADC), -x.r (IP), 1 - cos (cosine). */
/* References per GEMM call: scores are computed in tiles of this many references (from row 0)
 * and of tile_q queries, so a database scored chunk by chunk, each chunk starting at a multiple
 * of it, gets the scores a whole one does. */
#define DML_SEARCH_REF_TILE 65536

typedef struct dml_searcher {
    int d, n_ref, block, threads, max_k;
    int n_cap;             /* the most references the buffers hold (the n_ref of init) */
    int tile_q;            /* queries per GEMM call: block, unless the caller sets fewer */
    dml_eval_distance distance;
    const float *ref;      /* [n_ref, d] rows searched (ref_copy for cosine); NULL with pq */
    float *ref_copy;       /* [n_ref, d] normalised rows (cosine only) */
    float *ref_norms;      /* [n_ref] squared norms (L2 only) */
    const dml_pq *pq;      /* set: ADC over codes instead of float rows */
    const uint8_t *codes;  /* [n_ref, code_size] */
    float *q;              /* [block, d] the block's queries as scored (normalised for cosine) */
    float *tables;         /* [threads, pq->m * pq->ksub] ADC tables */
    float *scores;         /* [block, n_ref]; with pq [threads, n_ref], one row per thread */
    int n_scored;          /* queries in the last scored block */
    dml_select_buf *sel;   /* [threads] when max_k > DML_SELECT_HEAP_MAX_K, else NULL */
    dml_adc_work *adc;     /* [threads] with 8-bit codes, else NULL */
} dml_searcher;

/* Exact search over ref[n_ref, d] (not copied; it must outlive the searcher). block = queries
 * scored at once (0: as many as fit 32 MB of scores); threads <= 0: one per core; max_k = the
 * largest k dml_searcher_topk will be asked for (above DML_SELECT_HEAP_MAX_K it sizes the
 * selection scratch, 24 bytes per reference and thread). */
dml_status dml_searcher_init(dml_searcher *s, const float *ref, int n_ref, int d,
                             dml_eval_distance distance, int block, int threads, int max_k,
                             dml_error *err);
/* ADC search over packed codes[n_ref, dml_pq_code_size(pq)] (not copied). */
dml_status dml_searcher_init_pq(dml_searcher *s, const dml_pq *pq, const uint8_t *codes, int n_ref,
                                int block, int threads, int max_k, dml_error *err);
void dml_searcher_free(dml_searcher *s);
/* The queries per block dml_searcher_init picks for n_ref references (block > 0: block). */
int dml_searcher_pick_block(int block, int n_ref);
/* Other references for the same searcher, n_ref <= s->n_cap (the next chunk of a database):
 * no allocation. */
void dml_searcher_set_refs(dml_searcher *s, const float *ref, int n_ref);
void dml_searcher_set_codes(dml_searcher *s, const uint8_t *codes, int n_ref);
/* Scores queries q[n, d], n <= s->block, against every reference into s->scores (with pq:
 * takes the queries; each is scanned in dml_searcher_topk). */
void dml_searcher_score(dml_searcher *s, const float *q, int n);
/* dml_select_k over query i of the scored block, with the scratch of thread (< s->threads):
 * its k (<= max_k) best references, nearest first, skipping row skip (-1: none). Threads may
 * call it at once for different i, each with its own thread index. */
int dml_searcher_topk(dml_searcher *s, int i, int skip, int k, int thread, int32_t *idx,
                      float *score);
/* A score as the distance reported for s's kind (sqrt for L2, the product for IP). */
/* Queries searched at once by dml_searcher_topk_n for this k: DML_ADC_GROUP over 8-bit codes
 * with k <= DML_SELECT_HEAP_MAX_K, else 1. */
int dml_searcher_group(const dml_searcher *s, int k);
/* dml_searcher_topk of queries [i, i + n) of the scored block, n <= dml_searcher_group(s, k):
 * query i + j's results at idx/score + j * k, found[j] of them; skip: -1, or the row query i
 * skips (query i + j skips skip + j). */
void dml_searcher_topk_n(dml_searcher *s, int i, int n, int skip, int k, int thread, int32_t *idx,
                         float *score, int *found);
float dml_searcher_distance(const dml_searcher *s, float score);
/* The k nearest references of each query q[n_q, d]: idx[n_q, k] and dist[n_q, k] (the reported
 * distances; -1 and +inf past the references). exclude_self: the queries are the references and
 * query i never finds row i. */
dml_status dml_knn_search(dml_searcher *s, const float *q, int n_q, int k, int exclude_self,
                          int32_t *idx, float *dist, dml_error *err);

/* Runs fn(ctx, begin, end, thread) over [0, n) split into contiguous ranges on up to threads
 * threads (thread in [0, threads)); returns when all are done. */
typedef void (*dml_range_fn)(void *ctx, int begin, int end, int thread);
void dml_parallel_for(int threads, int n, dml_range_fn fn, void *ctx);
/* threads <= 0: one per online core. */
int dml_eval_threads(int threads);

/* ---------------------------------------------------------------------------------------------
 * Metrics. */

#define DML_EVAL_MAX_METRICS 48
#define DML_EVAL_KNN_K 5     /* knn_accuracy's k when the request says 0 */
#define DML_PQ_RECALL_R 10   /* pq_recall_at_r: the exact nearest neighbour in the top 10 by ADC */
#define DML_NMI_RUNS 5       /* nmi: best k-means of 5 by inertia */
#define DML_NMI_ITERS 50

typedef struct dml_eval_request {
    int d;
    const float *queries;    /* [n_queries, d] */
    const int32_t *q_labels; /* [n_queries] or NULL */
    int n_queries;
    /* NULL: protocol 1, the queries are the references, each query's self excluded.
     * Otherwise protocol 2: queries against this database, nothing excluded. */
    const float *db;          /* [n_db, d] */
    const int32_t *db_labels; /* [n_db] or NULL (protocol 2) */
    int n_db;
    int paired;               /* db row i is query i's own positive: recall_at_k, mrr_at_10 */
    dml_eval_distance distance;
    /* Set: every retrieval metric again on PQ codes of the references by ADC (pq_ keys), plus
     * quantization_mse and pq_recall_at_r. db_codes[n_ref, code_size] may give the codes;
     * NULL: encoded here. */
    const dml_pq *pq;
    const uint8_t *db_codes;
    /* Set (protocol 2): each query's true nearest database rows by the raw vectors, nearest
     * first (ann-benchmarks' neighbors): nn_recall_at_k. */
    const int32_t *truth; /* [n_queries, truth_k] */
    int truth_k;
    const char *const *metrics; /* [n_metrics] keys of metrics.md; NULL: every one the data allow */
    int n_metrics;
    int knn_k;                /* DML_EVAL_KNN_K when 0 */
    uint64_t seed;            /* nmi's k-means */
    int threads;              /* <= 0: one per core */
    int block;                /* queries per search block; 0: automatic */
    /* Sharding over processes (dml eval under mpirun); shard_size <= 1: none. Each process
     * holds its slices of the rows (slices, below); share_rows gives every process the others'
     * rows of buf [n_rows, row_bytes], process k's rows being [row_begin[k], row_begin[k + 1]).
     * The metrics are the one-process numbers (quantization_mse within double rounding). */
    int shard_rank, shard_size;
    void (*share_rows)(void *ctx, void *buf, size_t row_bytes, const int *row_begin);
    void *share_ctx;
    /* Set (protocol 2, db NULL): the database is never whole in memory; its n_db rows are
     * embedded, searched (and PQ-encoded) chunk by chunk, each query keeping a bounded top-k
     * merged across chunks (eval/stream.c). db_labels are still whole. */
    const struct dml_eval_stream *stream;
    /* Set exactly when shard_size > 1: queries holds only this process's query rows
     * [q_lo, q_hi) and db only its database rows [db_lo, db_hi) (protocol 1: the queries are
     * the references), each from dml_eval_slice; n_queries and n_db, the labels and the truth
     * stay whole. Each process scores every query, gathered block by block, against its own
     * references and keeps each query's top-k; the lists of a block are shared and each query's
     * owner merges them by (score, row) (eval/shard.c): one process's rankings, no process
     * holding a whole embedding table (but for nmi, which gathers the queries'). */
    const struct dml_eval_slices *slices;
} dml_eval_request;

/* This process's rows of sharded queries and database (dml_eval_request.slices). */
typedef struct dml_eval_slices {
    int q_lo, q_hi, db_lo, db_hi;
} dml_eval_slices;

/* Rows per unit of a slice: DML_ENCODE_BLOCK (serve/model_file.h), so each process's forward
 * passes (and PQ encodings) are ones the single process makes, with its bits. */
#define DML_EVAL_SLICE_ROWS 256
/* Process rank's rows [lo, hi) of n among size: whole units of DML_EVAL_SLICE_ROWS, split as
 * evenly as they go (dml_encode_shard's split); empty when n has fewer units than processes. */
void dml_eval_slice(int n, int rank, int size, int *lo, int *hi);
/* Every process's rows of n: process r's [begin[r], begin[r + 1]) as dml_eval_slice splits
 * them, begin[size + 1] malloc'd (the caller frees it); NULL when out of memory. */
int *dml_eval_slice_begins(int n, int size);

/* A database produced in chunks for dml_eval_run. */
#define DML_STREAM_ALIGN 65536 /* chunk rows are a multiple: DML_SEARCH_REF_TILE, DML_ENCODE_BLOCK
                               * and the PQ encoder's block all divide it */
#define DML_STREAM_MAX_R 1000 /* map_at_r, r_precision: a label with more database rows than
                               * this leaves them out (each query keeps its top max-R) */
typedef struct dml_eval_stream {
    int chunk; /* rows per chunk, rounded up to a multiple of DML_STREAM_ALIGN */
    /* Writes the embeddings of database rows [lo, lo + count) to z[count, d]; errors name the
     * database file. */
    dml_status (*embed)(void *ctx, int lo, int count, float *z, dml_error *err);
    void *ctx;
    FILE *progress; /* a bar with the rows done and an ETA; NULL: none */
} dml_eval_stream;

/* The rows per chunk that keep a streamed search within budget bytes: the queries' embeddings,
 * their top-k lists (DML_STREAM_MAX_R long with labels, 100 without; twice with codes) and the
 * scores of a block first, then per row its input (d_in floats), embedding, norm, code and
 * selection scratch. A multiple of DML_STREAM_ALIGN, at least one. */
int dml_eval_stream_chunk(double budget, int n_queries, int d_in, int dim, int code_size,
                          int labelled);

typedef struct dml_eval_value {
    char name[40]; /* "map_at_r", "pq_map_at_r", "recall_at_1", ... */
    double value;  /* NAN when every query was skipped */
} dml_eval_value;

typedef struct dml_eval_result {
    dml_eval_value values[DML_EVAL_MAX_METRICS]; /* [n_values], metrics.md's order, pq_ last */
    int n_values;
    int n_queries, n_db; /* n_db: the references searched (n_queries in protocol 1) */
    int skipped_queries; /* queries with R = 0, left out of the label metrics */
    int scored_queries;  /* the queries the label metrics average over: n_queries - skipped */
    int n_classes;       /* labels among the references when a label metric was computed, else 0 */
    int protocol2;       /* the queries searched a database (R counts its rows of their label) */
    double seconds;
    char omitted[256];   /* streamed: the metrics left out and why ("" when none) */
} dml_eval_result;

#define DML_METRIC_COUNT 11 /* rows of the metric table (eval/metric_table.h) */

/* A comma-separated list of metric keys ("map_at_r,recall_at_k"), split for a request's
 * metrics and n_metrics (n 0: the defaults). */
typedef struct dml_eval_metric_list {
    char text[1024];                    /* the list, its commas made NULs */
    const char *keys[DML_METRIC_COUNT]; /* [n] into text */
    int n;
} dml_eval_metric_list;
/* Splits list; empty keys are skipped. DML_ERR_USAGE naming name (as "--metrics") for a list
 * over 1023 characters, a key that is no metric of the table, or one listed twice. */
dml_status dml_eval_metric_list_parse(const char *list, const char *name,
                                      dml_eval_metric_list *out, dml_error *err);

/* Computes the requested metrics. A metric the request cannot give (no labels, no pairs, no
 * codebooks, no ground truth) or an unknown name is DML_ERR_USAGE naming it. recall_at_k gives
 * recall_at_1, recall_at_5 and recall_at_10; nn_recall_at_k gives nn_recall_at_1, _10 and _100
 * for each k the ground truth and the database are deep enough for. */
dml_status dml_eval_run(const dml_eval_request *req, dml_eval_result *res, dml_error *err);
/* A metric's value by key, NAN when it was not computed. */
double dml_eval_get(const dml_eval_result *res, const char *name);
/* A readable aligned table: one row per metric, float and PQ side by side, then the counts:
 * with label metrics, "scored N of M queries (K skipped: no other row of their class)". */
void dml_eval_print_table(const dml_eval_result *res, FILE *f);
/* One row of a results table: a metric with its float value and its PQ twin (quantization_mse
 * and pq_recall_at_r have only the PQ column). */
typedef struct dml_eval_row {
    const char *name; /* points into the result */
    int has_float, has_pq;
    double value_float, value_pq;
} dml_eval_row;
/* The rows of res in order, each metric once; returns how many (<= DML_EVAL_MAX_METRICS). */
int dml_eval_table_rows(const dml_eval_result *res, dml_eval_row *rows);
/* One JSON object (no newline): every metric (null for NAN), then n_queries, n_db,
 * scored_queries, skipped_queries, seconds. */
void dml_eval_write_json(const dml_eval_result *res, FILE *f);

/* ---------------------------------------------------------------------------------------------
 * A model evaluated on data sets (eval/database.c): what dml eval does, as a library call. */

/* A trained model as eval/ sees it. eval/ sits below serve/, so embedding is a function:
 * dml_model_file_eval_model (serve/encode.h) fills one from a read model.h5. */
typedef struct dml_eval_model {
    const char *name;             /* the model's path, named by the input scale warnings */
    int dim;                      /* embedding width */
    int d_in, d_in_b;             /* the towers' input widths; d_in_b 0: one tower */
    dml_eval_distance distance;   /* how its embeddings are searched */
    const dml_pq *pq;             /* its codebooks, or NULL */
    uint64_t seed;                /* nmi's k-means */
    const dml_input_scale *scale; /* the encoder's input in training; NULL or mode "": unknown */
    /* Tower 0 (1: the second, d_in_b set) applied to x[n, its input width] into z[n, dim];
     * DML_ERR_NOMEM when memory runs out. */
    dml_status (*embed)(const void *ctx, int tower, const float *x, size_t n, float *z);
    const void *ctx;
} dml_eval_model;

/* Every row of ds through a tower (1: the second, reading ds's second view when it has one)
 * into a new *z [ds->n, m->dim] the caller frees. Rows of another width than the tower's input
 * are DML_ERR_DATA naming ds->source (tower 1 of a one-tower model: encoder_b takes 0). */
dml_status dml_eval_model_embed(const dml_eval_model *m, int tower, const dml_dataset *ds,
                                float **z, dml_error *err);

typedef struct dml_eval_model_request {
    const dml_eval_model *model;
    /* The queries. A dual encoder's are two views: a one-view set is replaced by its halves
     * (dml_dataset_halves; its rows freed), and their second views are its database. */
    dml_dataset *queries;
    /* The database, at most one of them (none: protocol 1, the queries among themselves):
     * db_spec is opened here and read whole, or searched in chunks (one process only) when its
     * rows and embeddings (and codes) would take more than memory_limit or stream is set; db is
     * in memory. */
    const char *db_spec;
    const dml_dataset *db;
    /* With a database: the ground truth of nn_recall_at_k. NULL: an ann-benchmarks file's own
     * when queries came from F.hdf5:/test (dml_neighbors_beside). */
    const char *truth_spec;
    const dml_neighbors *truth; /* in memory, in place of truth_spec (truth->n: the queries') */
    int pq;                     /* also every retrieval metric on the model's PQ codes */
    const char *const *metrics; /* [n_metrics] keys; NULL: every one the data allow */
    int n_metrics;
    double memory_limit;        /* bytes; 0: half the machine's RAM */
    int stream;                 /* 1: chunks whatever the database's size */
    int chunk;                  /* rows a chunk, rounded up to DML_STREAM_ALIGN; 0: by the limit */
    FILE *log;                  /* "dml eval: " notes and the chunks' progress bar; NULL: silent */
    /* Sharding over processes as dml_eval_request's; first_failure(share_ctx, failed), when
     * set, is collective: the lowest rank whose failed is nonzero, or -1, so that every rank
     * stops before the search when one failed. */
    int shard_rank, shard_size;
    void (*share_rows)(void *ctx, void *buf, size_t row_bytes, const int *row_begin);
    int (*first_failure)(void *ctx, int failed);
    void *share_ctx;
    float **embeddings; /* set: *embeddings = the queries' [queries->n, dim], the caller frees */
} dml_eval_model_request;

/* Embeds the queries (and the database) with the model and computes the metrics with
 * dml_eval_run. Label metrics that measure nothing (no query scored, references of one label)
 * are DML_ERR_DATA naming the data. Errors name the file or data set at fault. */
dml_status dml_eval_model_run(const dml_eval_model_request *req, dml_eval_result *res,
                              dml_error *err);

/* ---- internal to eval/: one ranking pass of dml_eval_run over every query (eval/metrics.c) ---- */

/* The distinct values of v[n], ascending, into *values (malloc'ed, freed by the caller);
 * returns how many, -1 when out of memory. */
int dml_labels_distinct(const int32_t *v, int n, int32_t **values);
/* The index of label in values[k] (ascending), -1 when absent. */
int dml_labels_find(const int32_t *values, int k, int32_t label);

/* One ranking pass: the per-query metrics it computes, in columns of qv. */
typedef struct dml_eval_pass {
    dml_searcher *s;           /* the references, float rows or codes */
    const float *queries;      /* [n_queries, d] */
    int n_queries, n_ref;
    int protocol1;             /* query q is reference q, excluded from its own ranking */
    const int32_t *q_class;    /* [n_queries] dense class among the references' (-1: none) */
    const int32_t *ref_class;  /* [n_ref] */
    const int *class_size;     /* [n_classes] */
    int n_classes;
    int col[DML_METRIC_COUNT]; /* metric m's first column in qv; -1: not computed here */
    int n_cols;                /* columns of qv (the same in a run's float and PQ passes) */
    int k, knn_k;              /* top-k kept per query; knn_accuracy's k (<= k) */
    int q_begin, q_end;        /* the queries ranked here (all of them unless sharded) */
    int over_codes;            /* a PQ pass (ADC over codes) */
    int32_t *exact_nn;         /* [n_queries] written when set and no PQ; read by pq_recall_at_r */
    const int32_t *truth;      /* [n_queries, truth_k] for nn_recall_at_k */
    int truth_k;
    double *qv;                /* [n_queries, n_cols]; NAN where a query is skipped */
} dml_eval_pass;

dml_status dml_eval_pass_run(dml_eval_pass *p, dml_error *err);
/* p over sharded rows (req->slices): every query scored against this process's references
 * (their codes when codes is set, by ADC), the per-process top-k lists exchanged block by
 * block and merged; the values of this process's queries written to p->qv. */
dml_status dml_eval_shard_pass(const dml_eval_request *req, dml_eval_pass *p,
                               const uint8_t *codes, dml_error *err);
/* nmi over sharded queries (req->slices): their embeddings gathered whole, as its k-means reads
 * every row. */
dml_status dml_eval_shard_nmi(const dml_eval_request *req, double *nmi, dml_error *err);
/* quantization_mse over sharded references, this process's ref[n_local]: each process's sum of
 * errors, added in process order (so every process gets the same bits; one process's single
 * sum within rounding). */
dml_status dml_eval_shard_qmse(const dml_eval_request *req, const float *ref, int n_local,
                               double *v, dml_error *err);
/* The values of query q (p->qv's row) from its ranking idx[found], nearest first; votes
 * [n_classes] zeros (left zero). Writes exact_nn[q] in a float pass. */
void dml_eval_query_values(const dml_eval_pass *p, int q, const int32_t *idx, int found,
                           int *votes);
/* Both passes of a streamed database at once (pp NULL: the float one only): each query's
 * top p->k merged across the chunks, then its values; *qmse the PQ error of every row (when
 * pp and qmse are set). */
dml_status dml_eval_stream_run(const dml_eval_request *req, dml_eval_pass *fp, dml_eval_pass *pp,
                               double *qmse, dml_error *err);

/* Normalised mutual information of two labelings of n items (any int32 values), arithmetic-mean
 * normalisation as sklearn's normalized_mutual_info_score; 1 when both are constant. NaN when
 * n < 1 or out of memory. */
double dml_nmi(const int32_t *a, const int32_t *b, int n);
/* nmi of metrics.md: k-means on x[n, d] with k = the number of distinct labels, k-means++,
 * the best of DML_NMI_RUNS by inertia, against labels[n]. */
dml_status dml_eval_nmi(const float *x, const int32_t *labels, int n, int d, uint64_t seed,
                        double *nmi, dml_error *err);

/* ---------------------------------------------------------------------------------------------
 * Report. */

#define DML_REPORT_MAX_POINTS 2000 /* the scatter shows at most this many embeddings */

typedef struct dml_report {
    const char *title;            /* the run's name */
    const char *config_text;      /* the effective config, shown verbatim; may be NULL */
    const float *loss;            /* [n_steps] training loss */
    const long *steps;            /* [n_steps] the step of each loss; NULL: 1, 2, ... */
    long n_steps;
    const long *val_steps;        /* [n_val] */
    const double *val_values;     /* [n_val, n_val_metrics]; NAN: not measured */
    const char *const *val_names; /* [n_val_metrics] */
    int n_val, n_val_metrics;
    const dml_eval_result *final; /* the final metrics; may be NULL */
    const float *emb;             /* [n_emb, d] test embeddings; an even sample is drawn */
    const int32_t *labels;        /* [n_emb] or NULL */
    int n_emb, d;
} dml_report;

/* report.html at path, self-contained (inline SVG and CSS, no scripts), written atomically.
 * Every chart is drawn: out of memory for one is DML_ERR_NOMEM, and nothing is written. */
dml_status dml_report_write(const char *path, const dml_report *report, dml_error *err);
/* The first two principal components of x[n, d] (covariance by dml_gemm, power iteration):
 * out[n, 2] the centred rows projected on them, each direction signed so its largest entry is
 * positive; explained[2] (may be NULL) the fraction of the variance along each. */
dml_status dml_pca2(const float *x, int n, int d, float *out, double *explained, dml_error *err);
/* dir/vectors.tsv (one row of d tab-separated floats per line, no header) and, with labels,
 * dir/metadata.tsv (one label per line, no header): what the TensorFlow Embedding Projector
 * loads. Both written atomically. */
dml_status dml_projector_write(const char *dir, const float *x, const int32_t *labels, int n,
                               int d, dml_error *err);

/* ---- internal to eval/: the report's inline SVG charts (eval/chart.c) ---- */
#define DML_CHART_COLORS 10
extern const char *const dml_chart_palette[DML_CHART_COLORS]; /* matplotlib's tab10 */

typedef struct dml_chart {
    int width, height;            /* the svg, in pixels */
    int left, right, top, bottom; /* margins around the plot area */
    double x0, x1, y0, y1;        /* the data shown; dml_chart_begin widens it to whole ticks
                                   * (y by 3% first, to keep points off the frame) */
} dml_chart;

/* Opens the svg: white background, title, grid, ticks with labels, frame and axis labels. */
void dml_chart_begin(FILE *f, dml_chart *c, const char *title, const char *xlabel,
                     const char *ylabel);
double dml_chart_x(const dml_chart *c, double x); /* data to pixels */
double dml_chart_y(const dml_chart *c, double y);
/* A polyline through the finite points (non-finite ones leave a gap). */
void dml_chart_line(FILE *f, const dml_chart *c, const double *x, const double *y, int n,
                    const char *color, double width);
void dml_chart_points(FILE *f, const dml_chart *c, const double *x, const double *y, int n,
                      const char *color, double radius);
/* A boxed legend with its top-left corner at pixel (x, y). */
void dml_chart_legend(FILE *f, double x, double y, const char *const *names,
                      const char *const *colors, int n);
void dml_chart_end(FILE *f);
/* s with <, >, & and " escaped for HTML text and attributes. */
void dml_html_text(FILE *f, const char *s);

/* ---------------------------------------------------------------------------------------------
 * Collapse diagnostics (eval/spread.c). */

typedef struct dml_spread {
    int rows;              /* rows measured; under 2: nothing was, and nothing is judged */
    double mean_std;       /* the mean over dimensions of each dimension's standard deviation */
    double relative_spread; /* sqrt(total variance) / the rows' root-mean-square norm: 0 when
                             * every row is one point, about 1 for rows spread around 0 */
    double effective_rank; /* exp(entropy of the covariance's normalised eigenvalues): 1..d */
    double pos_dist, neg_dist; /* mean euclidean distance within and across labels (NaN: none) */
} dml_spread;

/* The spread of z[n, d] (zeros when n < 2). DML_ERR_NOMEM only. */
dml_status dml_embedding_spread(const float *z, int n, int d, dml_spread *out, dml_error *err);

#define DML_SPREAD_MAX_PAIR_ROWS 2000 /* dml_label_distances: pairs among the first rows */
/* out->pos_dist and neg_dist of z[n, d] labelled y[n]. */
void dml_label_distances(const float *z, const int32_t *y, int n, int d, dml_spread *out);

/* "same/other" label distances for a log line ("0.412/1.237"), a missing one as "-" with why:
 * "0.412/- (one label: no pair across labels)", "-/1.237 (no two rows share a label)". */
void dml_label_distances_text(const dml_spread *s, char *out, size_t n);

#define DML_COLLAPSE_MIN_RANK 2.0    /* below: the rows lie near a line */
#define DML_COLLAPSE_MIN_SPREAD 0.05 /* below: the rows sit near one point */
/* 1 when the spread (of 2 rows or more) looks collapsed: an effective rank under DML_COLLAPSE_MIN_RANK or a
 * relative spread under DML_COLLAPSE_MIN_SPREAD. Both are scale-free, so they read the same on
 * l2-normalised and raw embeddings, and need no earlier validation to compare with (a run can
 * collapse within its first steps). */
int dml_spread_collapsed(const dml_spread *s);

#endif
