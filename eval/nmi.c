/* nmi of metrics.md: k-means (k = number of classes, k-means++, best of 5 by inertia) on the
 * embeddings, then normalised mutual information with arithmetic-mean normalisation,
 * NMI = I(A; B) / ((H(A) + H(B)) / 2), as sklearn's normalized_mutual_info_score. */
#include <math.h>
#include <stdlib.h>

#include "eval/eval.h"

/* Dense ids of v[n] into out[n]; the number of distinct values, -1 when out of memory. */
static int dense(const int32_t *v, int n, int *out)
{
    int32_t *values;
    int k = dml_labels_distinct(v, n, &values);
    for (int i = 0; k > 0 && i < n; i++)
        out[i] = dml_labels_find(values, k, v[i]);
    free(values);
    return k;
}

static double entropy(const double *count, int k, double n)
{
    double h = 0.0;
    for (int i = 0; i < k; i++)
        if (count[i] > 0.0)
            h -= count[i] / n * log(count[i] / n);
    return h;
}

double dml_nmi(const int32_t *a, const int32_t *b, int n)
{
    if (n < 1)
        return NAN;
    int *ia = malloc((size_t)n * sizeof *ia), *ib = malloc((size_t)n * sizeof *ib);
    int ka = ia ? dense(a, n, ia) : -1, kb = ib ? dense(b, n, ib) : -1;
    double *joint = ka > 0 && kb > 0 ? calloc((size_t)ka * kb + ka + kb, sizeof(double)) : NULL;
    double nmi = NAN;
    if (joint) {
        double *ca = joint + (size_t)ka * kb, *cb = ca + ka;
        for (int i = 0; i < n; i++) {
            joint[(size_t)ia[i] * kb + ib[i]] += 1.0;
            ca[ia[i]] += 1.0;
            cb[ib[i]] += 1.0;
        }
        double mi = 0.0;
        for (int i = 0; i < ka; i++)
            for (int j = 0; j < kb; j++) {
                double c = joint[(size_t)i * kb + j];
                if (c > 0.0)
                    mi += c / n * log(c * n / (ca[i] * cb[j]));
            }
        double h = 0.5 * (entropy(ca, ka, n) + entropy(cb, kb, n));
        /* Both labelings constant: the same partition, 1 (sklearn's convention). */
        nmi = ka == 1 && kb == 1 ? 1.0 : h > 0.0 ? mi / h : 0.0;
    }
    free(ia);
    free(ib);
    free(joint);
    return nmi;
}

dml_status dml_eval_nmi(const float *x, const int32_t *labels, int n, int d, uint64_t seed,
                        double *nmi, dml_error *err)
{
    int32_t *values;
    int k = dml_labels_distinct(labels, n, &values);
    free(values);
    float *centroids = malloc((size_t)(k > 0 ? k : 1) * d * sizeof(float));
    int *assign = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    int32_t *best = malloc((size_t)(n > 0 ? n : 1) * sizeof(int32_t));
    dml_status st = DML_OK;
    if (k < 0 || !centroids || !assign || !best)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for nmi's k-means");
    dml_rng rng;
    dml_rng_seed(&rng, seed);
    double best_inertia = INFINITY;
    for (int run = 0; st == DML_OK && run < DML_NMI_RUNS; run++) {
        double inertia;
        st = dml_kmeans(x, n, d, k, DML_NMI_ITERS, DML_KMEANS_PLUSPLUS, &rng, centroids, assign,
                        &inertia, err);
        if (st == DML_OK && inertia < best_inertia) {
            best_inertia = inertia;
            for (int i = 0; i < n; i++)
                best[i] = assign[i];
        }
    }
    if (st == DML_OK && n > 0 && isnan(*nmi = dml_nmi(best, labels, n))) /* its scratch */
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for nmi");
    free(centroids);
    free(assign);
    free(best);
    return st;
}
