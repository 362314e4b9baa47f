/* Lloyd's k-means. The assignment step is one GEMM per block of rows,
 * |x - c|^2 = |x|^2 + |c|^2 - 2 x.c, then an argmin per row; the update step averages in double;
 * empty clusters are re-seeded. A run allocates one workspace up front, nothing per iteration. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

/* A block's GEMM scores stay under this many floats (16 MB), whatever k is. */
#define BLOCK_FLOATS ((size_t)1 << 22)
/* Independent lanes of the argmin's first pass: 32 keep two AVX-512 (four AVX2) registers of
 * minimums in flight, so the pass is not bound by one chain of dependent min operations
 * (256 rows x 256 centroids: 35 us with 8 lanes, 11 us with 32). */
#define LANES 32

int dml_kmeans_block_rows(int n, int k)
{
    size_t rows = BLOCK_FLOATS / (size_t)(k > 1 ? k : 1);
    if (rows > DML_KMEANS_BLOCK)
        rows = DML_KMEANS_BLOCK;
    if (rows > (size_t)n)
        rows = (size_t)n;
    return rows > 0 ? (int)rows : 1;
}

static float sq_norm(const float *v, int d)
{
    float s = 0.0f;
    for (int t = 0; t < d; t++)
        s += v[t] * v[t];
    return s;
}

static void sq_norms(const float *x, int n, int d, float *out)
{
    for (int i = 0; i < n; i++)
        out[i] = sq_norm(x + (size_t)i * d, d);
}

/* The first j with the smallest s[j] + cn[j]. Two passes the compiler vectorizes: the minimum
 * over LANES independent lanes, then the first block of LANES that holds it. Both passes round
 * each sum to float the same way, so the equality test is exact. All-NaN scores give 0. */
DML_SIMD_CLONES static int argmin(const float *restrict s, const float *restrict cn, int k)
{
    float lane[LANES];
    for (int l = 0; l < LANES; l++)
        lane[l] = INFINITY;
    int j = 0;
    for (; j + LANES <= k; j += LANES)
        for (int l = 0; l < LANES; l++) {
            float v = s[j + l] + cn[j + l];
            lane[l] = v < lane[l] ? v : lane[l];
        }
    float m = INFINITY;
    for (; j < k; j++) {
        float v = s[j] + cn[j];
        m = v < m ? v : m;
    }
    for (int l = 0; l < LANES; l++)
        m = lane[l] < m ? lane[l] : m;
    for (j = 0; j + LANES <= k; j += LANES) {
        int hit = 0;
        for (int l = 0; l < LANES; l++) {
            float v = s[j + l] + cn[j + l];
            hit |= v == m;
        }
        if (hit)
            break;
    }
    for (; j < k; j++) {
        float v = s[j] + cn[j];
        if (v == m)
            return j;
    }
    return 0;
}

static float sq_dist(const float *a, const float *b, int d)
{
    float s = 0.0f;
    for (int t = 0; t < d; t++) {
        float e = a[t] - b[t];
        s += e * e;
    }
    return s;
}

/* The argmin reads the GEMM's scores; the distance to the chosen centroid is then recomputed
 * directly (O(d) a row), since |x|^2 + |c|^2 - 2 x.c loses the small distances of rows far from
 * the origin to cancellation. */
double dml_kmeans_assign(const float *x, int n, int d, const float *c, int k, const float *c_norms,
                         int *assign, float *dist, float *scratch)
{
    int block = dml_kmeans_block_rows(n, k);
    double total = 0.0;
    for (int i0 = 0; i0 < n; i0 += block) {
        int rows = n - i0 < block ? n - i0 : block;
        const float *xb = x + (size_t)i0 * d;
        dml_gemm(0, 1, rows, k, d, -2.0f, xb, d, c, d, 0.0f, scratch, k);
        for (int r = 0; r < rows; r++) {
            int j = argmin(scratch + (size_t)r * k, c_norms, k);
            float e = sq_dist(xb + (size_t)r * d, c + (size_t)j * d, d);
            if (assign)
                assign[i0 + r] = j;
            if (dist)
                dist[i0 + r] = e;
            total += e;
        }
    }
    return total;
}

/* Everything one run needs, carved from one allocation. */
typedef struct km_work {
    double *sum;    /* [k, d] per-cluster sums of the update step */
    float *c_norms; /* [k] */
    float *x_norms; /* [n] k-means++ only */
    float *scores;  /* [block, k] the GEMM's output; k-means++ uses its first block floats */
    float *dist;    /* [n] squared distance of each row to its centroid; k-means++'s D^2 */
    int *count;     /* [k] rows per cluster */
    int *lab;       /* [n] each row's cluster: the caller's assign, or ours */
    void *mem;
} km_work;

