/* nn/: tensors, the autograd tape, ops as forward/backward pairs, layers and
 * the product quantizer. Knows nothing of losses or files.
 *
 * Execution is eager: an op constructor computes its output at once and appends
 * the node to the graph's tape; dml_backward walks the tape in reverse. All
 * activations live in the graph's arena, which is reset after every step. */
#ifndef DML_NN_H
#define DML_NN_H

#include <stddef.h>
#include <stdint.h>

#include "data/data.h"
#include "dml.h"

/* ---------------------------------------------------------------------------------------------
 * GEMM: every matrix product in dml goes through here (row-major cblas_sgemm).
 * C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, op(X) = X or X^T. */
void dml_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
              const float *b, int ldb, float beta, float *c, int ldc);
/* Threads for dml's products and passes; n <= 0 means one per core. Returns the count in use.
 * After it OpenBLAS runs on one thread, and dml_gemm splits products of 1M multiply-adds or more
 * over dml's pool (below). Another count moves results at the rounding level (nn/gemm.c). */
int dml_set_threads(int n);

/* How dml_gemm splits C[m, n] (a product over k) between dml's threads: whole on the caller
 * (products under 1M multiply-adds, or before dml_set_threads), or in blocks of C's rows or of its
 * columns, each block starting at a multiple of DML_GEMM_BLOCK_ALIGN. Ops ask it whether a pass
 * beside a product is worth splitting too. */
typedef enum dml_gemm_blocks { DML_GEMM_WHOLE, DML_GEMM_BY_ROWS, DML_GEMM_BY_COLS } dml_gemm_blocks;
#define DML_GEMM_BLOCK_ALIGN 16
dml_gemm_blocks dml_gemm_blocking(int m, int n, int k);

/* ---------------------------------------------------------------------------------------------
 * Pool: dml's worker threads (nn/pool.c). A job is split into `parts` parts, one per thread, the
 * caller doing part 0; dml_pool_run returns when every part is done. A job started while another
 * runs (from another thread, or from inside a part) runs whole on its caller: task(ctx, 0, 1).
 * Split work so that each element's arithmetic is the same whichever part does it (the
 * element-wise passes: the same bits on any thread count). */
typedef void (*dml_pool_task)(void *ctx, int part, int parts);
void dml_pool_run(dml_pool_task task, void *ctx);
/* A job cut into n_chunks chunks that the threads take in turn as each finishes one: for work
 * whose cost per element differs between threads (memory a thread's cache does not hold).
 * task(ctx, chunk, n_chunks) must give the same bits whichever thread runs it. A job over fewer
 * than DML_POOL_MIN_ELEMENTS elements runs every chunk on the caller: handing work to another
 * thread costs microseconds (the small fine-tuning model's step went from 72 to 116 us when its
 * Adam, zeroing and norm over 18K parameters were handed out). */
#define DML_POOL_MIN_ELEMENTS (1 << 15)
typedef void (*dml_pool_chunk_task)(void *ctx, int chunk, int n_chunks);
void dml_pool_run_chunks(dml_pool_chunk_task task, void *ctx, int n_chunks, size_t elements);
/* A row-wise pass over a [rows, cols] matrix: task(ctx, first, end) over consecutive ranges of
 * rows that the threads take in turn (dml_pool_run_chunks); under DML_POOL_MIN_ELEMENTS
 * elements, task(ctx, 0, rows) on the caller. Each row must be computed the same way whichever
 * range it falls in, and a result summed over rows is added up in row order afterwards. */
typedef void (*dml_pool_rows_task)(void *ctx, int first, int end);
void dml_pool_run_rows(dml_pool_rows_task task, void *ctx, int rows, int cols);
/* Starts or stops workers so that jobs run on `threads` threads; returns the count reached. */
int dml_pool_resize(int threads);
/* Part `part` of `parts` of [0, n): [*start, *end), starting at a multiple of `align`. */
void dml_pool_range(size_t n, size_t align, int part, int parts, size_t *start, size_t *end);

/* Marks a function whose loops are worth wider vectors than the baseline x86-64 build has
 * (square roots and divisions, as in Adam): compiled also for AVX2 and AVX-512, the best chosen
 * when the library loads. Every clone does the same IEEE operations per element (no FMA
 * contraction under -std=c11), so results do not depend on the machine. ThreadSanitizer
 * (gcc's, make tsan) instruments the clones' resolvers, which the loader runs before TSan is set
 * up, and crashes at start: a TSan build keeps the baseline code only. */
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__SANITIZE_THREAD__)
#define DML_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DML_SIMD_CLONES
#endif

