/* How spread out a set of embeddings is: the collapse diagnostics (design/metrics.md's
 * "embedding spread"). A collapsing encoder maps every row near one point or one line: the
 * per-dimension standard deviations shrink, or the covariance's variance concentrates in a few
 * directions, which the effective rank (Roy & Vetterli 2007) counts: exp of the entropy of the
 * covariance's eigenvalues normalised to sum 1, from 1 (one direction) to d (isotropic). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

/* Eigenvalues of the symmetric a[d, d] (destroyed) by cyclic Jacobi rotations, into ev[d].
 * d is an embedding width (tens to hundreds), so d^3 per sweep is cheap beside the search. */
static void jacobi_eigenvalues(double *a, int d, double *ev)
{
    for (int sweep = 0; sweep < 50; sweep++) {
        double off = 0.0, diag = 0.0;
        for (int p = 0; p < d; p++) {
            diag += a[(size_t)p * d + p] * a[(size_t)p * d + p];
            for (int q = p + 1; q < d; q++)
                off += a[(size_t)p * d + q] * a[(size_t)p * d + q];
        }
        if (off <= 1e-22 * diag)
            break;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = a[(size_t)p * d + q];
                if (fabs(apq) < 1e-300)
                    continue;
                double theta = (a[(size_t)q * d + q] - a[(size_t)p * d + p]) / (2.0 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < d; k++) { /* columns p and q */
                    double akp = a[(size_t)k * d + p], akq = a[(size_t)k * d + q];
                    a[(size_t)k * d + p] = c * akp - s * akq;
                    a[(size_t)k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) { /* rows p and q */
                    double apk = a[(size_t)p * d + k], aqk = a[(size_t)q * d + k];
                    a[(size_t)p * d + k] = c * apk - s * aqk;
                    a[(size_t)q * d + k] = s * apk + c * aqk;
                }
            }
    }
    for (int p = 0; p < d; p++)
        ev[p] = a[(size_t)p * d + p];
}

dml_status dml_embedding_spread(const float *z, int n, int d, dml_spread *out, dml_error *err)
{
    memset(out, 0, sizeof *out);
    out->pos_dist = out->neg_dist = NAN;
    if (n < 2)
        return DML_OK;
    double *mean = calloc((size_t)d, sizeof *mean), *cov = calloc((size_t)d * d, sizeof *cov);
    double *ev = malloc((size_t)d * sizeof *ev);
    if (!mean || !cov || !ev) {
        free(mean);
        free(cov);
        free(ev);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the spread");
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++)
            mean[j] += z[(size_t)i * d + j];
    for (int j = 0; j < d; j++)
        mean[j] /= n;
    for (int i = 0; i < n; i++) {
        const float *row = z + (size_t)i * d;
        for (int p = 0; p < d; p++) {
            double dp = row[p] - mean[p];
            for (int q = p; q < d; q++)
                cov[(size_t)p * d + q] += dp * (row[q] - mean[q]);
        }
    }
    double std_sum = 0.0;
    for (int p = 0; p < d; p++)
        for (int q = p; q < d; q++) {
            cov[(size_t)p * d + q] /= n - 1;
            cov[(size_t)q * d + p] = cov[(size_t)p * d + q];
        }
    double var_sum = 0.0, sq_norm = 0.0;
    for (int p = 0; p < d; p++) {
        std_sum += sqrt(cov[(size_t)p * d + p]);
        var_sum += cov[(size_t)p * d + p];
    }
    for (size_t k = 0; k < (size_t)n * d; k++)
        sq_norm += (double)z[k] * z[k];
    out->mean_std = std_sum / d;
    out->relative_spread = sq_norm > 0.0 ? sqrt(var_sum / (sq_norm / n)) : 0.0;
    jacobi_eigenvalues(cov, d, ev);
    double total = 0.0, entropy = 0.0;
    for (int p = 0; p < d; p++)
        total += ev[p] > 0.0 ? ev[p] : 0.0;
    for (int p = 0; p < d && total > 0.0; p++)
        if (ev[p] > 0.0) {
            double w = ev[p] / total;
            entropy -= w * log(w);
        }
    out->effective_rank = total > 0.0 ? exp(entropy) : 0.0;
    out->rows = n;
    free(mean);
    free(cov);
    free(ev);
    return DML_OK;
}

void dml_label_distances(const float *z, const int32_t *y, int n, int d, dml_spread *out)
{
    /* Every pair of the first rows, enough to estimate two means: O(n^2 d) stays small. */
    int m = n < DML_SPREAD_MAX_PAIR_ROWS ? n : DML_SPREAD_MAX_PAIR_ROWS;
    double sum[2] = {0.0, 0.0};
    long count[2] = {0, 0};
    for (int i = 0; i < m; i++)
        for (int j = i + 1; j < m; j++) {
            double d2 = 0.0;
            for (int k = 0; k < d; k++) {
                double t = (double)z[(size_t)i * d + k] - z[(size_t)j * d + k];
                d2 += t * t;
            }
            int other = y[i] != y[j];
            sum[other] += sqrt(d2);
            count[other]++;
        }
    out->pos_dist = count[0] ? sum[0] / count[0] : NAN;
    out->neg_dist = count[1] ? sum[1] / count[1] : NAN;
}

void dml_label_distances_text(const dml_spread *s, char *out, size_t n)
{
    char pos[32] = "-", neg[32] = "-";
    if (!isnan(s->pos_dist))
        snprintf(pos, sizeof pos, "%.3f", s->pos_dist);
    if (!isnan(s->neg_dist))
        snprintf(neg, sizeof neg, "%.3f", s->neg_dist);
    const char *why = isnan(s->pos_dist) == isnan(s->neg_dist) ? "" /* both, or fewer than 2 rows */
                      : isnan(s->neg_dist) ? " (one label: no pair across labels)"
                                           : " (no two rows share a label)";
    snprintf(out, n, "%s/%s%s", pos, neg, why);
}

int dml_spread_collapsed(const dml_spread *s)
{
    return s->rows >= 2 && (s->effective_rank < DML_COLLAPSE_MIN_RANK ||
                            s->relative_spread < DML_COLLAPSE_MIN_SPREAD);
}
