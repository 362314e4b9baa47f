/* The product quantizer: FAISS's code packing (checked by hand and against FAISS itself),
 * encode/decode round trips, quantization error, ADC distances and training. */
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A quantizer with N(0, 1) centroids (distinct with probability 1). */
static void random_pq(dml_pq *pq, int d, int m, int nbits, uint64_t seed)
{
    assert_int_equal(dml_pq_init(pq, d, m, nbits, NULL), DML_OK);
    tu_fill_normal(pq->centroids, (size_t)d << nbits, 1.0f, seed);
}

/* idx[n, m] uniform below ksub. */
static void random_idx(const dml_pq *pq, int32_t *idx, size_t n, uint64_t seed)
{
    dml_rng rng;
    dml_rng_seed(&rng, seed);
    for (size_t i = 0; i < n * pq->m; i++)
        idx[i] = (int32_t)dml_rng_below(&rng, (uint32_t)pq->ksub);
}

/* n rows around 20 random centres (scale 1, noise 0.5): data with some structure. */
static float *mixture(int n, int d, uint64_t seed)
{
    float *x = malloc(sizeof(float) * n * d), c[20 * 64];
    assert_true(d <= 64);
    tu_fill_normal(c, 20 * (size_t)d, 1.0f, seed);
    tu_fill_normal(x, (size_t)n * d, 0.5f, seed + 1);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < d; t++)
            x[i * d + t] += c[(i % 20) * d + t];
    return x;
}

static double sq_dist(const float *a, const float *b, int d)
{
    double s = 0.0;
    for (int t = 0; t < d; t++)
        s += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    return s;
}

static void test_init_checks_sizes(void **state)
{
    (void)state;
    dml_pq pq;
    dml_error err = {0};
    assert_int_equal(dml_pq_init(&pq, 10, 3, 8, &err), DML_ERR_USAGE);
    assert_string_equal(err.msg, "a product quantizer needs M >= 1 dividing d and 1..16 bits per "
                                 "sub-quantizer (d = 10, M = 3, nbits = 8)");
    assert_null(pq.centroids);
    assert_int_equal(dml_pq_init(&pq, 8, 2, 0, &err), DML_ERR_USAGE);
    assert_int_equal(dml_pq_init(&pq, 8, 2, 17, &err), DML_ERR_USAGE);
    assert_int_equal(dml_pq_init(&pq, 8, 0, 8, &err), DML_ERR_USAGE);
    assert_int_equal(dml_pq_init(&pq, 12, 3, 6, &err), DML_OK);
    assert_int_equal(pq.ksub, 64);
    assert_int_equal(pq.dsub, 4);
    assert_int_equal(dml_pq_code_size(&pq), 3); /* 18 bits */
    for (size_t i = 0; i < (size_t)12 * 64; i++)
        assert_true(pq.centroids[i] == 0.0f);
    dml_pq_free(&pq);
    assert_int_equal(dml_pq_code_size(NULL), 0);
}

/* formats.md's layout worked out by hand: bit b of the stream is byte[b >> 3] >> (b & 7). */
static void test_pack_layout_by_hand(void **state)
{
    (void)state;
    static const struct {
        int m, nbits;
        int32_t idx[10];
        uint8_t code[4];
        int cs;
    } cases[] = {
        {3, 4, {0x1, 0xA, 0x7}, {0xA1, 0x07}, 2},       /* 2j low nibble, 2j+1 high; padded */
        {3, 8, {1, 200, 7}, {1, 200, 7}, 3},            /* one byte each */
        {2, 6, {0x2B, 0x15}, {0x6B, 0x05}, 2},          /* 101011 then 010101 from bit 6 */
        {2, 12, {0xABC, 0x123}, {0xBC, 0x3A, 0x12}, 3}, /* crosses byte boundaries */
        {2, 16, {0x1234, 0xBEEF}, {0x34, 0x12, 0xEF, 0xBE}, 4}, /* native little-endian uint16 */
        {10, 1, {1, 0, 1, 1, 0, 0, 0, 0, 1, 1}, {0x0D, 0x03}, 2},
    };
    for (size_t v = 0; v < sizeof cases / sizeof cases[0]; v++) {
        dml_pq pq;
        assert_int_equal(dml_pq_init(&pq, cases[v].m, cases[v].m, cases[v].nbits, NULL), DML_OK);
        assert_int_equal(dml_pq_code_size(&pq), cases[v].cs);
        uint8_t code[4];
        memset(code, 0xff, sizeof code);
        dml_pq_pack(&pq, cases[v].idx, 1, code);
        assert_memory_equal(code, cases[v].code, cases[v].cs);
        int32_t back[10];
        dml_pq_unpack(&pq, code, 1, back);
        assert_memory_equal(back, cases[v].idx, sizeof(int32_t) * cases[v].m);
        dml_pq_free(&pq);
    }
}

