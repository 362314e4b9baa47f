/* The search cases: product-quantizer training, encoding and ADC search (FAISS's peer cases),
 * and exact search with map_at_r (the PyTorch peer's). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "eval/eval.h"

/* The mean of column col of v[n, k] (a k-th distance is a checksum both sides can compare). */
static double col_mean(const float *v, int n, int k, int col)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += v[(size_t)i * k + col];
    return n > 0 ? s / n : NAN;
}

/* Top-k of every query by ADC: the searcher on `threads` threads (what dml eval runs), then the
 * public single-threaded dml_pq_search on the first n_1 queries. Fills the two times and the
 * mean k-th distance. */
static dml_status adc_search(const dml_pq *pq, const uint8_t *codes, int n, const dml_dataset *q,
                             int n_1, int k, int threads, double *secs, double *secs_1, double *kth,
                             dml_error *err)
{
    int32_t *idx = malloc((size_t)q->n * k * sizeof *idx);
    float *dist = malloc((size_t)q->n * k * sizeof *dist);
    int64_t *lab = malloc((size_t)q->n * k * sizeof *lab);
    dml_status st = idx && dist && lab ? DML_OK : DML_ERR_NOMEM;
    dml_searcher s;
    double t0 = dml_bench_now();
    if (st == DML_OK && (st = dml_searcher_init_pq(&s, pq, codes, n, 0, threads, k, err)) == DML_OK) {
        st = dml_knn_search(&s, q->x, q->n, k, 0, idx, dist, err);
        dml_searcher_free(&s);
    }
    *secs = dml_bench_now() - t0;
    *kth = col_mean(dist, q->n, k, k - 1);
    t0 = dml_bench_now();
    if (st == DML_OK)
        st = dml_pq_search(pq, codes, (size_t)n, q->x, (size_t)n_1, k, dist, lab);
    *secs_1 = dml_bench_now() - t0;
    free(idx);
    free(dist);
    free(lab);
    if (st == DML_ERR_NOMEM)
        dml_error_set(err, st, NULL, 0, 0, "out of memory for the ADC search");
    return st;
}

