/* A ranking pass over rows sharded between processes (dml eval under mpirun, docs/scale.md).
 * Each process holds the embeddings of its own slice of the queries and of the references.
 * The queries go through in one process's search blocks: each block's embeddings are gathered
 * from their owners, scored against this process's references (one GEMM, or ADC over its
 * codes), and each query's top-k among them is exchanged, a part of the block at a time;
 * the owner of a query merges the lists by (score, row) and computes its values. A process
 * holds one block of queries, its scores against this process's references and LIST_BYTES of
 * lists, never a whole embedding table.
 *
 * The rankings are one process's: the slices are whole DML_EVAL_SLICE_ROWS units, so the
 * embeddings and codes are the single process's; the blocks are its blocks, so each GEMM has
 * its rows of queries; the slices are in row order, so a merge that prefers the lower process
 * on a tie keeps the lower row first, as dml_select_k does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define LIST_BYTES (8u << 20) /* the lists of every process exchanged at once */

typedef struct hit {
    float score;
    int32_t row; /* global; -1: none */
} hit;

typedef struct shard_ctx {
    dml_searcher *s;
    int k, b0, i0, ref_lo, ref_n, protocol1; /* i0: the first query of the part */
    int32_t *idx;  /* [threads, k] */
    float *score;  /* [threads, k] */
    hit *mine;     /* [part, k] this process's lists of the part of the block */
} shard_ctx;

void dml_eval_slice(int n, int rank, int size, int *lo, int *hi)
{
    long units = ((long)n + DML_EVAL_SLICE_ROWS - 1) / DML_EVAL_SLICE_ROWS;
    long a = DML_EVAL_SLICE_ROWS * (units * rank / size);
    long b = DML_EVAL_SLICE_ROWS * (units * (rank + 1) / size);
    *lo = a < n ? (int)a : n;
    *hi = b < n ? (int)b : n;
}

int *dml_eval_slice_begins(int n, int size)
{
    int *begin = malloc(((size_t)size + 1) * sizeof *begin);
    for (int r = 0; begin && r < size; r++)
        dml_eval_slice(n, r, size, &begin[r], &begin[r + 1]);
    return begin;
}

dml_status dml_eval_shard_nmi(const dml_eval_request *req, double *nmi, dml_error *err)
{
    const dml_eval_slices *sl = req->slices;
    int *begin = dml_eval_slice_begins(req->n_queries, req->shard_size);
    float *all = malloc((size_t)req->n_queries * req->d * sizeof *all);
    dml_status st = DML_OK;
    if (!begin || !all) {
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                           "out of memory gathering %d query embeddings for nmi", req->n_queries);
    } else {
        memcpy(all + (size_t)sl->q_lo * req->d, req->queries,
               (size_t)(sl->q_hi - sl->q_lo) * req->d * sizeof *all);
        req->share_rows(req->share_ctx, all, (size_t)req->d * sizeof *all, begin);
        st = dml_eval_nmi(all, req->q_labels, req->n_queries, req->d, req->seed, nmi, err);
    }
    free(begin);
    free(all);
    return st;
}

dml_status dml_eval_shard_qmse(const dml_eval_request *req, const float *ref, int n_local,
                               double *v, dml_error *err)
{
    int size = req->shard_size, n_ref = req->db ? req->n_db : req->n_queries;
    double *sums = malloc((size_t)size * sizeof *sums);
    int *begin = malloc(((size_t)size + 1) * sizeof *begin);
    double mse = 0.0;
    if (!sums || !begin ||
        (n_local > 0 && dml_pq_quantization_mse(req->pq, ref, (size_t)n_local, &mse) != DML_OK)) {
        free(sums);
        free(begin);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for quantization_mse");
    }
    for (int r = 0; r <= size; r++)
        begin[r] = r;
    sums[req->shard_rank] = mse * n_local;
    req->share_rows(req->share_ctx, sums, sizeof *sums, begin);
    double total = 0.0;
    for (int r = 0; r < size; r++)
        total += sums[r];
    *v = total / n_ref;
    free(sums);
    free(begin);
    return DML_OK;
}

/* Queries i0 + [begin, end) of the scored block: their top-k among this process's references. */
static void local_topk(void *arg, int begin, int end, int thread)
{
    shard_ctx *c = arg;
    int32_t *idx = c->idx + (size_t)thread * c->k;
    float *score = c->score + (size_t)thread * c->k;
    for (int i = begin; i < end; i++) {
        int q = c->b0 + c->i0 + i, self = q - c->ref_lo;
        int skip = c->protocol1 && self >= 0 && self < c->ref_n ? self : -1;
        int found = dml_searcher_topk(c->s, c->i0 + i, skip, c->k, thread, idx, score);
        hit *h = c->mine + (size_t)i * c->k;
        for (int t = 0; t < c->k; t++)
            h[t] = t < found ? (hit){score[t], c->ref_lo + idx[t]} : (hit){INFINITY, -1};
    }
}

/* Query i of the part: the size lists (rank r's at lists[(r * nb + i) * k]) merged into
 * idx[k]; returns how many. Ranks hold ascending rows, so the lower rank wins a tie. */