/* ---------------------------------------------------------------------------------------------
 * Arena: a bump allocator for one training step, 64-byte aligned. It grows only while a step
 * needs more than it has; dml_arena_reset folds the chunks into one block of the high-water
 * size, so every later step of the same shape allocates nothing. */
typedef struct dml_arena_chunk dml_arena_chunk;
typedef struct dml_arena {
    dml_arena_chunk *head;  /* chunk being filled; older chunks follow ->next */
    size_t used;            /* bytes handed out since the last reset */
    size_t high_water;      /* most bytes any step has used */
    size_t n_system_allocs; /* chunks malloc'ed so far (a test watches this) */
} dml_arena;

void dml_arena_init(dml_arena *a, size_t bytes);
/* Uninitialised memory; NULL only when malloc fails. */
void *dml_arena_alloc(dml_arena *a, size_t bytes);
void dml_arena_reset(dml_arena *a);
size_t dml_arena_high_water(const dml_arena *a);
/* Fills the arena's free memory with NaNs (all bits set): how a test shows that no op reads a
 * buffer before it writes it. */
void dml_arena_poison(dml_arena *a);
void dml_arena_free(dml_arena *a);

/* ---------------------------------------------------------------------------------------------
 * Tensors and ops. */
typedef struct dml_tensor dml_tensor;
typedef void (*dml_op_fn)(dml_tensor *out);

/* One row of an op table: what the forward and backward passes, the names and the
 * gradient tests all read. forward fills out->data from out->src; backward adds
 * d(loss)/d(src) into each src[i]->grad that is not NULL, from out->grad. */
typedef struct dml_op_def {
    const char *name;
    dml_op_fn forward;
    dml_op_fn backward;
} dml_op_def;

#define DML_MAX_SRC 3

struct dml_tensor {
    float *data;                /* [rows, cols] row-major */
    float *grad;                /* [rows, cols]; NULL when no gradient flows here */
    int rows, cols;
    const dml_op_def *op;       /* NULL for leaves: inputs and parameters */
    dml_tensor *src[DML_MAX_SRC];
    float fparam[2];            /* the op's scalars (slope, scale, margin) */
    int iparam[4];              /* the op's integers (column offset, flags) */
    const void *ctx;            /* the op's extra inputs (labels, codebooks), not owned */
    void *cache;                /* what forward saved for backward, arena memory */
};

/* The ops nn defines, one table (see nn/ops.c); losses/ has its own. */
extern const dml_op_def *const dml_nn_ops[];
extern const int dml_nn_op_count;

/* A graph: the arena for a step's tensors and the tape of nodes in forward order. */
typedef struct dml_graph {
    dml_arena arena;
    dml_tensor **tape; /* [cap_tape], arena memory */
    int n_tape, cap_tape;
    dml_status status; /* DML_ERR_NOMEM once an allocation failed; constructors then return NULL */
    /* NULL, or called by dml_backward_from after tape node i's backward (i descending): the
     * gradient-overlap hook (train/run_overlap.c). dml_graph_init clears it, reset keeps it. */
    void (*after_backward)(void *ctx, int i);
    void *after_backward_ctx;
} dml_graph;

void dml_graph_init(dml_graph *g, size_t arena_bytes);
/* Start a new step: forget the tape, rewind the arena. */
void dml_graph_reset(dml_graph *g);
void dml_graph_free(dml_graph *g);
/* Arena memory for an op's cache or a caller's scratch; NULL (and g->status set) on failure. */
void *dml_graph_alloc(dml_graph *g, size_t bytes);

/* A leaf over caller-owned memory (not copied). grad may be NULL (inputs) or a buffer of the
 * same shape into which gradients accumulate (a test's probe, or a parameter). */
dml_tensor *dml_leaf(dml_graph *g, float *data, float *grad, int rows, int cols);
/* A leaf that copies data into the arena and gets a zeroed gradient buffer if want_grad. */
dml_tensor *dml_leaf_copy(dml_graph *g, const float *data, int rows, int cols, int want_grad);

/* How ops are built: dml_graph_node allocates out (and out->grad when a source has a
 * gradient) and sets its sources; the op then sets its parameters and calls dml_graph_run,
 * which runs def->forward and appends the node to the tape. Both return NULL if a source is
 * NULL or memory ran out, so a failure propagates through a chain of ops. */
dml_tensor *dml_graph_node(dml_graph *g, const dml_op_def *def, int rows, int cols, dml_tensor *a,
                           dml_tensor *b, dml_tensor *c);
