/* A database searched chunk by chunk, for databases larger than memory: each chunk is embedded
 * by the caller (and PQ-encoded here), scored against every query, and each query's top-k of
 * the chunk is merged into the top-k it keeps across chunks. Only the chunk, its codes and the
 * per-query lists are held.
 *
 * The numbers equal the in-memory search's: the chunks start at multiples of DML_STREAM_ALIGN,
 * so the embeddings (DML_ENCODE_BLOCK rows per pass), the codes (the PQ encoder's blocks) and
 * the scores (GEMM tiles of DML_SEARCH_REF_TILE references and of the in-memory block of
 * queries) come from the very calls the whole database makes; and a merge by (score, row), the
 * earlier chunk first on a tie, keeps the lower row first as dml_select_k does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/progress.h"
#include "eval/eval.h"

#define SCORE_BYTES (32u << 20) /* a block's scores against a chunk, as search.c's */
#define MAX_BLOCK 1024
#define LIST_K_UNLABELLED 100   /* the longest list without labels: nn_recall_at_100 */

/* One pass (float rows or codes) over the chunks. */
typedef struct stream_pass {
    dml_eval_pass *p;
    dml_searcher s;
    int32_t *idx;     /* [n_queries, k] global rows kept, nearest first */
    float *score;     /* [n_queries, k] */
    int found;        /* entries kept per query: min(k, rows seen) */
    int32_t *c_idx;   /* [threads, 2k] a chunk's top-k, then the merge */
    float *c_score;   /* [threads, 2k] */
    int lo, q0;       /* the chunk's first row; the block's first query */
} stream_pass;

static void pass_free(stream_pass *sp)
{
    dml_searcher_free(&sp->s);
    free(sp->idx);
    free(sp->score);
    free(sp->c_idx);
    free(sp->c_score);
}

static int pass_alloc(stream_pass *sp, int n_queries)
{
    size_t k = (size_t)sp->p->k, t = (size_t)sp->s.threads;
    sp->idx = malloc((size_t)n_queries * k * sizeof *sp->idx);
    sp->score = malloc((size_t)n_queries * k * sizeof *sp->score);
    sp->c_idx = malloc(t * (DML_ADC_GROUP + 1) * k * sizeof *sp->c_idx);
    sp->c_score = malloc(t * (DML_ADC_GROUP + 1) * k * sizeof *sp->c_score);
    return sp->idx && sp->score && sp->c_idx && sp->c_score;
}

/* Queries [begin, end) of the scored block: the chunk's top-k merged into each one's list. */
static void merge_rows(void *arg, int begin, int end, int thread)
{
    stream_pass *sp = arg;
    int k = sp->p->k, g = dml_searcher_group(&sp->s, k), got[DML_ADC_GROUP];
    size_t per = (size_t)(DML_ADC_GROUP + 1) * k; /* a thread's: [group, k] found, [k] merged */
    int32_t *c_idx = sp->c_idx + (size_t)thread * per, *mi = c_idx + (size_t)DML_ADC_GROUP * k;
    float *c_score = sp->c_score + (size_t)thread * per, *ms = c_score + (size_t)DML_ADC_GROUP * k;
    for (int i0 = begin; i0 < end; i0 += g) {
        int nq = end - i0 < g ? end - i0 : g;
        dml_searcher_topk_n(&sp->s, i0, nq, -1, k, thread, c_idx, c_score, got);
        for (int j = 0; j < nq; j++) {
            const int32_t *ci = c_idx + (size_t)j * k;
            const float *cs = c_score + (size_t)j * k;
            int32_t *ki = sp->idx + (size_t)(sp->q0 + i0 + j) * k;
            float *ks = sp->score + (size_t)(sp->q0 + i0 + j) * k;
            int a = 0, b = 0, n = sp->found + got[j] < k ? sp->found + got[j] : k;
            for (int t = 0; t < n; t++) /* kept rows are all lower: they win a tie */
                if (b >= got[j] || (a < sp->found && ks[a] <= cs[b])) {
                    mi[t] = ki[a];
                    ms[t] = ks[a++];
                } else {
                    mi[t] = sp->lo + ci[b];
                    ms[t] = cs[b++];
                }
            memcpy(ki, mi, (size_t)n * sizeof *ki);
            memcpy(ks, ms, (size_t)n * sizeof *ks);
        }
    }
}

static void search_chunk(stream_pass *sp, const float *queries, int n_queries, int lo, int rows)
{
    sp->lo = lo;
    for (sp->q0 = 0; sp->q0 < n_queries; sp->q0 += sp->s.block) {
        int n = n_queries - sp->q0 < sp->s.block ? n_queries - sp->q0 : sp->s.block;
        dml_searcher_score(&sp->s, queries + (size_t)sp->q0 * sp->s.d, n);
        dml_parallel_for(sp->s.threads, n, merge_rows, sp);
    }
    sp->found = sp->found + rows < sp->p->k ? sp->found + rows : sp->p->k;
}

static dml_status check_finite(const float *z, int rows, int d, int lo, dml_error *err)
{
    for (size_t i = 0; i < (size_t)rows * d; i++)
        if (!isfinite(z[i]))
            return dml_error_set(err, DML_ERR_DATA, NULL, 0, 0,
                                 "evaluation: database row %zu has a non-finite value (%g); "
                                 "expected finite embeddings",
                                 (size_t)lo + i / (size_t)d, z[i]);
    return DML_OK;
}