/* Every width 1..16 with several M: unpack(pack(idx)) == idx and the padding bits stay 0. */
static void test_pack_round_trip(void **state)
{
    (void)state;
    enum { N = 40 };
    const int ms[] = {1, 3, 8};
    for (int nbits = 1; nbits <= 16; nbits++)
        for (int v = 0; v < 3; v++) {
            dml_pq pq;
            assert_int_equal(dml_pq_init(&pq, ms[v], ms[v], nbits, NULL), DML_OK);
            size_t cs = dml_pq_code_size(&pq);
            int32_t idx[N * 8], back[N * 8];
            uint8_t codes[N * 16];
            random_idx(&pq, idx, N, (uint64_t)(nbits * 10 + v));
            memset(codes, 0xff, sizeof codes);
            dml_pq_pack(&pq, idx, N, codes);
            dml_pq_unpack(&pq, codes, N, back);
            assert_memory_equal(back, idx, sizeof(int32_t) * N * ms[v]);
            int used = (ms[v] * nbits) % 8;
            for (int i = 0; i < N && used; i++)
                assert_int_equal(codes[i * cs + cs - 1] >> used, 0);
            dml_pq_free(&pq);
        }
}

/* Trained codebooks: decoding a code and encoding it again gives the same code; encode is
 * assign + pack; decode is unpack + decode_idx. */
static void test_encode_decode_round_trip(void **state)
{
    (void)state;
    enum { N = 1200, D = 16 };
    float *x = mixture(N, D, 3), *dec = malloc(sizeof(float) * N * D);
    float *dec2 = malloc(sizeof(float) * N * D);
    int32_t *idx = malloc(sizeof(int32_t) * N * 8);
    uint8_t *codes = malloc(N * 8), *again = malloc(N * 8), *packed = malloc(N * 8);
    const int nbits[] = {8, 4, 6};
    for (int v = 0; v < 3; v++) {
        dml_pq pq;
        dml_rng rng;
        dml_rng_seed(&rng, 4);
        assert_int_equal(dml_pq_init(&pq, D, 4, nbits[v], NULL), DML_OK);
        assert_int_equal(dml_pq_train(&pq, x, N, 10, DML_KMEANS_PLUSPLUS, &rng, NULL), DML_OK);
        size_t cs = dml_pq_code_size(&pq);
        assert_int_equal(dml_pq_encode(&pq, x, N, codes), DML_OK);
        assert_int_equal(dml_pq_assign(&pq, x, N, idx), DML_OK);
        dml_pq_pack(&pq, idx, N, packed);
        assert_memory_equal(packed, codes, N * cs);
        dml_pq_decode(&pq, codes, N, dec);
        dml_pq_decode_idx(&pq, idx, N, dec2);
        assert_memory_equal(dec, dec2, sizeof(float) * N * D);
        assert_int_equal(dml_pq_encode(&pq, dec, N, again), DML_OK);
        assert_memory_equal(again, codes, N * cs);
        assert_int_equal(dml_pq_encode(&pq, x, 0, NULL), DML_OK);
        assert_int_equal(dml_pq_encode(&pq, NULL, N, codes), DML_ERR_USAGE);
        assert_int_equal(dml_pq_encode(NULL, x, N, codes), DML_ERR_USAGE);
        dml_pq_free(&pq);
    }
    free(x);
    free(dec);
    free(dec2);
    free(idx);
    free(codes);
    free(again);
    free(packed);
}

/* Rows that are decoded codes are quantized without error, and encode back to their codes;
 * 5000 rows take two blocks of the GEMM assignment. */
static void test_mse_zero_on_centroids(void **state)
{
    (void)state;
    enum { N = 5000, D = 12, M = 3 };
    dml_pq pq;
    random_pq(&pq, D, M, 8, 5);
    int32_t *idx = malloc(sizeof(int32_t) * N * M);
    uint8_t *codes = malloc(N * M), *again = malloc(N * M);
    float *x = malloc(sizeof(float) * N * D);
    random_idx(&pq, idx, N, 6);
    dml_pq_pack(&pq, idx, N, codes);
    dml_pq_decode(&pq, codes, N, x);
    double mse = -1.0;
    assert_int_equal(dml_pq_quantization_mse(&pq, x, N, &mse), DML_OK);
    assert_true(mse == 0.0);
    assert_int_equal(dml_pq_encode(&pq, x, N, again), DML_OK);
    assert_memory_equal(again, codes, N * M);
    mse = -1.0;
    assert_int_equal(dml_pq_quantization_mse(&pq, x, 0, &mse), DML_OK);
    assert_true(mse == 0.0);
    dml_pq_free(&pq);
    free(idx);
    free(codes);
    free(again);
    free(x);
}

