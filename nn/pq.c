/* Product quantizer: M k-means codebooks over consecutive sub-vectors, with FAISS's centroid
 * layout and code packing (formats.md, "PQ code packing"), encoding, decoding and ADC. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

dml_status dml_pq_init(dml_pq *pq, int d, int m, int nbits, dml_error *err)
{
    memset(pq, 0, sizeof *pq);
    if (d < 1 || m < 1 || d % m != 0 || nbits < 1 || nbits > 16)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "a product quantizer needs M >= 1 dividing d and 1..16 bits per "
                             "sub-quantizer (d = %d, M = %d, nbits = %d)", d, m, nbits);
    pq->centroids = calloc((size_t)d << nbits, sizeof(float));
    if (!pq->centroids)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                             "out of memory for the codebooks (d = %d, nbits = %d)", d, nbits);
    pq->d = d;
    pq->m = m;
    pq->nbits = nbits;
    pq->ksub = 1 << nbits;
    pq->dsub = d / m;
    return DML_OK;
}

void dml_pq_free(dml_pq *pq)
{
    free(pq->centroids);
    memset(pq, 0, sizeof *pq);
}

size_t dml_pq_code_size(const dml_pq *pq)
{
    return pq ? ((size_t)pq->m * pq->nbits + 7) / 8 : 0;
}

static float *codebook(const dml_pq *pq, int m)
{
    return pq->centroids + (size_t)m * pq->ksub * pq->dsub;
}

/* Sub-vectors m of rows [0, n) gathered contiguous: out[n, dsub]. */
static void gather(const dml_pq *pq, const float *x, size_t n, int m, float *out)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * pq->dsub, x + i * pq->d + (size_t)m * pq->dsub,
               (size_t)pq->dsub * sizeof(float));
}

/* ---- training ---- */

static dml_status train(dml_pq *pq, const float *x, int n, int iters, int fresh,
                        dml_kmeans_init init, dml_rng *rng, dml_error *err)
{
    if (n < pq->ksub)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "PQ training needs at least ksub = 2^%d = %d rows, got %d",
                             pq->nbits, pq->ksub, n);
    float *sub = malloc((size_t)n * pq->dsub * sizeof(float));
    if (!sub)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                             "out of memory for PQ training (%d rows)", n);
    dml_status st = DML_OK;
    for (int m = 0; st == DML_OK && m < pq->m; m++) {
        gather(pq, x, (size_t)n, m, sub);
        st = fresh ? dml_kmeans(sub, n, pq->dsub, pq->ksub, iters, init, rng, codebook(pq, m),
                                NULL, NULL, err)
                   : dml_kmeans_from(sub, n, pq->dsub, pq->ksub, iters, codebook(pq, m), NULL,
                                     NULL, err);
    }
    free(sub);
    return st;
}

dml_status dml_pq_train(dml_pq *pq, const float *x, int n, int iters, dml_kmeans_init init,
                        dml_rng *rng, dml_error *err)
{
    return train(pq, x, n, iters, 1, init, rng, err);
}

dml_status dml_pq_refine(dml_pq *pq, const float *x, int n, int iters, dml_error *err)
{
    return train(pq, x, n, iters, 0, DML_KMEANS_PLUSPLUS, NULL, err);
}

/* ---- assignment: nearest centroid per sub-vector, a GEMM per block of rows ---- */

/* Scratch of one assignment over blocks of rows, carved from one allocation. */
typedef struct pq_work {
    int block;      /* rows per block */
    float *norms;   /* [m, ksub] squared centroid norms */
    float *sub;     /* [block, dsub] one sub-space of a block, contiguous */
    float *scores;  /* [block, ksub] */
    float *rec;     /* [block, d] decoded rows (quantization_mse only) */
    int *lab;       /* [block] */
    int32_t *idx;   /* [block, m] */
    void *mem;
} pq_work;

static int work_init(pq_work *w, const dml_pq *pq, size_t n, int want_rec)
{
    int block = dml_kmeans_block_rows(n < DML_KMEANS_BLOCK ? (int)n : DML_KMEANS_BLOCK, pq->ksub);
    size_t b = (size_t)block;
    size_t n_floats = (size_t)pq->m * pq->ksub + b * pq->dsub + b * pq->ksub +
                      (want_rec ? b * pq->d : 0);
    w->mem = malloc(n_floats * sizeof(float) + b * sizeof(int) + b * pq->m * sizeof(int32_t));
    if (!w->mem)
        return 0;
    w->block = block;
    w->norms = w->mem;
    w->sub = w->norms + (size_t)pq->m * pq->ksub;
    w->scores = w->sub + b * pq->dsub;
    w->rec = want_rec ? w->scores + b * pq->ksub : NULL;
    w->lab = (int *)(w->scores + b * pq->ksub + (want_rec ? b * pq->d : 0));
    w->idx = w->lab + b;
    for (int m = 0; m < pq->m; m++)
        for (int k = 0; k < pq->ksub; k++) {
            const float *c = codebook(pq, m) + (size_t)k * pq->dsub;
            float s = 0.0f;
            for (int t = 0; t < pq->dsub; t++)
                s += c[t] * c[t];
            w->norms[(size_t)m * pq->ksub + k] = s;
        }
    return 1;
}

