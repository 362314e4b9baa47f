/* Product quantizer: M k-means codebooks over consecutive sub-vectors, FAISS's layout and
 * code packing (formats.md, "PQ code packing"). */
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

#define BLOCK 4096

dml_status dml_pq_init(dml_pq *pq, int d, int m, int nbits, dml_error *err)
{
    memset(pq, 0, sizeof *pq);
    if (m < 1 || d % m != 0 || nbits < 1 || nbits > 16)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "a product quantizer needs M dividing d and 1..16 bits (d = %d, M = %d, "
                             "nbits = %d)", d, m, nbits);
    pq->d = d;
    pq->m = m;
    pq->nbits = nbits;
    pq->ksub = 1 << nbits;
    pq->dsub = d / m;
    pq->centroids = calloc((size_t)d * pq->ksub, sizeof(float));
    if (!pq->centroids)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the codebooks");
    return DML_OK;
}

void dml_pq_free(dml_pq *pq)
{
    free(pq->centroids);
    memset(pq, 0, sizeof *pq);
}

size_t dml_pq_code_size(const dml_pq *pq)
{
    return ((size_t)pq->m * pq->nbits + 7) / 8;
}

/* Sub-vectors m of rows [0, n) gathered contiguous: out[n, dsub]. */
static void gather_sub(const dml_pq *pq, const float *x, size_t n, int m, float *out)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * pq->dsub, x + i * pq->d + (size_t)m * pq->dsub,
               (size_t)pq->dsub * sizeof(float));
}

static float *codebook(const dml_pq *pq, int m)
{
    return pq->centroids + (size_t)m * pq->ksub * pq->dsub;
}

static dml_status train(dml_pq *pq, const float *x, int n, int iters, int init_fresh,
                        dml_kmeans_init init, dml_rng *rng, dml_error *err)
{
    if (n < pq->ksub)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "PQ training needs at least k = %d rows, got %d", pq->ksub, n);
    float *sub = malloc((size_t)n * pq->dsub * sizeof(float));
    if (!sub)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for PQ training");
    dml_status st = DML_OK;
    for (int m = 0; st == DML_OK && m < pq->m; m++) {
        gather_sub(pq, x, (size_t)n, m, sub);
        st = init_fresh ? dml_kmeans(sub, n, pq->dsub, pq->ksub, iters, init, rng, codebook(pq, m),
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

void dml_pq_assign(const dml_pq *pq, const float *x, size_t n, int32_t *idx)
{
    size_t block = n < BLOCK ? n : BLOCK;
    float *sub = malloc((block ? block : 1) * pq->dsub * sizeof(float));
    float *scratch = malloc((block ? block : 1) * pq->ksub * sizeof(float));
    float *c_norms = malloc((size_t)pq->ksub * sizeof(float));
    int *lab = malloc((block ? block : 1) * sizeof(int));
    DML_ASSERT(sub && scratch && c_norms && lab);
    for (int m = 0; m < pq->m; m++) {
        const float *c = codebook(pq, m);
        for (int k = 0; k < pq->ksub; k++) {
            float s = 0.0f;
            for (int t = 0; t < pq->dsub; t++)
                s += c[(size_t)k * pq->dsub + t] * c[(size_t)k * pq->dsub + t];
            c_norms[k] = s;
        }
        for (size_t i0 = 0; i0 < n; i0 += block) {
            size_t rows = n - i0 < block ? n - i0 : block;
            gather_sub(pq, x + i0 * pq->d, rows, m, sub);
            dml_kmeans_assign(sub, (int)rows, pq->dsub, c, pq->ksub, c_norms, lab, NULL, scratch);
            for (size_t r = 0; r < rows; r++)
                idx[(i0 + r) * pq->m + m] = lab[r];
        }
    }
    free(sub);
    free(scratch);
    free(c_norms);
    free(lab);
}

void dml_pq_pack(const dml_pq *pq, const int32_t *idx, size_t n, uint8_t *codes)
{
    size_t cs = dml_pq_code_size(pq);
    for (size_t i = 0; i < n; i++) {
        uint8_t *code = codes + i * cs;
        memset(code, 0, cs);
        for (int m = 0; m < pq->m; m++)
            for (int b = 0; b < pq->nbits; b++) {
                size_t bit = (size_t)m * pq->nbits + b;
                if ((idx[i * pq->m + m] >> b) & 1)
                    code[bit >> 3] |= (uint8_t)(1u << (bit & 7));
            }
    }
}

void dml_pq_unpack(const dml_pq *pq, const uint8_t *codes, size_t n, int32_t *idx)
{
    size_t cs = dml_pq_code_size(pq);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *code = codes + i * cs;
        for (int m = 0; m < pq->m; m++) {
            int32_t v = 0;
            for (int b = 0; b < pq->nbits; b++) {
                size_t bit = (size_t)m * pq->nbits + b;
                v |= ((code[bit >> 3] >> (bit & 7)) & 1) << b;
            }
            idx[i * pq->m + m] = v;
        }
    }
}

void dml_pq_encode(const dml_pq *pq, const float *x, size_t n, uint8_t *codes)
{
    int32_t *idx = malloc((size_t)BLOCK * pq->m * sizeof(int32_t));
    DML_ASSERT(idx);
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        size_t rows = n - i0 < BLOCK ? n - i0 : BLOCK;
        dml_pq_assign(pq, x + i0 * pq->d, rows, idx);
        dml_pq_pack(pq, idx, rows, codes + i0 * dml_pq_code_size(pq));
    }
    free(idx);
}