dml_tensor *dml_graph_run(dml_graph *g, dml_tensor *t);

/* Reverse-mode pass from a 1x1 root: seeds d(root) = 1 and runs every backward on the tape in
 * reverse. Gradients accumulate into leaves' grad buffers (parameters are zeroed by the caller). */
dml_status dml_backward(dml_graph *g, dml_tensor *root);
/* The same, from a root whose grad the caller has already filled (any shape). */
dml_status dml_backward_from(dml_graph *g, dml_tensor *root);

/* ---- the ops (each returns a new node; NULL propagates) ---- */
/* a[m,k] @ b[k,n], or a[m,k] @ b[n,k]^T when trans_b. */
dml_tensor *dml_matmul(dml_graph *g, dml_tensor *a, dml_tensor *b, int trans_b);
/* A dense layer: x[m,k] @ w[n,k]^T + b[1,n] on every row, one node. */
dml_tensor *dml_dense(dml_graph *g, dml_tensor *x, dml_tensor *w, dml_tensor *b);
/* relu(dense(x, w, b)) as one node: no separate activation buffers or passes. */
dml_tensor *dml_dense_relu(dml_graph *g, dml_tensor *x, dml_tensor *w, dml_tensor *b);
/* a + b, same shape. */
dml_tensor *dml_add(dml_graph *g, dml_tensor *a, dml_tensor *b);
dml_tensor *dml_scale(dml_graph *g, dml_tensor *x, float s);
/* s * x + b, element-wise (the same op as scale). */
dml_tensor *dml_affine(dml_graph *g, dml_tensor *x, float s, float b);
dml_tensor *dml_sum(dml_graph *g, dml_tensor *x);  /* [1,1] */
dml_tensor *dml_mean(dml_graph *g, dml_tensor *x); /* [1,1] */
/* mean((a - b)^2) over all elements, [1,1]. */
dml_tensor *dml_mse(dml_graph *g, dml_tensor *a, dml_tensor *b);
/* sum (x - y)^2 in double: 16 fixed stretches on dml's threads, each over 8 partial sums that do
 * not wait on each other (over a 256 x 784 batch, one chain of dependent additions took 2.5 times
 * as long), added in order. A fixed order: the same result on every machine and thread count. */
double dml_sum_sq_diff(const float *x, const float *y, size_t n);
dml_tensor *dml_relu(dml_graph *g, dml_tensor *x);
dml_tensor *dml_leaky_relu(dml_graph *g, dml_tensor *x, float slope);
dml_tensor *dml_tanh(dml_graph *g, dml_tensor *x);
dml_tensor *dml_gelu(dml_graph *g, dml_tensor *x); /* exact: x * Phi(x) */
dml_tensor *dml_sigmoid(dml_graph *g, dml_tensor *x);
/* Each row divided by max(|row|, DML_NORM_EPS): a zero row stays zero with a finite gradient. */
#define DML_NORM_EPS 1e-12f
dml_tensor *dml_l2_normalize(dml_graph *g, dml_tensor *x);
/* Columns [offset, offset + n) of x. */
dml_tensor *dml_slice_cols(dml_graph *g, dml_tensor *x, int offset, int n);
/* [a | b], side by side (same rows). */
dml_tensor *dml_concat_cols(dml_graph *g, dml_tensor *a, dml_tensor *b);
/* a above b (same columns); a gradient reaches whichever has one. */
dml_tensor *dml_concat_rows(dml_graph *g, dml_tensor *a, dml_tensor *b);
/* D[i,j] between rows of a[n,d] and b[m,d] from one GEMM: |a_i|^2 + |b_j|^2 - 2 a_i.b_j clamped
 * at 0, then sqrt unless squared. Where a distance is 0 its gradient is 0 (a subgradient). When a
 * and b are the same tensor the diagonal is exactly 0. */
dml_tensor *dml_pairwise_dist(dml_graph *g, dml_tensor *a, dml_tensor *b, int squared);

/* ---------------------------------------------------------------------------------------------
 * Layers. Parameters are leaves that own their data and grad (outside any arena). */
typedef enum dml_activation {
    DML_ACT_NONE,
    DML_ACT_RELU,
    DML_ACT_LEAKY_RELU,
    DML_ACT_TANH,
    DML_ACT_GELU,
    DML_ACT_SIGMOID
} dml_activation;

typedef enum dml_output_norm { DML_OUTPUT_NONE, DML_OUTPUT_L2, DML_OUTPUT_TANH } dml_output_norm;