int dml_eval_stream_chunk(double budget, int n_queries, int d_in, int dim, int code_size,
                          int labelled)
{
    size_t k = labelled ? DML_STREAM_MAX_R : LIST_K_UNLABELLED, threads = dml_eval_threads(0);
    double fixed = (double)n_queries * ((double)dim * sizeof(float) + /* the queries */
                                        (double)k * 8.0 * (code_size ? 2 : 1)) + SCORE_BYTES;
    double row = (double)(d_in + dim + 1) * sizeof(float) + code_size +
                 (k > DML_SELECT_HEAP_MAX_K ? 24.0 * (double)threads : 0.0);
    double rows = floor((budget - fixed) / row / DML_STREAM_ALIGN);
    rows = rows < 1.0 ? 1.0 : rows > INT32_MAX / DML_STREAM_ALIGN ? INT32_MAX / DML_STREAM_ALIGN : rows;
    return (int)rows * DML_STREAM_ALIGN;
}

dml_status dml_eval_stream_run(const dml_eval_request *req, dml_eval_pass *fp, dml_eval_pass *pp,
                               double *qmse, dml_error *err)
{
    const dml_eval_stream *st = req->stream;
    int n_db = req->n_db, d = req->d, n_q = req->n_queries;
    size_t chunk = ((size_t)st->chunk + DML_STREAM_ALIGN - 1) / DML_STREAM_ALIGN * DML_STREAM_ALIGN;
    chunk = chunk < (size_t)n_db ? chunk : (size_t)n_db;
    size_t cs = pp ? dml_pq_code_size(req->pq) : 0;
    /* The in-memory search's query tile (so the GEMMs match), in blocks of as many tiles as a
     * chunk's scores allow. */
    int tile = dml_searcher_pick_block(req->block, n_db);
    size_t fit = SCORE_BYTES / sizeof(float) / chunk;
    fit = fit < MAX_BLOCK ? fit : MAX_BLOCK;
    int block = fit > (size_t)tile ? (int)(fit / (size_t)tile) * tile : tile;
    stream_pass sf = {.p = fp}, sp = {.p = pp};
    float *z = malloc(chunk * (size_t)d * sizeof *z);
    uint8_t *codes = pp ? malloc(chunk * cs) : NULL;
    int *votes = calloc((size_t)(fp->n_classes > 0 ? fp->n_classes : 1), sizeof *votes);
    dml_status s = DML_OK;
    if (!z || (pp && !codes) || !votes)
        s = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                          "out of memory for a database chunk of %zu rows", chunk);
    double total_mse = 0.0;
    dml_progress bar;
    dml_progress_init_units(&bar, st->progress, n_db, "database rows");
    for (size_t lo = 0; s == DML_OK && lo < (size_t)n_db; lo += chunk) {
        int rows = (size_t)n_db - lo < chunk ? (int)((size_t)n_db - lo) : (int)chunk;
        s = st->embed(st->ctx, (int)lo, rows, z, err);
        if (s == DML_OK)
            s = check_finite(z, rows, d, (int)lo, err);
        if (s == DML_OK && pp && dml_pq_encode(req->pq, z, (size_t)rows, codes) != DML_OK)
            s = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the PQ codes");
        if (s == DML_OK && lo == 0) { /* sized by the first chunk, the largest */
            s = dml_searcher_init(&sf.s, z, rows, d, req->distance, block, req->threads, fp->k,
                                  err);
            if (s == DML_OK && pp)
                s = dml_searcher_init_pq(&sp.s, req->pq, codes, rows, req->block, req->threads,
                                         pp->k, err);
            if (s == DML_OK && (!pass_alloc(&sf, n_q) || (pp && !pass_alloc(&sp, n_q))))
                s = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                                  "out of memory for the top-k of %d queries", n_q);
            sf.s.tile_q = tile;
        } else if (s == DML_OK) {
            dml_searcher_set_refs(&sf.s, z, rows);
            if (pp)
                dml_searcher_set_codes(&sp.s, codes, rows);
        }
        if (s != DML_OK)
            break;
        double mse = 0.0;
        if (pp && qmse && dml_pq_quantization_mse(req->pq, z, (size_t)rows, &mse) != DML_OK) {
            s = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for quantization_mse");
            break;
        }
        /* the in-memory mean sums every row's error in one pass: equal within double rounding */
        total_mse += mse * rows;
        search_chunk(&sf, req->queries, n_q, (int)lo, rows);
        if (pp)
            search_chunk(&sp, req->queries, n_q, (int)lo, rows);
        dml_progress_count(&bar, (long)lo + rows);
    }
    for (int q = 0; s == DML_OK && q < n_q; q++)
        dml_eval_query_values(fp, q, sf.idx + (size_t)q * fp->k, sf.found, votes);
    for (int q = 0; s == DML_OK && pp && q < n_q; q++) /* reads the float pass's exact_nn */
        dml_eval_query_values(pp, q, sp.idx + (size_t)q * pp->k, sp.found, votes);
    if (qmse)
        *qmse = total_mse / n_db;
    pass_free(&sf);
    pass_free(&sp);
    free(z);
    free(codes);
    free(votes);
    return s;
}