static int work_init(km_work *w, int n, int d, int k, int *assign)
{
    size_t block = (size_t)dml_kmeans_block_rows(n, k);
    size_t n_floats = (size_t)k + 2 * (size_t)n + block * (size_t)k;
    size_t n_ints = (size_t)k + (assign ? 0 : (size_t)n);
    w->mem = malloc((size_t)k * d * sizeof(double) + n_floats * sizeof(float) +
                    n_ints * sizeof(int));
    if (!w->mem)
        return 0;
    w->sum = w->mem;
    w->c_norms = (float *)(w->sum + (size_t)k * d);
    w->x_norms = w->c_norms + k;
    w->dist = w->x_norms + n;
    w->scores = w->dist + n;
    w->count = (int *)(w->scores + block * (size_t)k);
    w->lab = assign ? assign : w->count + k;
    return 1;
}

/* k-means++ (Arthur & Vassilvitskii 2007): the first centroid is a uniform row, each next one
 * a row drawn with probability proportional to its squared distance to the nearest centroid so
 * far. The distances to a new centroid come from GEMM products in blocks of rows. */
static void init_plusplus(const float *x, int n, int d, int k, dml_rng *rng, float *c, km_work *w)
{
    int block = dml_kmeans_block_rows(n, k);
    float *mind = w->dist, *dot = w->scores;
    sq_norms(x, n, d, w->x_norms);
    int pick = (int)dml_rng_below(rng, (uint32_t)n);
    for (int i = 0; i < n; i++)
        mind[i] = INFINITY;
    for (int j = 0;; j++) {
        float *cj = c + (size_t)j * d;
        memcpy(cj, x + (size_t)pick * d, (size_t)d * sizeof(float));
        if (j + 1 == k)
            return;
        float cn = w->x_norms[pick];
        double total = 0.0;
        for (int i0 = 0; i0 < n; i0 += block) {
            int rows = n - i0 < block ? n - i0 : block;
            dml_gemm(0, 1, rows, 1, d, 1.0f, x + (size_t)i0 * d, d, cj, d, 0.0f, dot, 1);
            for (int r = 0; r < rows; r++) {
                float e = w->x_norms[i0 + r] + cn - 2.0f * dot[r];
                e = e > 0.0f ? e : 0.0f;
                if (e < mind[i0 + r])
                    mind[i0 + r] = e;
                total += mind[i0 + r];
            }
        }
        total -= mind[pick]; /* the pick's own distance is rounding noise: make it exactly 0 */
        mind[pick] = 0.0f;
        if (!(total > 0.0)) { /* every row sits on a centroid already: any row will do */
            pick = (int)dml_rng_below(rng, (uint32_t)n);
            continue;
        }
        double r = (double)dml_rng_uniform(rng) * total, acc = 0.0;
        pick = -1;
        for (int i = 0; i < n && pick < 0; i++) {
            acc += mind[i];
            if (acc > r)
                pick = i;
        }
        if (pick < 0) /* r landed in the rounding slack at the end of the sum */
            for (pick = n - 1; mind[pick] == 0.0f; pick--)
                ;
    }
}

/* k distinct rows: a partial Fisher-Yates shuffle of the row numbers (perm holds n ints). */
static void init_random_rows(const float *x, int n, int d, int k, dml_rng *rng, float *c, int *perm)
{
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int j = 0; j < k; j++) {
        int r = j + (int)dml_rng_below(rng, (uint32_t)(n - j));
        int t = perm[j];
        perm[j] = perm[r];
        perm[r] = t;
        memcpy(c + (size_t)j * d, x + (size_t)perm[j] * d, (size_t)d * sizeof(float));
    }
}

/* Each centroid becomes the mean of its rows; empty clusters keep theirs (for reseed). */
static void update(const float *x, int n, int d, int k, float *c, km_work *w)
{
    memset(w->sum, 0, (size_t)k * d * sizeof(double));
    memset(w->count, 0, (size_t)k * sizeof(int));
    for (int i = 0; i < n; i++) {
        int j = w->lab[i];
        double *s = w->sum + (size_t)j * d;
        const float *xi = x + (size_t)i * d;
        w->count[j]++;
        for (int t = 0; t < d; t++)
            s[t] += xi[t];
    }
    for (int j = 0; j < k; j++)
        for (int t = 0; w->count[j] > 0 && t < d; t++)
            c[(size_t)j * d + t] = (float)(w->sum[(size_t)j * d + t] / w->count[j]);
}