#define DML_LEAKY_SLOPE 0.01f

/* The optimizer's view of one parameter: nothing of layers. */
typedef struct dml_param_view {
    float *data, *grad;
    size_t n;
} dml_param_view;

typedef struct dml_linear {
    dml_tensor w; /* [out, in], y = x W^T + b */
    dml_tensor b; /* [1, out] */
} dml_linear;

typedef struct dml_mlp {
    int n_layers;
    dml_linear *layers;      /* [n_layers] */
    dml_activation act;      /* after every layer but the last */
    dml_output_norm output;  /* on the last layer's output */
    int n_frozen;            /* the first n_frozen layers have no gradient */
} dml_mlp;

const char *dml_activation_name(dml_activation a);
dml_tensor *dml_activate(dml_graph *g, dml_tensor *x, dml_activation a);

/* How fresh weights are drawn. he: He-uniform (bound sqrt(6 / fan_in)) before ReLU-like
 * activations, Xavier-uniform (sqrt(6 / (fan_in + fan_out))) otherwise, biases zero. torch:
 * PyTorch's nn.Linear, weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming-uniform
 * with a = sqrt(5)), drawn weights first, then biases, layer by layer. */
typedef enum dml_init_scheme { DML_INIT_HE, DML_INIT_TORCH } dml_init_scheme;

/* widths = {in, hidden..., out}; every value drawn from rng by the init scheme. */
dml_status dml_mlp_init(dml_mlp *m, int n_widths, const int *widths, dml_activation act,
                        dml_output_norm output, dml_init_scheme init, dml_rng *rng, dml_error *err);
void dml_mlp_free(dml_mlp *m);
dml_tensor *dml_mlp_forward(dml_graph *g, const dml_mlp *m, dml_tensor *x);
/* The two halves of dml_mlp_forward: the layers, then the output normalisation (an
 * autoencoder's decoder reads the body's output, before the embedding head). */
dml_tensor *dml_mlp_body(dml_graph *g, const dml_mlp *m, dml_tensor *x);
dml_tensor *dml_mlp_head(dml_graph *g, const dml_mlp *m, dml_tensor *h);
/* Keep the first n layers fixed: their gradients are dropped (and never computed). */
void dml_mlp_freeze(dml_mlp *m, int n);
int dml_mlp_dim_in(const dml_mlp *m);
int dml_mlp_dim_out(const dml_mlp *m);
/* Appends the trainable parameters (weights then bias, layer by layer); returns how many. */
int dml_mlp_params(dml_mlp *m, dml_param_view *out);
/* Total float count of all parameters, frozen ones included. */
size_t dml_mlp_n_floats(const dml_mlp *m);

/* The encoder stacks dml trains. */
typedef enum dml_net_type { DML_NET_MLP, DML_NET_AUTOENCODER, DML_NET_DUAL } dml_net_type;

typedef struct dml_net {
    dml_net_type type;
    dml_mlp encoder;   /* the whole model for mlp; the anchor tower of a dual encoder */
    dml_mlp decoder;   /* autoencoder only: the mirror of the encoder, linear output */
    dml_mlp encoder_b; /* dual only: the positive tower, with its own input width */
} dml_net;

typedef struct dml_net_spec {
    dml_net_type type;
    int dim_in, dim_in_b; /* dim_in_b: dual only */
    int n_hidden;
    const int *hidden;
    int dim;              /* embedding width */
    dml_activation act;
    dml_output_norm output;
    dml_init_scheme init;
} dml_net_spec;

dml_status dml_net_init(dml_net *net, const dml_net_spec *spec, dml_rng *rng, dml_error *err);
void dml_net_free(dml_net *net);
/* Appends every trainable parameter view of the net; returns how many (at most 3 * layers). */
int dml_net_params(dml_net *net, dml_param_view *out);
int dml_net_n_layers(const dml_net *net);

/* ---------------------------------------------------------------------------------------------
 * k-means and the product quantizer (nn/kmeans.c, nn/pq.c). */
typedef enum dml_kmeans_init { DML_KMEANS_PLUSPLUS, DML_KMEANS_RANDOM_ROWS } dml_kmeans_init;

/* Lloyd's k-means on x[n,d] for exactly iters iterations (assign, then average), on every row:
 * no subsampling. init: k-means++ (D^2 sampling) or k distinct random rows, drawn from rng.
 * The assignment is a GEMM (|x|^2 + |c|^2 - 2 x.c) in blocks of rows, ties to the lowest index.
 * A cluster left empty takes the row of the largest cluster farthest from its centroid.
 * centroids[k,d] is written; assign[n] (may be NULL) gets each row's nearest centroid and
 * *inertia (may be NULL) the summed squared distance, both for the returned centroids.
 * DML_ERR_USAGE when n < k (or k, d < 1, iters < 0); DML_ERR_DATA for a NaN or Inf in x. */
