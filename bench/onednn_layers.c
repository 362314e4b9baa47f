/* One question for issue #30, outside `make bench`: would another GEMM library make the training
 * step's dense layers faster on this machine? An MLP's layers (relu on all but the last), forward
 * and then backward from a given top gradient, timed one way per process:
 *   dml          dml_dense_relu / dml_dense on dml's threads: OpenBLAS's cblas_sgemm by blocks,
 *                the bias, relu and mask passes around it, the parameters' gradients zeroed
 *                first (what a training step does);
 *   onednn       oneDNN's inner product with the bias and relu fused into the forward and the
 *                bias gradient into the weights' backward, relu's backward its own pass;
 *   onednn-gemm  the same inner products without bias or relu: oneDNN's GEMMs alone.
 * Row-major [rows, cols] everywhere and weights [out, in], as dml keeps them. oneDNN runs on its
 * OpenMP threads (OMP_NUM_THREADS), dml on dml_set_threads(--threads).
 *
 *   bench_onednn dml|onednn|onednn-gemm [--threads N] [--iters N] BATCH W0 ... Wn
 *
 * prints one JSON line: the median and the best microseconds of one forward and backward over
 * --iters timed passes (after 10 untimed), and their GFLOP/s. Not built by `make all`: it needs
 * libdnnl-dev, which nothing else in dml does. `make bench-onednn` alternates the three in fresh
 * processes at the bench's training shapes. */
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

#define MAX_LAYERS 16
#define WARMUP 10

typedef enum { SIDE_DML, SIDE_ONEDNN, SIDE_ONEDNN_GEMM } side;

/* The network's buffers, shared by both sides: act[0] is the input, act[l + 1] layer l's output;
 * gact[l] the gradient there. */
typedef struct {
    int batch, n_layers, width[MAX_LAYERS + 1];
    float *w[MAX_LAYERS], *b[MAX_LAYERS], *gw[MAX_LAYERS], *gb[MAX_LAYERS];
    float *act[MAX_LAYERS + 1], *gact[MAX_LAYERS + 1], *gpre[MAX_LAYERS];
} mlp;

static void die(const char *what)
{
    fprintf(stderr, "bench_onednn: %s\n", what);
    exit(2);
}

static float *random_floats(size_t n, dml_rng *rng)
{
    float *p = malloc(n * sizeof *p);
    if (!p)
        die("out of memory");
    for (size_t i = 0; i < n; i++)
        p[i] = 0.1f * (dml_rng_uniform(rng) - 0.5f);
    return p;
}

static int is_relu(const mlp *m, int l)
{
    return l < m->n_layers - 1;
}

/* ---- dml ---- */

static void dml_pass(const mlp *m, dml_graph *g)
{
    dml_graph_reset(g);
    for (int l = 0; l < m->n_layers; l++) {
        memset(m->gw[l], 0, (size_t)m->width[l] * m->width[l + 1] * sizeof(float));
        memset(m->gb[l], 0, (size_t)m->width[l + 1] * sizeof(float));
    }
    dml_tensor *h = dml_leaf(g, m->act[0], NULL, m->batch, m->width[0]);
    for (int l = 0; l < m->n_layers; l++) {
        dml_tensor *w = dml_leaf(g, m->w[l], m->gw[l], m->width[l + 1], m->width[l]);
        dml_tensor *b = dml_leaf(g, m->b[l], m->gb[l], 1, m->width[l + 1]);
        h = is_relu(m, l) ? dml_dense_relu(g, h, w, b) : dml_dense(g, h, w, b);
    }
    if (!h)
        die("out of memory in the graph's arena");
    memcpy(h->grad, m->gact[m->n_layers], (size_t)m->batch * h->cols * sizeof(float));
    dml_backward_from(g, h);
}

/* ---- oneDNN ---- */

typedef struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_t forward[MAX_LAYERS], back_data[MAX_LAYERS], back_weights[MAX_LAYERS],
        relu_back[MAX_LAYERS];
    dnnl_memory_t src[MAX_LAYERS], w[MAX_LAYERS], b[MAX_LAYERS], dst[MAX_LAYERS],
        diff_src[MAX_LAYERS], diff_w[MAX_LAYERS], diff_b[MAX_LAYERS], diff_dst[MAX_LAYERS],
        diff_pre[MAX_LAYERS];
    int fused; /* bias and relu in the primitives */
} onednn;

static void check(dnnl_status_t st, const char *call)
{
    if (st != dnnl_success) {
        fprintf(stderr, "bench_onednn: %s failed (dnnl_status_t %d)\n", call, (int)st);
        exit(2);
    }
}

static dnnl_memory_desc_t plain(int rows, int cols)
{
    dnnl_memory_desc_t d;
    dnnl_dims_t dims = {rows, cols};
    check(dnnl_memory_desc_init_by_tag(&d, cols ? 2 : 1, dims, dnnl_f32, cols ? dnnl_ab : dnnl_a),
          "dnnl_memory_desc_init_by_tag");
    return d;
}