/* idx[rows, m] for rows <= w->block rows of x. */
static void assign_block(const dml_pq *pq, pq_work *w, const float *x, int rows, int32_t *idx)
{
    for (int m = 0; m < pq->m; m++) {
        gather(pq, x, (size_t)rows, m, w->sub);
        dml_kmeans_assign(w->sub, rows, pq->dsub, codebook(pq, m), pq->ksub,
                          w->norms + (size_t)m * pq->ksub, w->lab, NULL, w->scores);
        for (int r = 0; r < rows; r++)
            idx[(size_t)r * pq->m + m] = w->lab[r];
    }
}

dml_status dml_pq_assign(const dml_pq *pq, const float *x, size_t n, int32_t *idx)
{
    pq_work w;
    if (n == 0)
        return DML_OK;
    if (!work_init(&w, pq, n, 0))
        return DML_ERR_NOMEM;
    for (size_t i0 = 0; i0 < n; i0 += (size_t)w.block) {
        int rows = n - i0 < (size_t)w.block ? (int)(n - i0) : w.block;
        assign_block(pq, &w, x + i0 * pq->d, rows, idx + i0 * pq->m);
    }
    free(w.mem);
    return DML_OK;
}

/* ---- packing: LSB-first bit stream, sub-quantizer m at bits [m*nbits, (m+1)*nbits) ---- */

static uint32_t get_index(const uint8_t *code, int m, int nbits)
{
    size_t bit = (size_t)m * nbits;
    const uint8_t *p = code + (bit >> 3);
    int shift = (int)(bit & 7);
    uint32_t v = (uint32_t)p[0] >> shift;
    for (int got = 8 - shift, i = 1; got < nbits; got += 8, i++)
        v |= (uint32_t)p[i] << got;
    return v & ((1u << nbits) - 1u);
}

/* ORs index v into a zeroed code; touches only the bytes its bits fall in. */
static void put_index(uint8_t *code, int m, int nbits, uint32_t v)
{
    size_t bit = (size_t)m * nbits;
    uint8_t *p = code + (bit >> 3);
    for (uint32_t s = v << (bit & 7); s; s >>= 8)
        *p++ |= (uint8_t)(s & 0xffu);
}

void dml_pq_pack(const dml_pq *pq, const int32_t *idx, size_t n, uint8_t *codes)
{
    size_t cs = dml_pq_code_size(pq);
    for (size_t i = 0; i < n; i++) {
        const int32_t *v = idx + i * pq->m;
        uint8_t *code = codes + i * cs;
        for (int m = 0; m < pq->m; m++)
            DML_ASSERT(v[m] >= 0 && v[m] < pq->ksub);
        if (pq->nbits == 8) {
            for (int m = 0; m < pq->m; m++)
                code[m] = (uint8_t)v[m];
            continue;
        }
        memset(code, 0, cs);
        for (int m = 0; m < pq->m; m++)
            put_index(code, m, pq->nbits, (uint32_t)v[m]);
    }
}

void dml_pq_unpack(const dml_pq *pq, const uint8_t *codes, size_t n, int32_t *idx)
{
    size_t cs = dml_pq_code_size(pq);
    for (size_t i = 0; i < n; i++)
        for (int m = 0; m < pq->m; m++)
            idx[i * pq->m + m] = (int32_t)get_index(codes + i * cs, m, pq->nbits);
}

dml_status dml_pq_encode(const dml_pq *pq, const float *x, size_t n, uint8_t *codes)
{
    pq_work w;
    if (!pq || (n && (!x || !codes)))
        return DML_ERR_USAGE;
    if (n == 0)
        return DML_OK;
    if (!work_init(&w, pq, n, 0))
        return DML_ERR_NOMEM;
    size_t cs = dml_pq_code_size(pq);
    for (size_t i0 = 0; i0 < n; i0 += (size_t)w.block) {
        int rows = n - i0 < (size_t)w.block ? (int)(n - i0) : w.block;
        assign_block(pq, &w, x + i0 * pq->d, rows, w.idx);
        dml_pq_pack(pq, w.idx, (size_t)rows, codes + i0 * cs);
    }
    free(w.mem);
    return DML_OK;
}

/* ---- decoding ---- */

void dml_pq_decode_idx(const dml_pq *pq, const int32_t *idx, size_t n, float *x)
{
    size_t row = (size_t)pq->dsub * sizeof(float);
    for (size_t i = 0; i < n; i++)
        for (int m = 0; m < pq->m; m++)
            memcpy(x + i * pq->d + (size_t)m * pq->dsub,
                   codebook(pq, m) + (size_t)idx[i * pq->m + m] * pq->dsub, row);
}