/* From one k-means++ start, more iterations never raise the error, and the error is the mean
 * squared distance to the decoded codes. */
static void test_mse_decreases_with_iterations(void **state)
{
    (void)state;
    enum { N = 3000, D = 16 };
    float *x = mixture(N, D, 7), *dec = malloc(sizeof(float) * N * D);
    uint8_t *codes = malloc(N * 4);
    const int iters[] = {0, 1, 3, 10, 25};
    double prev = INFINITY, first = 0.0, mse = 0.0;
    for (int v = 0; v < 5; v++) {
        dml_pq pq;
        dml_rng rng;
        dml_rng_seed(&rng, 12);
        assert_int_equal(dml_pq_init(&pq, D, 4, 8, NULL), DML_OK);
        assert_int_equal(dml_pq_train(&pq, x, N, iters[v], DML_KMEANS_PLUSPLUS, &rng, NULL),
                         DML_OK);
        assert_int_equal(dml_pq_quantization_mse(&pq, x, N, &mse), DML_OK);
        assert_true(mse <= prev * (1.0 + 1e-6));
        assert_int_equal(dml_pq_encode(&pq, x, N, codes), DML_OK);
        dml_pq_decode(&pq, codes, N, dec);
        double want = 0.0;
        for (int i = 0; i < N; i++)
            want += sq_dist(x + i * D, dec + i * D, D) / N;
        assert_true(fabs(mse - want) <= 1e-9 * want);
        if (v == 0)
            first = mse;
        prev = mse;
        dml_pq_free(&pq);
    }
    assert_true(mse < 0.8 * first);
    free(x);
    free(dec);
    free(codes);
}

/* ADC: the table holds sub-vector distances; a code's distance is |q - decode(code)|^2, for
 * the 8-bit (4 codes at a time and the tail), 4-bit (odd M: a padded nibble) and generic paths. */
static void test_adc_matches_decoded_distance(void **state)
{
    (void)state;
    enum { N = 203, N_Q = 5 };
    const struct { int d, m, nbits; } cfg[] = {{16, 4, 8}, {12, 3, 4}, {12, 4, 4}, {10, 5, 6},
                                               {8, 2, 16}};
    for (int v = 0; v < 5; v++) {
        int d = cfg[v].d, m = cfg[v].m;
        dml_pq pq;
        random_pq(&pq, d, m, cfg[v].nbits, 30 + v);
        size_t cs = dml_pq_code_size(&pq);
        int32_t *idx = malloc(sizeof(int32_t) * N * m);
        uint8_t *codes = malloc(N * cs);
        float *dec = malloc(sizeof(float) * N * d), q[16], dist[N];
        float *table = malloc(sizeof(float) * m * pq.ksub);
        random_idx(&pq, idx, N, 40 + v);
        dml_pq_pack(&pq, idx, N, codes);
        dml_pq_decode(&pq, codes, N, dec);
        for (int iq = 0; iq < N_Q; iq++) {
            tu_fill_normal(q, d, 1.0f, 50 + 10 * v + iq);
            dml_pq_adc_table(&pq, q, table);
            for (int s = 0; s < m; s++)
                for (int k = 0; k < pq.ksub; k += pq.ksub / 4 + 1) {
                    double e = sq_dist(q + s * pq.dsub,
                                       pq.centroids + ((size_t)s * pq.ksub + k) * pq.dsub, pq.dsub);
                    assert_true(fabs(table[s * pq.ksub + k] - e) <= 1e-5 * (1.0 + e));
                }
            dml_pq_adc_distances(&pq, table, codes, N, dist);
            for (int i = 0; i < N; i++) {
                double e = sq_dist(q, dec + i * d, d);
                assert_true(fabs(dist[i] - e) <= 1e-4 * e);
            }
        }
        dml_pq_free(&pq);
        free(idx);
        free(codes);
        free(dec);
        free(table);
    }
}

/* Each 2-D sub-vector is one of 4 points of its own sub-space (a square of side 10 at an offset
 * per sub-space) plus noise 0.01: training finds the 4 points of every sub-space. */