dml_status dml_kmeans(const float *x, int n, int d, int k, int iters, dml_kmeans_init init,
                      dml_rng *rng, float *centroids, int *assign, double *inertia,
                      dml_error *err);
/* The same iterations from the given centroids[k,d] (a refit of existing codebooks). */
dml_status dml_kmeans_from(const float *x, int n, int d, int k, int iters, float *centroids,
                           int *assign, double *inertia, dml_error *err);

/* Rows per GEMM block of the assignment: at most DML_KMEANS_BLOCK and n, fewer when k is so
 * large that a block's scores would pass 2^22 floats; at least 1. */
#define DML_KMEANS_BLOCK 4096
int dml_kmeans_block_rows(int n, int k);
/* One assignment pass: the nearest of the k centroids c[k,d] (squared norms c_norms[k]) for
 * each row of x[n,d], ties to the lowest index; assign[n] and dist[n] (squared distances) may
 * be NULL. scratch holds dml_kmeans_block_rows(n, k) * k floats (min(n, DML_KMEANS_BLOCK) * k
 * always suffices). Allocates nothing. Returns the summed squared distance. */
double dml_kmeans_assign(const float *x, int n, int d, const float *c, int k, const float *c_norms,
                         int *assign, float *dist, float *scratch);

/* M sub-quantizers of ksub = 2^nbits centroids over dsub = d/M consecutive dimensions, laid
 * out as FAISS's ProductQuantizer (centroids[M][ksub][dsub]); codes packed as FAISS packs
 * them: sub-quantizer m's index in bits [m*nbits, (m+1)*nbits) of a little-endian bit stream,
 * code_size = (M*nbits + 7) / 8 bytes (formats.md, "PQ code packing"). */
struct dml_pq {
    int d, m, nbits, ksub, dsub;
    float *centroids; /* [m, ksub, dsub] */
};

/* nbits 1..16 (8 is FAISS's IndexPQ default, 4 packs two indices a byte); d % m == 0.
 * Centroids zeroed. DML_ERR_USAGE on bad sizes. */
dml_status dml_pq_init(dml_pq *pq, int d, int m, int nbits, dml_error *err);
void dml_pq_free(dml_pq *pq);
/* Fresh codebooks: dml_kmeans per sub-space on x[n,d] (n >= ksub), iters iterations each. */
dml_status dml_pq_train(dml_pq *pq, const float *x, int n, int iters, dml_kmeans_init init,
                        dml_rng *rng, dml_error *err);
/* More k-means iterations per sub-space, starting from the current codebooks. */
dml_status dml_pq_refine(dml_pq *pq, const float *x, int n, int iters, dml_error *err);
/* Nearest-centroid index of every sub-vector of x[n,d], unpacked: idx[n, m] (GEMM in blocks of
 * rows). DML_ERR_NOMEM when its scratch cannot be allocated. */
dml_status dml_pq_assign(const dml_pq *pq, const float *x, size_t n, int32_t *idx);
/* idx[n, m] (each < ksub) <-> codes[n, code_size]. */
void dml_pq_pack(const dml_pq *pq, const int32_t *idx, size_t n, uint8_t *codes);
void dml_pq_unpack(const dml_pq *pq, const uint8_t *codes, size_t n, int32_t *idx);
/* x[n, d] from unpacked indices idx[n, m]. */
void dml_pq_decode_idx(const dml_pq *pq, const int32_t *idx, size_t n, float *x);
/* *mse = the mean over rows of |x - decode(encode(x))|^2 (summed over the d dimensions); 0 when
 * n is 0. DML_ERR_NOMEM (and *mse NaN) when its scratch cannot be allocated. */
dml_status dml_pq_quantization_mse(const dml_pq *pq, const float *x, size_t n, double *mse);
/* ADC: table[m, ksub] of squared L2 distances from the query's sub-vectors to every centroid. */
void dml_pq_adc_table(const dml_pq *pq, const float *query, float *table);
/* ADC distances from one query's table to n packed codes: dist[i] = sum_m table[m, code_im],
 * summed in order of m. Allocates nothing (thread-safe). */
void dml_pq_adc_distances(const dml_pq *pq, const float *table, const uint8_t *codes, size_t n,
                          float *dist);

#endif
