/* The 2-D view of the report's scatter: the covariance of the centred rows by one GEMM, then its
 * two leading eigenvectors by power iteration (the second kept orthogonal to the first). */
#include <math.h>
#include <stdlib.h>

#include "eval/eval.h"

#define POWER_ITERS 1000
#define POWER_TOL 1e-9

/* The leading eigenvector of the symmetric cov[d, d] orthogonal to the unit vector against
 * (NULL: none), into v[d]; returns its eigenvalue. w[d] is scratch. */
static double leading(const double *cov, int d, const double *against, double *v, double *w)
{
    for (int j = 0; j < d; j++) /* a fixed start with no special alignment to any axis */
        v[j] = 1.0 + 0.5 * sin(1.7 * j + 0.3);
    double lambda = 0.0;
    for (int it = 0; it < POWER_ITERS; it++) {
        for (int a = 0; against && a < 2; a++) { /* twice: orthogonal to rounding too */
            double dot = 0.0;
            for (int j = 0; j < d; j++)
                dot += v[j] * against[j];
            for (int j = 0; j < d; j++)
                v[j] -= dot * against[j];
        }
        double norm = 0.0;
        for (int j = 0; j < d; j++)
            norm += v[j] * v[j];
        if (norm <= 0.0)
            return 0.0; /* nothing left in this direction: rank below 2 */
        norm = sqrt(norm);
        for (int j = 0; j < d; j++)
            v[j] /= norm;
        for (int i = 0; i < d; i++) {
            double s = 0.0;
            for (int j = 0; j < d; j++)
                s += cov[(size_t)i * d + j] * v[j];
            w[i] = s;
        }
        double change = 0.0, next = 0.0;
        for (int j = 0; j < d; j++)
            next += w[j] * v[j];
        for (int j = 0; j < d; j++) {
            double wn = w[j], prev = v[j];
            v[j] = wn;
            change += fabs(prev * next - wn); /* |lambda v - C v|: zero at an eigenvector */
        }
        lambda = next;
        if (change <= POWER_TOL * (fabs(lambda) + 1e-30) * d)
            break;
    }
    double norm = 0.0;
    for (int j = 0; j < d; j++)
        norm += v[j] * v[j];
    norm = sqrt(norm);
    for (int j = 0; j < d; j++)
        v[j] = norm > 0.0 ? v[j] / norm : 0.0;
    return lambda;
}

dml_status dml_pca2(const float *x, int n, int d, float *out, double *explained, dml_error *err)
{
    if (n < 1 || d < 1)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "PCA: expected at least one row of width >= 1 (got %d x %d)", n, d);
    float *xc = malloc((size_t)n * d * sizeof(float)), *c = malloc((size_t)d * d * sizeof(float));
    float *dirs = calloc(2 * (size_t)d, sizeof(float));
    double *mean = calloc((size_t)d, sizeof(double)), *cov = malloc((size_t)d * d * sizeof(double));
    double *v = malloc(4 * (size_t)d * sizeof(double));
    dml_status st = DML_OK;
    if (!xc || !c || !dirs || !mean || !cov || !v) {
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the PCA");
        goto done;
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            mean[j] += x[(size_t)i * d + j];
    for (int j = 0; j < d; j++)
        mean[j] /= n;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            xc[(size_t)i * d + j] = (float)(x[(size_t)i * d + j] - mean[j]);
    dml_gemm(1, 0, d, d, n, 1.0f / (float)(n > 1 ? n - 1 : 1), xc, d, xc, d, 0.0f, c, d);
    for (size_t k = 0; k < (size_t)d * d; k++)
        cov[k] = c[k];
    double *v1 = v, *v2 = v + d, *w = v + 2 * (size_t)d;
    double lambda1 = leading(cov, d, NULL, v1, w), lambda2 = 0.0, trace = 0.0;
    if (d > 1)
        lambda2 = leading(cov, d, v1, v2, w);
    else
        v2[0] = 0.0;
    for (int j = 0; j < d; j++)
        trace += cov[(size_t)j * d + j];
    if (explained) {
        explained[0] = trace > 0.0 ? lambda1 / trace : 0.0;
        explained[1] = trace > 0.0 ? lambda2 / trace : 0.0;
    }
    for (int p = 0; p < 2; p++) { /* a fixed sign: the largest entry positive */
        double *vp = p ? v2 : v1, big = 0.0;
        for (int j = 0; j < d; j++)
            big = fabs(vp[j]) > fabs(big) ? vp[j] : big;
        for (int j = 0; j < d; j++)
            dirs[(size_t)p * d + j] = (float)(big < 0.0 ? -vp[j] : vp[j]);
    }
    dml_gemm(0, 1, n, 2, d, 1.0f, xc, d, dirs, d, 0.0f, out, 2);
done:
    free(xc);
    free(c);
    free(dirs);
    free(mean);
    free(cov);
    free(v);
    return st;
}