static void test_train_finds_separable_subspaces(void **state)
{
    (void)state;
    enum { N = 400, D = 6, M = 3 };
    float x[N * D], noise[N * D];
    int32_t truth[N * M], idx[N * M];
    dml_rng rng;
    dml_rng_seed(&rng, 14);
    tu_fill_normal(noise, N * D, 0.01f, 15);
    for (int i = 0; i < N; i++)
        for (int s = 0; s < M; s++) {
            int p = (int)dml_rng_below(&rng, 4);
            truth[i * M + s] = p;
            x[i * D + 2 * s] = 10.0f * (p & 1) + 3.0f * s + noise[i * D + 2 * s];
            x[i * D + 2 * s + 1] = 10.0f * (p >> 1) - 5.0f * s + noise[i * D + 2 * s + 1];
        }
    dml_pq pq;
    assert_int_equal(dml_pq_init(&pq, D, M, 2, NULL), DML_OK);
    assert_int_equal(dml_pq_train(&pq, x, N, 10, DML_KMEANS_PLUSPLUS, &rng, NULL), DML_OK);
    assert_int_equal(dml_pq_assign(&pq, x, N, idx), DML_OK);
    for (int s = 0; s < M; s++) {
        int map[4] = {-1, -1, -1, -1};
        for (int i = 0; i < N; i++) {
            int f = idx[i * M + s];
            if (map[f] < 0)
                map[f] = truth[i * M + s];
            assert_int_equal(map[f], truth[i * M + s]);
        }
        for (int f = 0; f < 4; f++) {
            const float *c = pq.centroids + ((size_t)s * 4 + f) * 2;
            assert_float_equal(c[0], 10.0f * (map[f] & 1) + 3.0f * s, 0.01);
            assert_float_equal(c[1], 10.0f * (map[f] >> 1) - 5.0f * s, 0.01);
        }
    }
    double mse;
    assert_int_equal(dml_pq_quantization_mse(&pq, x, N, &mse), DML_OK);
    assert_true(mse < 2.0 * D * 0.01 * 0.01);
    dml_pq_free(&pq);
}

static void test_train_needs_ksub_rows(void **state)
{
    (void)state;
    float x[100 * 4] = {0};
    dml_pq pq;
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    dml_error err = {0};
    assert_int_equal(dml_pq_init(&pq, 4, 2, 8, NULL), DML_OK);
    assert_int_equal(dml_pq_train(&pq, x, 100, 5, DML_KMEANS_PLUSPLUS, &rng, &err), DML_ERR_USAGE);
    assert_string_equal(err.msg, "PQ training needs at least ksub = 2^8 = 256 rows, got 100");
    assert_int_equal(dml_pq_refine(&pq, x, 100, 5, &err), DML_ERR_USAGE);
    dml_pq_free(&pq);
}

/* ---- FAISS ---- */

static void dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, bytes, f), bytes);
    assert_int_equal(fclose(f), 0);
}

static void slurp(const char *dir, const char *name, void *p, size_t bytes)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(p, 1, bytes, f), bytes);
    assert_int_equal(fgetc(f), EOF);
    fclose(f);
}

/* Squared distance, in double, from sub-vector s of row x to centroid c of sub-quantizer s. */
static double sub_dist(const dml_pq *pq, const float *x, int s, int c)
{
    const float *cent = pq->centroids + ((size_t)s * pq->ksub + c) * pq->dsub;
    double sum = 0.0;
    for (int j = 0; j < pq->dsub; j++) {
        double t = (double)x[s * pq->dsub + j] - cent[j];
        sum += t * t;
    }
    return sum;
}

/* Where dml's and FAISS's codes of x[n] pick other centroids, the two must be within rounding
 * of a tie (FAISS encodes dsub 16 through BLAS, whose kernels sum in their own order); returns
 * the largest relative gap between the two choices' distances (0 when every code is equal). */
static double code_tie_gap(const dml_pq *pq, const float *x, int n, const uint8_t *ours,
                           const uint8_t *theirs)
{
    int32_t *a = malloc(sizeof(int32_t) * n * pq->m), *b = malloc(sizeof(int32_t) * n * pq->m);
    assert_non_null(a);
    assert_non_null(b);
    dml_pq_unpack(pq, ours, (size_t)n, a);
    dml_pq_unpack(pq, theirs, (size_t)n, b);
    double worst = 0.0;
    for (int i = 0; i < n * pq->m; i++)
        if (a[i] != b[i]) {
            const float *row = x + (size_t)(i / pq->m) * pq->d;
            double da = sub_dist(pq, row, i % pq->m, a[i]), db = sub_dist(pq, row, i % pq->m, b[i]);
            worst = fmax(worst, fabs(da - db) / fmax(fmax(da, db), 1e-12));
        }
    free(a);
    free(b);
    return worst;
}