/* An empty cluster takes, as its centroid, the row of the currently largest cluster that lies
 * farthest from that cluster's centroid; the row moves to it, so several empty clusters split
 * the largest ones in turn. FAISS instead copies the centroid of a cluster drawn in proportion
 * to its size and pushes the two copies apart by a relative 1/1024; a data row needs no random
 * draw, moves even a centroid at the origin, and is the row the cluster serves worst. With
 * n >= k an empty cluster implies one of at least 2 rows, so the largest never empties. */
static void reseed(const float *x, int n, int d, int k, float *c, km_work *w)
{
    for (int j = 0; j < k; j++) {
        if (w->count[j] > 0)
            continue;
        int big = 0;
        for (int t = 1; t < k; t++)
            if (w->count[t] > w->count[big])
                big = t;
        int far = -1;
        for (int i = 0; i < n; i++)
            if (w->lab[i] == big && (far < 0 || w->dist[i] > w->dist[far]))
                far = i;
        DML_ASSERT(far >= 0 && w->count[big] >= 2);
        memcpy(c + (size_t)j * d, x + (size_t)far * d, (size_t)d * sizeof(float));
        w->lab[far] = j;
        w->dist[far] = 0.0f;
        w->count[j] = 1;
        w->count[big]--;
    }
}

/* How a run starts: from the caller's centroids, or one of the dml_kmeans_init modes. */
enum { FROM_GIVEN = -1 };

static dml_status run(const float *x, int n, int d, int k, int iters, int init, dml_rng *rng,
                      float *c, int *assign, double *inertia, dml_error *err)
{
    int known = init == FROM_GIVEN || init == DML_KMEANS_PLUSPLUS || init == DML_KMEANS_RANDOM_ROWS;
    if (k < 1 || d < 1 || iters < 0 || !x || !c || !known || (init != FROM_GIVEN && !rng))
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "k-means needs k >= 1, d >= 1, iters >= 0, data, centroids, a known "
                             "init and a random generator (k = %d, d = %d, iters = %d, init = %d)",
                             k, d, iters, init);
    if (n < k)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0,
                             "k-means needs at least as many rows as clusters: %d rows for "
                             "k = %d", n, k);
    for (size_t i = 0; i < (size_t)n * d; i++)
        if (!isfinite(x[i]))
            return dml_error_set(err, DML_ERR_DATA, NULL, 0, 0,
                                 "k-means input: row %zu, column %zu is %g (expected a finite "
                                 "number)", i / (size_t)d, i % (size_t)d, (double)x[i]);
    km_work w;
    if (!work_init(&w, n, d, k, assign))
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                             "out of memory for k-means (%d rows, d = %d, k = %d)", n, d, k);
    if (init == DML_KMEANS_PLUSPLUS)
        init_plusplus(x, n, d, k, rng, c, &w);
    else if (init == DML_KMEANS_RANDOM_ROWS)
        init_random_rows(x, n, d, k, rng, c, w.lab);
    for (int it = 0; it < iters; it++) {
        sq_norms(c, k, d, w.c_norms);
        dml_kmeans_assign(x, n, d, c, k, w.c_norms, w.lab, w.dist, w.scores);
        update(x, n, d, k, c, &w);
        reseed(x, n, d, k, c, &w);
    }
    if (assign || inertia) { /* the assignment that matches the returned centroids */
        sq_norms(c, k, d, w.c_norms);
        double obj = dml_kmeans_assign(x, n, d, c, k, w.c_norms, w.lab, NULL, w.scores);
        if (inertia)
            *inertia = obj;
    }
    free(w.mem);
    return DML_OK;
}

dml_status dml_kmeans(const float *x, int n, int d, int k, int iters, dml_kmeans_init init,
                      dml_rng *rng, float *centroids, int *assign, double *inertia,
                      dml_error *err)
{
    return run(x, n, d, k, iters, init, rng, centroids, assign, inertia, err);
}

dml_status dml_kmeans_from(const float *x, int n, int d, int k, int iters, float *centroids,
                           int *assign, double *inertia, dml_error *err)
{
    return run(x, n, d, k, iters, FROM_GIVEN, NULL, centroids, assign, inertia, err);
}