void dml_pq_decode_idx(const dml_pq *pq, const int32_t *idx, size_t n, float *x)
{
    for (size_t i = 0; i < n; i++)
        for (int m = 0; m < pq->m; m++)
            memcpy(x + i * pq->d + (size_t)m * pq->dsub,
                   codebook(pq, m) + (size_t)idx[i * pq->m + m] * pq->dsub,
                   (size_t)pq->dsub * sizeof(float));
}

void dml_pq_decode(const dml_pq *pq, const uint8_t *codes, size_t n, float *x)
{
    int32_t *idx = malloc((size_t)pq->m * sizeof(int32_t));
    DML_ASSERT(idx);
    for (size_t i = 0; i < n; i++) {
        dml_pq_unpack(pq, codes + i * dml_pq_code_size(pq), 1, idx);
        dml_pq_decode_idx(pq, idx, 1, x + i * pq->d);
    }
    free(idx);
}

double dml_pq_quantization_mse(const dml_pq *pq, const float *x, size_t n)
{
    int32_t *idx = malloc((size_t)BLOCK * pq->m * sizeof(int32_t));
    float *rec = malloc((size_t)BLOCK * pq->d * sizeof(float));
    DML_ASSERT(idx && rec);
    double total = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += BLOCK) {
        size_t rows = n - i0 < BLOCK ? n - i0 : BLOCK;
        dml_pq_assign(pq, x + i0 * pq->d, rows, idx);
        dml_pq_decode_idx(pq, idx, rows, rec);
        for (size_t k = 0; k < rows * pq->d; k++) {
            double e = (double)x[i0 * pq->d + k] - rec[k];
            total += e * e;
        }
    }
    free(idx);
    free(rec);
    return n ? total / (double)n : 0.0;
}

void dml_pq_adc_table(const dml_pq *pq, const float *query, float *table)
{
    for (int m = 0; m < pq->m; m++) {
        const float *q = query + (size_t)m * pq->dsub, *c = codebook(pq, m);
        for (int k = 0; k < pq->ksub; k++) {
            float s = 0.0f;
            for (int t = 0; t < pq->dsub; t++) {
                float e = q[t] - c[(size_t)k * pq->dsub + t];
                s += e * e;
            }
            table[(size_t)m * pq->ksub + k] = s;
        }
    }
}

void dml_pq_adc_distances(const dml_pq *pq, const float *table, const uint8_t *codes, size_t n,
                          float *dist)
{
    size_t cs = dml_pq_code_size(pq);
    if (pq->nbits == 8) { /* the common case: one byte per sub-quantizer */
        for (size_t i = 0; i < n; i++) {
            const uint8_t *code = codes + i * cs;
            float s = 0.0f;
            for (int m = 0; m < pq->m; m++)
                s += table[(size_t)m * 256 + code[m]];
            dist[i] = s;
        }
        return;
    }
    int32_t *idx = malloc((size_t)pq->m * sizeof(int32_t));
    DML_ASSERT(idx);
    for (size_t i = 0; i < n; i++) {
        dml_pq_unpack(pq, codes + i * cs, 1, idx);
        float s = 0.0f;
        for (int m = 0; m < pq->m; m++)
            s += table[(size_t)m * pq->ksub + idx[m]];
        dist[i] = s;
    }
    free(idx);
}