/* dml trains a PQ; FAISS, given dml's centroids, computes the same codes (a code may differ
 * only where two centroids tie within float rounding: 1e-5 of the distance); FAISS's own
 * training on the same rows and iterations reaches no lower error than dml's, within 2%, each
 * side's error the mean over SEEDS trainings (one training's local optimum moves it by a few
 * percent: 20 mixture components for 16 centroids). */
static void faiss_check(int d, int m, int nbits)
{
    enum { N = 10000, ITERS = 25, SEEDS = 5 };
    char dir[256];
    tu_mkdtemp(dir, sizeof dir);
    float *x = mixture(N, d, 60 + nbits);
    dml_pq pq; /* the first seed's codebooks, which FAISS encodes with */
    double dml_mse = 0.0;
    for (int seed = 0; seed < SEEDS; seed++) {
        dml_pq trial;
        dml_rng rng;
        dml_rng_seed(&rng, 61 + (uint64_t)seed);
        assert_int_equal(dml_pq_init(&trial, d, m, nbits, NULL), DML_OK);
        assert_int_equal(dml_pq_train(&trial, x, N, ITERS, DML_KMEANS_PLUSPLUS, &rng, NULL), DML_OK);
        double mse;
        assert_int_equal(dml_pq_quantization_mse(&trial, x, N, &mse), DML_OK);
        dml_mse += mse / SEEDS;
        if (seed == 0)
            pq = trial;
        else
            dml_pq_free(&trial);
    }
    size_t cs = dml_pq_code_size(&pq);
    uint8_t *codes = malloc(N * cs), *theirs = malloc(N * cs);
    assert_int_equal(dml_pq_encode(&pq, x, N, codes), DML_OK);
    char meta[128];
    snprintf(meta, sizeof meta, "%d %d %d %d %d %d", d, m, nbits, N, ITERS, SEEDS);
    dump(dir, "meta.txt", meta, strlen(meta));
    dump(dir, "x.f32", x, sizeof(float) * N * d);
    dump(dir, "centroids.f32", pq.centroids, sizeof(float) * ((size_t)d << nbits));
    assert_int_equal(tu_python_run("tests/scripts/pq_faiss.py %s", dir), 0);
    slurp(dir, "codes.u8", theirs, N * cs);
    char what[96];
    snprintf(what, sizeof what, "PQ d=%d M=%d nbits=%d codes against FAISS, tie gap", d, m, nbits);
    tu_assert_measured(what, code_tie_gap(&pq, x, N, codes, theirs), 1e-5);
    char text[64] = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/mse.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof text, f));
    fclose(f);
    double faiss_mse = strtod(text, NULL);
    print_message("PQ d=%d M=%d nbits=%d, %d rows, %d iterations, mean of %d trainings: "
                  "quantization MSE dml %.6f, FAISS %.6f (ratio %.4f)\n", d, m, nbits, N, ITERS,
                  SEEDS, dml_mse, faiss_mse, dml_mse / faiss_mse);
    assert_true(faiss_mse > 0.0);
    snprintf(what, sizeof what, "PQ d=%d M=%d nbits=%d quantization MSE, dml / FAISS", d, m, nbits);
    tu_assert_measured(what, dml_mse / faiss_mse, 1.02);
    assert_int_equal(tu_system("rm -rf '%s'", dir), 0);
    dml_pq_free(&pq);
    free(x);
    free(codes);
    free(theirs);
}

static void test_faiss_cross_check(void **state)
{
    (void)state;
    if (!tu_python_has("faiss,numpy"))
        TU_SKIP("needs /usr/bin/python3 with faiss and numpy");
    faiss_check(32, 4, 8); /* dsub 8: FAISS encodes by direct distances */
    faiss_check(32, 2, 4); /* dsub 16: FAISS encodes through BLAS */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_checks_sizes),
        cmocka_unit_test(test_pack_layout_by_hand),
        cmocka_unit_test(test_pack_round_trip),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_mse_zero_on_centroids),
        cmocka_unit_test(test_mse_decreases_with_iterations),
        cmocka_unit_test(test_adc_matches_decoded_distance),
        cmocka_unit_test(test_train_finds_separable_subspaces),
        cmocka_unit_test(test_train_needs_ksub_rows),
        cmocka_unit_test(test_faiss_cross_check),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
