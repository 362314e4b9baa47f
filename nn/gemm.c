/* The one place dml calls cblas_sgemm, so transposes and leading dimensions are worked
 * out once. OpenBLAS threads are set here too, deliberately, never implicitly. */
#include <cblas.h>

#include "nn/nn.h"

void dml_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m == 0 || n == 0)
        return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

int dml_set_threads(int n)
{
    if (n <= 0)
        n = openblas_get_num_procs();
    openblas_set_num_threads(n);
    return openblas_get_num_threads();
}