static dnnl_memory_t memory(const onednn *o, const dnnl_memory_desc_t *d, float *data)
{
    dnnl_memory_t mem;
    check(dnnl_memory_create(&mem, d, o->engine, data), "dnnl_memory_create");
    return mem;
}

static dnnl_primitive_t primitive(const onednn *o, const_dnnl_op_desc_t op,
                                  const_dnnl_primitive_attr_t attr,
                                  const_dnnl_primitive_desc_t hint, dnnl_primitive_desc_t *pd_out)
{
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    check(dnnl_primitive_desc_create(&pd, op, attr, o->engine, hint), "dnnl_primitive_desc_create");
    check(dnnl_primitive_create(&p, pd), "dnnl_primitive_create");
    if (pd_out)
        *pd_out = pd;
    else
        dnnl_primitive_desc_destroy(pd);
    return p;
}

static void onednn_layer(onednn *o, const mlp *m, int l)
{
    int relu = o->fused && is_relu(m, l);
    dnnl_memory_desc_t src = plain(m->batch, m->width[l]), w = plain(m->width[l + 1], m->width[l]),
                       b = plain(m->width[l + 1], 0), dst = plain(m->batch, m->width[l + 1]);
    const dnnl_memory_desc_t *bias = o->fused ? &b : NULL;
    dnnl_primitive_attr_t attr;
    check(dnnl_primitive_attr_create(&attr), "dnnl_primitive_attr_create");
    if (relu) {
        dnnl_post_ops_t ops;
        check(dnnl_post_ops_create(&ops), "dnnl_post_ops_create");
        check(dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f),
              "dnnl_post_ops_append_eltwise");
        check(dnnl_primitive_attr_set_post_ops(attr, ops), "dnnl_primitive_attr_set_post_ops");
        dnnl_post_ops_destroy(ops);
    }
    dnnl_inner_product_desc_t fd, dd, wd;
    check(dnnl_inner_product_forward_desc_init(&fd, dnnl_forward_training, &src, &w, bias, &dst),
          "dnnl_inner_product_forward_desc_init");
    dnnl_primitive_desc_t hint;
    o->forward[l] = primitive(o, &fd, attr, NULL, &hint);
    dnnl_primitive_attr_destroy(attr);
    if (l > 0) { /* the input needs no gradient */
        check(dnnl_inner_product_backward_data_desc_init(&dd, &src, &w, &dst),
              "dnnl_inner_product_backward_data_desc_init");
        o->back_data[l] = primitive(o, &dd, NULL, hint, NULL);
    }
    check(dnnl_inner_product_backward_weights_desc_init(&wd, &src, &w, bias, &dst),
          "dnnl_inner_product_backward_weights_desc_init");
    o->back_weights[l] = primitive(o, &wd, NULL, hint, NULL);
    dnnl_primitive_desc_destroy(hint);
    if (relu) { /* relu's backward from its output, as dml's mask */
        dnnl_eltwise_desc_t ef, eb;
        check(dnnl_eltwise_forward_desc_init(&ef, dnnl_forward_training,
                                             dnnl_eltwise_relu_use_dst_for_bwd, &dst, 0.0f, 0.0f),
              "dnnl_eltwise_forward_desc_init");
        dnnl_primitive_desc_t relu_hint;
        check(dnnl_primitive_desc_create(&relu_hint, &ef, NULL, o->engine, NULL),
              "dnnl_primitive_desc_create");
        check(dnnl_eltwise_backward_desc_init(&eb, dnnl_eltwise_relu_use_dst_for_bwd, &dst, &dst,
                                              0.0f, 0.0f),
              "dnnl_eltwise_backward_desc_init");
        o->relu_back[l] = primitive(o, &eb, NULL, relu_hint, NULL);
        dnnl_primitive_desc_destroy(relu_hint);
    }
    o->src[l] = memory(o, &src, m->act[l]);
    o->w[l] = memory(o, &w, m->w[l]);
    o->b[l] = memory(o, &b, m->b[l]);
    o->dst[l] = memory(o, &dst, m->act[l + 1]);
    o->diff_src[l] = memory(o, &src, m->gact[l]);
    o->diff_w[l] = memory(o, &w, m->gw[l]);
    o->diff_b[l] = memory(o, &b, m->gb[l]);
    o->diff_dst[l] = memory(o, &dst, m->gact[l + 1]);
    o->diff_pre[l] = memory(o, &dst, m->gpre[l]);
}

static void run(const onednn *o, dnnl_primitive_t p, int n, const dnnl_exec_arg_t *args)
{
    check(dnnl_primitive_execute(p, o->stream, n, args), "dnnl_primitive_execute");
}

