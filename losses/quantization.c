/* The quantization term of the joint loss (DQN, Cao et al. 2016): how far each embedding is
 * from its nearest product-quantizer codeword. Codes are reassigned on every forward; the
 * codebooks are not parameters (k-means refits them on the trainer's schedule). */
#include <string.h>

#include "losses/losses.h"

typedef struct quant_cache {
    float *q;      /* [B, D]: the nearest codeword of each row */
    float *sub;    /* [B, dsub]: one sub-space of z, contiguous */
    float *scores; /* [B, ksub]: GEMM scratch of the assignment */
    float *norms;  /* [ksub] */
    int *code;     /* [B] */
} quant_cache;

static void quantization_forward(dml_tensor *out)
{
    const dml_tensor *z = out->src[0];
    const dml_pq *pq = out->ctx;
    quant_cache *c = out->cache;
    int b = z->rows;
    for (int m = 0; m < pq->m; m++) {
        const float *book = pq->centroids + (size_t)m * pq->ksub * pq->dsub;
        for (int k = 0; k < pq->ksub; k++) {
            float s = 0.0f;
            for (int t = 0; t < pq->dsub; t++)
                s += book[(size_t)k * pq->dsub + t] * book[(size_t)k * pq->dsub + t];
            c->norms[k] = s;
        }
        for (int i = 0; i < b; i++)
            memcpy(c->sub + (size_t)i * pq->dsub, z->data + (size_t)i * z->cols + m * pq->dsub,
                   (size_t)pq->dsub * sizeof(float));
        dml_kmeans_assign(c->sub, b, pq->dsub, book, pq->ksub, c->norms, c->code, NULL, c->scores);
        for (int i = 0; i < b; i++)
            memcpy(c->q + (size_t)i * z->cols + m * pq->dsub, book + (size_t)c->code[i] * pq->dsub,
                   (size_t)pq->dsub * sizeof(float));
    }
    out->data[0] = b > 0 ? (float)(dml_sum_sq_diff(z->data, c->q, (size_t)b * z->cols) / b) : 0.0f;
}

static void quantization_backward(dml_tensor *out)
{
    dml_tensor *z = out->src[0];
    const quant_cache *c = out->cache;
    if (z->rows == 0)
        return;
    float g = 2.0f * out->grad[0] / (float)z->rows;
    for (size_t k = 0; k < (size_t)z->rows * z->cols; k++)
        z->grad[k] += g * (z->data[k] - c->q[k]);
}

const dml_op_def dml_op_quantization = {"quantization", quantization_forward,
                                        quantization_backward};

dml_tensor *dml_loss_quantization(dml_graph *g, dml_tensor *z, const dml_pq *pq)
{
    if (!z)
        return NULL;
    DML_ASSERT(z->cols == pq->d);
    dml_tensor *out = dml_graph_node(g, &dml_op_quantization, 1, 1, z, NULL, NULL);
    quant_cache *c = out ? dml_graph_alloc(g, sizeof *c) : NULL;
    if (!c)
        return NULL;
    size_t b = (size_t)(z->rows > 0 ? z->rows : 1);
    c->q = dml_graph_alloc(g, b * pq->d * sizeof(float));
    c->sub = dml_graph_alloc(g, b * pq->dsub * sizeof(float));
    c->scores = dml_graph_alloc(g, (b < 4096 ? b : 4096) * pq->ksub * sizeof(float));
    c->norms = dml_graph_alloc(g, (size_t)pq->ksub * sizeof(float));
    c->code = dml_graph_alloc(g, b * sizeof(int));
    if (!c->q || !c->sub || !c->scores || !c->norms || !c->code)
        return NULL;
    out->ctx = pq;
    out->cache = c;
    return dml_graph_run(g, out);
}