int dml_bench_pq(const dml_bench_args *a)
{
    dml_error err = {0};
    dml_dataset x = {0}, q = {0};
    dml_pq pq = {0};
    uint8_t *codes = NULL;
    double probe = dml_bench_machine_probe(); /* before dml_set_threads, as the peer's */
    int threads = dml_eval_threads(a->threads);
    dml_set_threads(a->threads);
    dml_status st = dml_bench_open_unit(a->pos[0], &x, &err);
    if (st == DML_OK && a->queries)
        st = dml_bench_open_unit(a->queries, &q, &err);
    if (st == DML_OK)
        st = dml_pq_init(&pq, x.d, a->m, a->nbits, &err);
    if (st != DML_OK)
        goto done;
    dml_kmeans_init init = strcmp(a->init, "plusplus") ? DML_KMEANS_RANDOM_ROWS : DML_KMEANS_PLUSPLUS;
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    double t0 = dml_bench_now();
    st = dml_pq_train(&pq, x.x, x.n, a->iters, init, &rng, &err);
    double train_s = dml_bench_now() - t0;
    if (st != DML_OK)
        goto done;
    double mse;
    if (dml_pq_quantization_mse(&pq, x.x, (size_t)x.n, &mse) != DML_OK) {
        st = dml_error_set(&err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the PQ error");
        goto done;
    }
    codes = malloc((size_t)x.n * dml_pq_code_size(&pq));
    if (!codes) {
        st = dml_error_set(&err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the codes");
        goto done;
    }
    t0 = dml_bench_now();
    st = dml_pq_encode(&pq, x.x, (size_t)x.n, codes);
    double encode_s = dml_bench_now() - t0;
    if (st != DML_OK) {
        dml_error_set(&err, st, NULL, 0, 0, "PQ encoding failed");
        goto done;
    }
    printf("{\"case\": \"%s\", \"side\": \"dml\", \"n\": %d, \"d\": %d, \"m\": %d, \"nbits\": %d, "
           "\"iters\": %d, \"init\": \"%s\", \"threads\": %d, \"train_points\": %d, "
           "\"train_s\": %.6f, \"mse\": %.9g, \"encode_s\": %.6f, \"encode_rows_per_s\": %.1f, "
           "\"probe_gflops\": %.1f",
           a->name, x.n, x.d, a->m, a->nbits, a->iters, a->init, threads, x.n, train_s, mse,
           encode_s, x.n / encode_s, probe);
    if (q.n) {
        double adc_s, adc1_s, kth;
        int n_1 = a->single_queries < q.n ? a->single_queries : q.n;
        st = adc_search(&pq, codes, x.n, &q, n_1, a->k, threads, &adc_s, &adc1_s, &kth, &err);
        printf(", \"queries\": %d, \"k\": %d, \"adc_s\": %.6f, \"adc_1thread_queries\": %d, "
               "\"adc_1thread_s\": %.6f, \"adc_kth_dist_mean\": %.6g",
               q.n, a->k, adc_s, n_1, adc1_s, kth);
    }
    printf("}\n");
done:
    free(codes);
    dml_pq_free(&pq);
    dml_dataset_free(&x);
    dml_dataset_free(&q);
    return st == DML_OK ? 0 : dml_bench_fail("pq", st, &err);
}

int dml_bench_eval(const dml_bench_args *a)
{
    dml_error err = {0};
    dml_dataset db = {0}, q = {0};
    double probe = dml_bench_machine_probe(); /* before dml_set_threads, as the peer's */
    int threads = dml_eval_threads(a->threads), k = a->k;
    dml_set_threads(a->threads);
    dml_status st = dml_dataset_open(a->pos[0], &db, &err);
    if (st == DML_OK)
        st = dml_dataset_open(a->pos[1], &q, &err);
    if (st == DML_OK && (db.d != q.d || !q.y))
        st = dml_error_set(&err, DML_ERR_DATA, a->pos[1], 0, 0,
                           "expected labelled queries of the database's width %d", db.d);
    int32_t *idx = st == DML_OK ? malloc((size_t)q.n * k * sizeof *idx) : NULL;
    float *dist = st == DML_OK ? malloc((size_t)q.n * k * sizeof *dist) : NULL;
    if (st == DML_OK && (!idx || !dist))
        st = dml_error_set(&err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the results");
    if (st != DML_OK)
        goto done;
    /* map_at_r, protocol 1: the queries searched among themselves, self excluded. */
    const char *const metrics[] = {"map_at_r"};
    dml_eval_request req = {.d = q.d, .queries = q.x, .q_labels = q.y, .n_queries = q.n,
                            .distance = DML_EVAL_L2SQ, .metrics = metrics, .n_metrics = 1,
                            .threads = threads};
    dml_eval_result res;
    double t0 = dml_bench_now();
    st = dml_eval_run(&req, &res, &err);
    double map_s = dml_bench_now() - t0;
    if (st != DML_OK)
        goto done;
    /* Protocol 2's search: every query's top-k among the database rows. */
    dml_searcher s;
    t0 = dml_bench_now();
    if ((st = dml_searcher_init(&s, db.x, db.n, db.d, DML_EVAL_L2SQ, 0, threads, k, &err)) == DML_OK) {
        st = dml_knn_search(&s, q.x, q.n, k, 0, idx, dist, &err);
        dml_searcher_free(&s);
    }
    double knn_s = dml_bench_now() - t0;
    if (st == DML_OK)
        printf("{\"case\": \"%s\", \"side\": \"dml\", \"threads\": %d, \"n_queries\": %d, "
               "\"n_db\": %d, \"d\": %d, \"k\": %d, \"map_at_r\": %.9g, \"map_at_r_s\": %.6f, "
               "\"knn_s\": %.6f, \"top1_dist_mean\": %.9g, \"kth_dist_mean\": %.9g, "
               "\"probe_gflops\": %.1f}\n",
               a->name, threads, q.n, db.n, q.d, k, dml_eval_get(&res, "map_at_r"), map_s, knn_s,
               col_mean(dist, q.n, k, 0), col_mean(dist, q.n, k, k - 1), probe);
done:
    free(idx);
    free(dist);
    dml_dataset_free(&db);
    dml_dataset_free(&q);
    return st == DML_OK ? 0 : dml_bench_fail("eval", st, &err);
}