static void onednn_pass(const onednn *o, const mlp *m)
{
    for (int l = 0; l < m->n_layers; l++) {
        dnnl_exec_arg_t a[] = {{DNNL_ARG_SRC, o->src[l]}, {DNNL_ARG_WEIGHTS, o->w[l]},
                               {DNNL_ARG_DST, o->dst[l]}, {DNNL_ARG_BIAS, o->b[l]}};
        run(o, o->forward[l], o->fused ? 4 : 3, a);
    }
    for (int l = m->n_layers - 1; l >= 0; l--) {
        dnnl_memory_t dy = o->diff_dst[l];
        if (o->relu_back[l]) {
            dnnl_exec_arg_t a[] = {{DNNL_ARG_DST, o->dst[l]}, {DNNL_ARG_DIFF_DST, dy},
                                   {DNNL_ARG_DIFF_SRC, o->diff_pre[l]}};
            run(o, o->relu_back[l], 3, a);
            dy = o->diff_pre[l];
        }
        dnnl_exec_arg_t w[] = {{DNNL_ARG_SRC, o->src[l]}, {DNNL_ARG_DIFF_DST, dy},
                               {DNNL_ARG_DIFF_WEIGHTS, o->diff_w[l]},
                               {DNNL_ARG_DIFF_BIAS, o->diff_b[l]}};
        run(o, o->back_weights[l], o->fused ? 4 : 3, w);
        if (o->back_data[l]) {
            dnnl_exec_arg_t d[] = {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, o->w[l]},
                                   {DNNL_ARG_DIFF_SRC, o->diff_src[l]}};
            run(o, o->back_data[l], 3, d);
        }
    }
    check(dnnl_stream_wait(o->stream), "dnnl_stream_wait");
}

/* ---- timing ---- */

_Noreturn static void usage(void)
{
    fputs("usage: bench_onednn dml|onednn|onednn-gemm [--threads N] [--iters N] BATCH W0 ... Wn\n"
          "  one forward and backward of an MLP of widths W0..Wn (relu on all but the last\n"
          "  layer) over BATCH rows, timed; prints one JSON line.\n",
          stderr);
    exit(2);
}

static side parse_side(const char *name)
{
    if (!strcmp(name, "dml"))
        return SIDE_DML;
    if (!strcmp(name, "onednn"))
        return SIDE_ONEDNN;
    if (!strcmp(name, "onednn-gemm"))
        return SIDE_ONEDNN_GEMM;
    usage();
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    side s = parse_side(argv[1]);
    int threads = 2, iters = 50, at = 2;
    for (; at + 1 < argc && argv[at][0] == '-'; at += 2) {
        if (!strcmp(argv[at], "--threads"))
            threads = atoi(argv[at + 1]);
        else if (!strcmp(argv[at], "--iters"))
            iters = atoi(argv[at + 1]);
        else
            usage();
    }
    mlp m = {.n_layers = argc - at - 2};
    if (m.n_layers < 1 || m.n_layers > MAX_LAYERS || iters < 1)
        usage();
    m.batch = atoi(argv[at]);
    for (int l = 0; l <= m.n_layers; l++)
        if ((m.width[l] = atoi(argv[at + 1 + l])) < 1 || m.batch < 1)
            usage();
    dml_rng rng;
    dml_rng_seed(&rng, 1);
    double flops = 0.0;
    for (int l = 0; l <= m.n_layers; l++) {
        m.act[l] = random_floats((size_t)m.batch * m.width[l], &rng);
        m.gact[l] = random_floats((size_t)m.batch * m.width[l], &rng);
    }
    for (int l = 0; l < m.n_layers; l++) {
        size_t n = (size_t)m.width[l] * m.width[l + 1];
        m.w[l] = random_floats(n, &rng);
        m.gw[l] = random_floats(n, &rng);
        m.b[l] = random_floats((size_t)m.width[l + 1], &rng);
        m.gb[l] = random_floats((size_t)m.width[l + 1], &rng);
        m.gpre[l] = random_floats((size_t)m.batch * m.width[l + 1], &rng);
        flops += 2.0 * m.batch * (double)n * (l > 0 ? 3 : 2); /* no input gradient at layer 0 */
    }

    dml_graph graph = {0};
    onednn o = {.fused = s == SIDE_ONEDNN};
    if (s == SIDE_DML) {
        dml_set_threads(threads);
        dml_graph_init(&graph, (size_t)256 << 20);
    } else {
        check(dnnl_engine_create(&o.engine, dnnl_cpu, 0), "dnnl_engine_create");
        check(dnnl_stream_create(&o.stream, o.engine, dnnl_stream_default_flags),
              "dnnl_stream_create");
        for (int l = 0; l < m.n_layers; l++)
            onednn_layer(&o, &m, l);
    }
    double *t = malloc((size_t)iters * sizeof *t);
    if (!t)
        die("out of memory");
    for (int k = -WARMUP; k < iters; k++) {
        double t0 = dml_bench_now();
        if (s == SIDE_DML)
            dml_pass(&m, &graph);
        else
            onednn_pass(&o, &m);
        if (k >= 0)
            t[k] = dml_bench_now() - t0;
    }
    double med = dml_bench_median(t, iters);
    printf("{\"side\": \"%s\", \"batch\": %d, \"layers\": %d, \"gflop\": %.4f, "
           "\"median_us\": %.1f, \"best_us\": %.1f, \"gflops_median\": %.1f}\n",
           argv[1], m.batch, m.n_layers, 1e-9 * flops, 1e6 * med, 1e6 * t[0], 1e-9 * flops / med);
    return 0;
}