static int merge(const hit *lists, int size, int nb, int i, int k, int *pos, int32_t *idx)
{
    for (int r = 0; r < size; r++)
        pos[r] = 0;
    int t = 0;
    for (; t < k; t++) {
        const hit *best = NULL;
        int from = -1;
        for (int r = 0; r < size; r++) {
            const hit *h = lists + ((size_t)r * nb + i) * k + pos[r];
            if (pos[r] < k && h->row >= 0 && (!best || h->score < best->score)) {
                best = h;
                from = r;
            }
        }
        if (!best)
            break;
        idx[t] = best->row;
        pos[from]++;
    }
    return t;
}

dml_status dml_eval_shard_pass(const dml_eval_request *req, dml_eval_pass *p,
                               const uint8_t *codes, dml_error *err)
{
    const dml_eval_slices *sl = req->slices;
    int size = req->shard_size, d = req->d, k = p->k, n_q = req->n_queries;
    int ref_lo = p->protocol1 ? sl->q_lo : sl->db_lo;
    int ref_n = (p->protocol1 ? sl->q_hi : sl->db_hi) - ref_lo;
    const float *ref = p->protocol1 ? req->queries : req->db;
    int block = dml_searcher_pick_block(req->block, p->protocol1 ? n_q : req->n_db);
    dml_searcher s;
    memset(&s, 0, sizeof s);
    dml_status st = DML_OK;
    if (ref_n > 0)
        st = codes ? dml_searcher_init_pq(&s, req->pq, codes, ref_n, block, req->threads, k, err)
                   : dml_searcher_init(&s, ref, ref_n, d, req->distance, block, req->threads, k,
                                       err);
    if (st != DML_OK)
        return st;
    int threads = ref_n > 0 ? s.threads : 1;
    int *q_begin = malloc(3 * ((size_t)size + 1) * sizeof *q_begin);
    int *row_begin = q_begin ? q_begin + size + 1 : NULL;
    int *pos = row_begin ? row_begin + size + 1 : NULL;
    float *qb = malloc((size_t)block * d * sizeof *qb);
    size_t fit = LIST_BYTES / ((size_t)size * k * sizeof(hit));
    int part = fit < 1 ? 1 : fit < (size_t)block ? (int)fit : block;
    hit *lists = malloc((size_t)size * part * k * sizeof *lists);
    int32_t *idx = malloc(((size_t)threads + 1) * k * sizeof *idx);
    float *score = malloc((size_t)threads * k * sizeof *score);
    int *votes = calloc((size_t)(p->n_classes > 0 ? p->n_classes : 1), sizeof *votes);
    if (!q_begin || !qb || !lists || !idx || !score || !votes) {
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                           "out of memory for %d queries' top-%d lists", part, k);
        n_q = 0;
    }
    for (int r = 0; r < size && q_begin; r++) {
        int lo, hi;
        dml_eval_slice(n_q, r, size, &lo, &hi);
        q_begin[r] = lo;
        q_begin[r + 1] = hi;
    }
    shard_ctx c = {.s = &s, .k = k, .ref_lo = ref_lo, .ref_n = ref_n, .protocol1 = p->protocol1,
                   .idx = idx, .score = score};
    int32_t *merged = idx + (size_t)threads * k;
    for (c.b0 = 0; c.b0 < n_q; c.b0 += block) {
        int nb = n_q - c.b0 < block ? n_q - c.b0 : block, b1 = c.b0 + nb;
        for (int r = 0; r <= size; r++) { /* each owner's queries of the block */
            int q = q_begin[r] < c.b0 ? c.b0 : q_begin[r] > b1 ? b1 : q_begin[r];
            row_begin[r] = q - c.b0;
        }
        int lo = row_begin[req->shard_rank], hi = row_begin[req->shard_rank + 1];
        memcpy(qb + (size_t)lo * d, req->queries + (size_t)(c.b0 + lo - sl->q_lo) * d,
               (size_t)(hi - lo) * d * sizeof *qb);
        req->share_rows(req->share_ctx, qb, (size_t)d * sizeof *qb, row_begin);
        if (ref_n > 0)
            dml_searcher_score(&s, qb, nb);
        for (c.i0 = 0; c.i0 < nb; c.i0 += part) {
            int np = nb - c.i0 < part ? nb - c.i0 : part;
            c.mine = lists + (size_t)req->shard_rank * np * k;
            if (ref_n > 0)
                dml_parallel_for(threads, np, local_topk, &c);
            for (size_t t = 0; ref_n == 0 && t < (size_t)np * k; t++)
                c.mine[t] = (hit){INFINITY, -1};
            for (int r = 0; r <= size; r++)
                row_begin[r] = r * np;
            req->share_rows(req->share_ctx, lists, (size_t)k * sizeof *lists, row_begin);
            int q0 = c.i0 > lo ? c.i0 : lo, q1 = c.i0 + np < hi ? c.i0 + np : hi;
            for (int i = q0; i < q1; i++) { /* this process's queries of the part */
                int found = merge(lists, size, np, i - c.i0, k, pos, merged);
                dml_eval_query_values(p, c.b0 + i, merged, found, votes);
            }
        }
    }
    if (ref_n > 0)
        dml_searcher_free(&s);
    free(q_begin);
    free(qb);
    free(lists);
    free(idx);
    free(score);
    free(votes);
    return st;
}
