/* The encoder as an ONNX model (opset 13, IR version 7) with no protobuf library: each message is
 * built in its own buffer and embedded, length-delimited, in its parent (formats.md §3.3 option B;
 * field numbers from onnx.proto v1.12.0, formats.md §3.2). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/export.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw_data is little-endian; dml writes it straight from memory"
#endif

#define ONNX_IR_VERSION 7
#define ONNX_OPSET 13

/* protobuf wire types; ONNX enum values */
enum { WT_VARINT = 0, WT_BYTES = 2, WT_FIXED32 = 5 };
enum { ELEM_FLOAT = 1 };
enum { ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_INTS = 7 };

/* ---- a growable protobuf buffer; a failed allocation makes it drop everything after ---- */
typedef struct pb {
    uint8_t *p;
    size_t n, cap;
    int failed;
} pb;

static void pb_put(pb *b, const void *d, size_t n)
{
    if (b->failed || n == 0)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void pb_varint(pb *b, uint64_t v)
{
    uint8_t c[10];
    int n = 0;
    do {
        c[n] = v & 0x7f;
        v >>= 7;
        c[n++] |= v ? 0x80 : 0;
    } while (v);
    pb_put(b, c, (size_t)n);
}

static void pb_tag(pb *b, int field, int wire)
{
    pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

/* Negative values become 10-byte two's-complement varints, as int64 fields require. */
static void f_int(pb *b, int field, int64_t v)
{
    pb_tag(b, field, WT_VARINT);
    pb_varint(b, (uint64_t)v);
}

static void f_float(pb *b, int field, float v)
{
    pb_tag(b, field, WT_FIXED32);
    pb_put(b, &v, sizeof v);
}

static void f_bytes(pb *b, int field, const void *d, size_t n)
{
    pb_tag(b, field, WT_BYTES);
    pb_varint(b, n);
    pb_put(b, d, n);
}

static void f_str(pb *b, int field, const char *s)
{
    f_bytes(b, field, s, strlen(s));
}

/* Embeds sub as field of b, then frees sub (a failure in sub fails b). */
static void f_msg(pb *b, int field, pb *sub)
{
    b->failed |= sub->failed;
    f_bytes(b, field, sub->p, sub->n);
    free(sub->p);
    memset(sub, 0, sizeof *sub);
}

/* ---- the graph ---- */
typedef struct graph {
    pb nodes; /* GraphProto.node entries (field 1), in topological order */
    pb inits; /* GraphProto.initializer entries (field 5) */
    int n_nodes;
    char cur[32]; /* the tensor the next op reads */
} graph;

typedef struct attr {
    const char *name;
    int type; /* ATTR_* */
    int64_t i;
    float f;
} attr;

/* A float initializer [dims] from data. */
static void init(graph *g, const char *name, int rank, const int64_t *dims, const float *data)
{
    pb t = {0};
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        f_int(&t, 1, dims[i]);
        n *= (size_t)dims[i];
    }
    f_int(&t, 2, ELEM_FLOAT);
    f_str(&t, 8, name);
    f_bytes(&t, 9, data, n * sizeof(float));
    f_msg(&g->inits, 5, &t);
}

static void init_scalar(graph *g, const char *name, float v)
{
    int64_t one = 1;
    init(g, name, 1, &one, &v);
}

/* op(in[0..n_in)) -> out; out becomes the current tensor (the inputs are copied first, so one
 * of them may be g->cur). */
static void node(graph *g, const char *op, int n_in, const char *const *in, const char *out,
                 const attr *attrs, int n_attrs)
{
    pb nd = {0};
    char name[48];
    snprintf(name, sizeof name, "%s_%d", op, g->n_nodes++);
    for (int k = 0; k < n_in; k++)
        f_str(&nd, 1, in[k]);
    f_str(&nd, 2, out);
    f_str(&nd, 3, name);
    f_str(&nd, 4, op);
    for (int k = 0; k < n_attrs; k++) {
        pb a = {0};
        f_str(&a, 1, attrs[k].name);
        if (attrs[k].type == ATTR_FLOAT)
            f_float(&a, 2, attrs[k].f);
        else if (attrs[k].type == ATTR_INT)
            f_int(&a, 3, attrs[k].i);
        else
            f_int(&a, 8, attrs[k].i); /* a one-element INTS */
        f_int(&a, 20, attrs[k].type);
        f_msg(&nd, 5, &a);
    }
    f_msg(&g->nodes, 1, &nd);
    snprintf(g->cur, sizeof g->cur, "%s", out);
}

/* op(current tensor) -> out */
static void unary(graph *g, const char *op, const char *out)
{
    const char *in[1] = {g->cur};
    node(g, op, 1, in, out, NULL, 0);
}

static void binary(graph *g, const char *op, const char *a, const char *b, const char *out)
{
    const char *in[2] = {a, b};
    node(g, op, 2, in, out, NULL, 0);
}

/* gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), exact as dml_gelu, from opset-13 ops. */
static void gelu(graph *g, int layer, int *have_consts)
{
    if (!*have_consts) {
        init_scalar(g, "gelu_sqrt2", (float)sqrt(2.0));
        init_scalar(g, "gelu_one", 1.0f);
        init_scalar(g, "gelu_half", 0.5f);
        *have_consts = 1;
    }
    char x[32], t[4][32];
    snprintf(x, sizeof x, "%s", g->cur);
    for (int k = 0; k < 4; k++)
        snprintf(t[k], sizeof t[k], "gelu%d_%d", layer, k);
    binary(g, "Div", x, "gelu_sqrt2", t[0]);
    unary(g, "Erf", t[1]);
    binary(g, "Add", t[1], "gelu_one", t[2]);
    binary(g, "Mul", x, t[2], t[3]);
    char out[32];
    snprintf(out, sizeof out, "a%d", layer);
    binary(g, "Mul", t[3], "gelu_half", out);
}

static void activation(graph *g, dml_activation act, int layer, int *gelu_consts)
{
    char out[32];
    snprintf(out, sizeof out, "a%d", layer);
    switch (act) {
    case DML_ACT_NONE: break;
    case DML_ACT_RELU: unary(g, "Relu", out); break;
    case DML_ACT_TANH: unary(g, "Tanh", out); break;
    case DML_ACT_SIGMOID: unary(g, "Sigmoid", out); break;
    case DML_ACT_LEAKY_RELU: {
        attr a = {"alpha", ATTR_FLOAT, 0, DML_LEAKY_SLOPE};
        const char *in[1] = {g->cur};
        node(g, "LeakyRelu", 1, in, out, &a, 1);
        break;
    }
    case DML_ACT_GELU: gelu(g, layer, gelu_consts); break;
    }
}

static void body(graph *g, const dml_mlp *m, const dml_input_norm *norm)
{
    int gelu_consts = 0;
    snprintf(g->cur, sizeof g->cur, "x");
    if (norm->d) {
        int64_t d = norm->d;
        init(g, "input_mean", 1, &d, norm->mean);
        init(g, "input_std", 1, &d, norm->std);
        binary(g, "Sub", "x", "input_mean", "x_centered");
        binary(g, "Div", "x_centered", "input_std", "x_standardized");
    }
    for (int i = 0; i < m->n_layers; i++) {
        const dml_linear *l = &m->layers[i];
        char w[32], b[32], h[32];
        snprintf(w, sizeof w, "W%d", i);
        snprintf(b, sizeof b, "b%d", i);
        snprintf(h, sizeof h, "h%d", i);
        int64_t wd[2] = {l->w.rows, l->w.cols}, bd = l->b.cols;
        init(g, w, 2, wd, l->w.data);
        init(g, b, 1, &bd, l->b.data);
        const char *in[3] = {g->cur, w, b};
        attr trans_b = {"transB", ATTR_INT, 1, 0};
        node(g, "Gemm", 3, in, h, &trans_b, 1);
        if (i + 1 < m->n_layers)
            activation(g, m->act, i, &gelu_consts);
    }
    char z[32]; /* the last layer's output */
    snprintf(z, sizeof z, "%s", g->cur);
    if (m->output == DML_OUTPUT_L2) { /* y = z / max(|z|_2, eps), as dml_l2_normalize */
        init_scalar(g, "l2_eps", DML_NORM_EPS);
        attr r[2] = {{"axes", ATTR_INTS, -1, 0}, {"keepdims", ATTR_INT, 1, 0}};
        const char *in[1] = {z};
        node(g, "ReduceL2", 1, in, "z_norm", r, 2);
        binary(g, "Max", "z_norm", "l2_eps", "z_norm_eps");
        binary(g, "Div", z, "z_norm_eps", "y");
    } else {
        unary(g, m->output == DML_OUTPUT_TANH ? "Tanh" : "Identity", "y");
    }
}

/* ValueInfoProto of a float tensor [N, d] (N symbolic). */
static void value_info(pb *graph_pb, int field, const char *name, int64_t d)
{
    pb dim_n = {0}, dim_d = {0}, shape = {0}, tensor = {0}, type = {0}, vi = {0};
    f_str(&dim_n, 2, "N");
    f_int(&dim_d, 1, d);
    f_msg(&shape, 1, &dim_n);
    f_msg(&shape, 1, &dim_d);
    f_int(&tensor, 1, ELEM_FLOAT);
    f_msg(&tensor, 2, &shape);
    f_msg(&type, 1, &tensor);
    f_str(&vi, 1, name);
    f_msg(&vi, 2, &type);
    f_msg(graph_pb, field, &vi);
}

static void metadata(pb *model, const char *key, const char *value)
{
    pb kv = {0};
    f_str(&kv, 1, key);
    f_str(&kv, 2, value);
    f_msg(model, 14, &kv);
}

static void metadata_int(pb *model, const char *key, long long v)
{
    char s[32];
    snprintf(s, sizeof s, "%lld", v);
    metadata(model, key, s);
}

static void model_proto(pb *model, const dml_model_file *mf, int tower)
{
    const dml_mlp *m = dml_model_file_tower(mf, tower);
    const dml_input_norm *norm = dml_model_file_tower_norm(mf, tower);
    graph g = {0};
    body(&g, m, norm);
    pb gp = {0};
    gp.failed = g.nodes.failed | g.inits.failed;
    pb_put(&gp, g.nodes.p, g.nodes.n);
    f_str(&gp, 2, tower ? "dml_encoder_b" : "dml_encoder");
    pb_put(&gp, g.inits.p, g.inits.n);
    char doc[128];
    snprintf(doc, sizeof doc, "dml %s: x [N, %d] -> y [N, %d]", tower ? "encoder_b" : "encoder",
             dml_mlp_dim_in(m), dml_mlp_dim_out(m));
    f_str(&gp, 10, doc);
    value_info(&gp, 11, "x", dml_mlp_dim_in(m));
    value_info(&gp, 12, "y", dml_mlp_dim_out(m));
    free(g.nodes.p);
    free(g.inits.p);

    f_int(model, 1, ONNX_IR_VERSION);
    f_str(model, 2, "dml");
    f_str(model, 3, DML_VERSION_STRING);
    f_msg(model, 7, &gp);
    pb opset = {0};
    f_str(&opset, 1, ""); /* the default domain, ai.onnx */
    f_int(&opset, 2, ONNX_OPSET);
    f_msg(model, 8, &opset);
    metadata(model, "metric", mf->metric);
    metadata(model, "model_type", dml_model_file_type_name(mf->net.type));
    metadata(model, "tower", tower ? "encoder_b" : "encoder");
    char input[200]; /* what the graph's x must be: the scale it was trained on */
    dml_input_scale_describe(tower ? &mf->scale_b : &mf->scale, norm, input, sizeof input);
    metadata(model, "input_norm", input);
    metadata(model, "output_norm", dml_model_file_output_name(m->output));
    if (mf->pq.d) {
        metadata_int(model, "pq_d", mf->pq.d);
        metadata_int(model, "pq_M", mf->pq.m);
        metadata_int(model, "pq_nbits", mf->pq.nbits);
        metadata_int(model, "pq_ksub", mf->pq.ksub);
        metadata_int(model, "pq_dsub", mf->pq.dsub);
        metadata_int(model, "pq_code_size", (long long)dml_pq_code_size(&mf->pq));
    }
}

static void write_bytes(dml_out *o, const void *ctx)
{
    const pb *b = ctx;
    dml_out_put(o, b->p, b->n);
}

dml_status dml_export_onnx(const char *path, const dml_model_file *mf, int tower, dml_error *err)
{
    if (!dml_model_file_tower(mf, tower))
        return dml_error_set(err, DML_ERR_USAGE, path, 0, 0,
                             "the model has no second tower to export (it is not a dual encoder)");
    pb model = {0};
    model_proto(&model, mf, tower);
    dml_status st = model.failed
                        ? dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory for the ONNX model")
                        : dml_export_atomic(path, "ONNX model", write_bytes, &model, err);
    free(model.p);
    return st;
}
