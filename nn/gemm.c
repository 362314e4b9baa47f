/* The one place dml calls cblas_sgemm, so transposes and leading dimensions are worked
 * out once. OpenBLAS threads are set here too, deliberately, never implicitly. */
#include <cblas.h>
#include <stdatomic.h>
#include <string.h>

#include "nn/nn.h"

/* Products under this many multiply-adds run on one thread. Below it, waking OpenBLAS's
 * other threads costs more than they save: on the 2-core development machine a 64x128x64
 * product (the small fine-tuning model's layers) takes 13 us on one thread and 31 us on two,
 * and at 1M multiply-adds two threads start to win (18 against 25 us). OpenBLAS's own cut-off
 * (256K) sits below that. */
#define SERIAL_MULTIPLY_ADDS (1 << 20)

/* The count dml_set_threads chose (0: never called, OpenBLAS left as it is) and the count
 * OpenBLAS has now. Atomic because encoders may run dml_gemm on several threads at once. */
static atomic_int threads_chosen;
static atomic_int threads_now;

/* Returns the thread count the product will run on. */
static int use_threads(int m, int n, int k)
{
    int chosen = atomic_load_explicit(&threads_chosen, memory_order_relaxed);
    if (chosen <= 1)
        return 1;
    int want = (double)m * n * k < SERIAL_MULTIPLY_ADDS ? 1 : chosen;
    if (atomic_exchange_explicit(&threads_now, want, memory_order_relaxed) != want)
        openblas_set_num_threads(want);
    return want;
}

static void zero_rows(float *c, int m, int n, int ldc)
{
    if (ldc == n) {
        memset(c, 0, (size_t)m * n * sizeof(float));
        return;
    }
    for (int i = 0; i < m; i++)
        memset(c + (size_t)i * ldc, 0, (size_t)n * sizeof(float));
}

void dml_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    /* beta 0 on several threads: C is zeroed here and the product added onto it (beta 1), which
     * is what OpenBLAS does too, so the result is the same to the bit; but its threaded zeroing
     * pass was the slower (k-means' 4096 x 256 x 16 blocks: 320 us against 271 on two cores). */
    if (use_threads(m, n, k) > 1 && beta == 0.0f) {
        zero_rows(c, m, n, ldc);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int dml_set_threads(int n)
{
    if (n <= 0)
        n = openblas_get_num_procs();
    openblas_set_num_threads(n);
    n = openblas_get_num_threads();
    atomic_store(&threads_chosen, n);
    atomic_store(&threads_now, n);
    return n;
}