void dml_pq_decode(const dml_pq *pq, const uint8_t *codes, size_t n, float *x)
{
    size_t cs = dml_pq_code_size(pq), row = (size_t)pq->dsub * sizeof(float);
    for (size_t i = 0; i < n; i++)
        for (int m = 0; m < pq->m; m++)
            memcpy(x + i * pq->d + (size_t)m * pq->dsub,
                   codebook(pq, m) + (size_t)get_index(codes + i * cs, m, pq->nbits) * pq->dsub,
                   row);
}

dml_status dml_pq_quantization_mse(const dml_pq *pq, const float *x, size_t n, double *mse)
{
    pq_work w;
    *mse = 0.0;
    if (n == 0)
        return DML_OK;
    if (!work_init(&w, pq, n, 1)) {
        *mse = NAN;
        return DML_ERR_NOMEM;
    }
    double total = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += (size_t)w.block) {
        int rows = n - i0 < (size_t)w.block ? (int)(n - i0) : w.block;
        const float *xb = x + i0 * pq->d;
        assign_block(pq, &w, xb, rows, w.idx);
        dml_pq_decode_idx(pq, w.idx, (size_t)rows, w.rec);
        for (size_t t = 0; t < (size_t)rows * pq->d; t++) {
            double e = (double)xb[t] - w.rec[t];
            total += e * e;
        }
    }
    free(w.mem);
    *mse = total / (double)n;
    return DML_OK;
}

/* ---- asymmetric distance computation ---- */

void dml_pq_adc_table(const dml_pq *pq, const float *query, float *table)
{
    for (int m = 0; m < pq->m; m++) {
        const float *q = query + (size_t)m * pq->dsub, *c = codebook(pq, m);
        float *out = table + (size_t)m * pq->ksub;
        for (int k = 0; k < pq->ksub; k++, c += pq->dsub) {
            float s = 0.0f;
            for (int t = 0; t < pq->dsub; t++) {
                float e = q[t] - c[t];
                s += e * e;
            }
            out[k] = s;
        }
    }
}

/* One byte per index: four codes at a time, each summed in order of m, so the four
 * dependency chains of additions overlap. Inlined with M a constant for the usual M, so the
 * loop over m unrolls into straight loads and adds. */
static inline __attribute__((always_inline)) void adc_8bit_m(int M, const float *table,
                                                             const uint8_t *codes, size_t n,
                                                             float *dist)
{
    size_t i = 0, cs = (size_t)M;
    for (; i + 4 <= n; i += 4) {
        const uint8_t *c0 = codes + i * cs, *c1 = c0 + cs, *c2 = c1 + cs, *c3 = c2 + cs;
        const float *t = table;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        for (int m = 0; m < M; m++, t += 256) {
            s0 += t[c0[m]];
            s1 += t[c1[m]];
            s2 += t[c2[m]];
            s3 += t[c3[m]];
        }
        dist[i] = s0;
        dist[i + 1] = s1;
        dist[i + 2] = s2;
        dist[i + 3] = s3;
    }
    for (; i < n; i++) {
        const uint8_t *c = codes + i * cs;
        const float *t = table;
        float s = 0.0f;
        for (int m = 0; m < M; m++, t += 256)
            s += t[c[m]];
        dist[i] = s;
    }
}

static void adc_8bit(int M, const float *table, const uint8_t *codes, size_t n, float *dist)
{
    switch (M) {
    case 2: adc_8bit_m(2, table, codes, n, dist); break;
    case 4: adc_8bit_m(4, table, codes, n, dist); break;
    case 8: adc_8bit_m(8, table, codes, n, dist); break;
    case 16: adc_8bit_m(16, table, codes, n, dist); break;
    default: adc_8bit_m(M, table, codes, n, dist); break;
    }
}

/* Two indices a byte: sub-quantizer 2j in the low nibble, 2j+1 in the high one. */
static void adc_4bit(int M, const float *table, const uint8_t *codes, size_t n, float *dist)
{
    size_t cs = ((size_t)M + 1) / 2;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *c = codes + i * cs;
        const float *t = table;
        float s = 0.0f;
        int m = 0;
        for (; m + 2 <= M; m += 2, t += 32, c++) {
            s += t[*c & 15u];
            s += t[16 + (*c >> 4)];
        }
        if (m < M)
            s += t[*c & 15u];
        dist[i] = s;
    }
}

void dml_pq_adc_distances(const dml_pq *pq, const float *table, const uint8_t *codes, size_t n,
                          float *dist)
{
    if (pq->nbits == 8) {
        adc_8bit(pq->m, table, codes, n, dist);
        return;
    }
    if (pq->nbits == 4) {
        adc_4bit(pq->m, table, codes, n, dist);
        return;
    }
    size_t cs = dml_pq_code_size(pq);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *code = codes + i * cs;
        float s = 0.0f;
        for (int m = 0; m < pq->m; m++)
            s += table[(size_t)m * pq->ksub + get_index(code, m, pq->nbits)];
        dist[i] = s;
    }
}
