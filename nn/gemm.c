/* The one place dml calls cblas_sgemm, so transposes and leading dimensions are worked
 * out once. Threads are set here too, deliberately, never implicitly.
 *
 * Once dml_set_threads has been called, OpenBLAS runs on one thread and dml splits a large
 * product itself: C's rows (or columns) in one block per thread of dml's pool (nn/pool.c), each
 * block one single-threaded cblas_sgemm. The second core is then dml's between products as well
 * as during them, so the element-wise passes can use it (OpenBLAS's threads would sit in its idle
 * loop there).
 *
 * Rounding: the same thread count gives the same bits. Another count moves the blocks' edges,
 * which under OpenBLAS's SkylakeX kernel changes nothing, but under its Haswell and Zen kernels
 * sums the elements near an edge another way (an edge inside a register tile): results move at
 * the rounding level, as they did under OpenBLAS's own threads (whose driver also cuts the k loop
 * differently from its single thread: K = 784 as 384 + 200 + 200 against 384 + 208 + 192). */
#include <cblas.h>
#include <stdatomic.h>
#include <string.h>

#include "nn/nn.h"

/* Products under this many multiply-adds run whole on the calling thread: below it, handing
 * half to another thread costs more than it saves. */
#define SPLIT_MULTIPLY_ADDS (1 << 20)

/* The count dml_set_threads chose (0: never called, OpenBLAS left as it is). */
static atomic_int threads_chosen;

typedef struct {
    int trans_a, trans_b, m, n, k, lda, ldb, ldc, split_rows;
    float alpha, beta;
    const float *a, *b;
    float *c;
} product;

static void zero_rows(float *c, int m, int n, int ldc)
{
    if (ldc == n) {
        memset(c, 0, (size_t)m * n * sizeof(float));
        return;
    }
    for (int i = 0; i < m; i++)
        memset(c + (size_t)i * ldc, 0, (size_t)n * sizeof(float));
}

static void multiply(const product *p)
{
    if (p->m == 0 || p->n == 0)
        return;
    cblas_sgemm(CblasRowMajor, p->trans_a ? CblasTrans : CblasNoTrans,
                p->trans_b ? CblasTrans : CblasNoTrans, p->m, p->n, p->k, p->alpha, p->a, p->lda,
                p->b, p->ldb, p->beta, p->c, p->ldc);
}

/* One thread's block of C: rows [s, e) of C and op(A), or columns [s, e) of C and op(B). */
static void multiply_part(void *ctx, int part, int parts)
{
    product q = *(const product *)ctx;
    size_t s, e;
    if (q.split_rows) {
        dml_pool_range((size_t)q.m, DML_GEMM_BLOCK_ALIGN, part, parts, &s, &e);
        q.m = (int)(e - s);
        q.a += q.trans_a ? s : s * (size_t)q.lda;
        q.c += s * (size_t)q.ldc;
    } else {
        dml_pool_range((size_t)q.n, DML_GEMM_BLOCK_ALIGN, part, parts, &s, &e);
        q.n = (int)(e - s);
        q.b += q.trans_b ? s * (size_t)q.ldb : s;
        q.c += s;
    }
    /* beta 0: C is zeroed here and the product added onto it (beta 1), as OpenBLAS itself does,
     * so the bits are the same; and no block falls to OpenBLAS's beta-0-only small-matrix path,
     * which sums k in another order. */
    if (q.beta == 0.0f && q.m > 0 && q.n > 0) {
        zero_rows(q.c, q.m, q.n, q.ldc);
        q.beta = 1.0f;
    }
    multiply(&q);
}

dml_gemm_blocks dml_gemm_blocking(int m, int n, int k)
{
    if (atomic_load_explicit(&threads_chosen, memory_order_relaxed) == 0 ||
        (double)m * n * k < SPLIT_MULTIPLY_ADDS)
        return DML_GEMM_WHOLE;
    return m >= n ? DML_GEMM_BY_ROWS : DML_GEMM_BY_COLS;
}

void dml_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    dml_gemm_blocks split = dml_gemm_blocking(m, n, k);
    product p = {trans_a, trans_b, m, n, k, lda, ldb, ldc, split == DML_GEMM_BY_ROWS, alpha, beta,
                 a, b, c};
    if (split == DML_GEMM_WHOLE)
        multiply(&p);
    else
        dml_pool_run(multiply_part, &p); /* on one thread, the same blocks' arithmetic */
}

int dml_set_threads(int n)
{
    if (n <= 0)
        n = openblas_get_num_procs();
    openblas_set_num_threads(1);
    n = dml_pool_resize(n);
    atomic_store(&threads_chosen, n);
    return n;
}
