/* Linear layers, MLPs and the encoder stacks built from them (autoencoder, dual encoder). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"

const char *dml_activation_name(dml_activation a)
{
    switch (a) {
    case DML_ACT_NONE: return "none";
    case DML_ACT_RELU: return "relu";
    case DML_ACT_LEAKY_RELU: return "leaky_relu";
    case DML_ACT_TANH: return "tanh";
    case DML_ACT_GELU: return "gelu";
    case DML_ACT_SIGMOID: return "sigmoid";
    }
    return "?";
}

dml_tensor *dml_activate(dml_graph *g, dml_tensor *x, dml_activation a)
{
    switch (a) {
    case DML_ACT_NONE: return x;
    case DML_ACT_RELU: return dml_relu(g, x);
    case DML_ACT_LEAKY_RELU: return dml_leaky_relu(g, x, DML_LEAKY_SLOPE);
    case DML_ACT_TANH: return dml_tanh(g, x);
    case DML_ACT_GELU: return dml_gelu(g, x);
    case DML_ACT_SIGMOID: return dml_sigmoid(g, x);
    }
    return x;
}

static int param_alloc(dml_tensor *t, int rows, int cols)
{
    memset(t, 0, sizeof *t);
    t->rows = rows;
    t->cols = cols;
    t->data = calloc((size_t)rows * cols, sizeof(float));
    t->grad = calloc((size_t)rows * cols, sizeof(float));
    return t->data && t->grad;
}

static void fill_uniform(float *x, size_t n, float bound, dml_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = bound * (2.0f * dml_rng_uniform(rng) - 1.0f);
}

/* nn.h's schemes. he: a bound for the unit after the layer (ReLU-like or not), biases left zero;
 * torch: 1/sqrt(fan_in) for weights and biases alike, whatever follows. */
static void linear_init(dml_linear *l, int relu_like, dml_init_scheme init, dml_rng *rng)
{
    int out = l->w.rows, in = l->w.cols;
    if (init == DML_INIT_TORCH) {
        float bound = 1.0f / sqrtf((float)in);
        fill_uniform(l->w.data, (size_t)out * in, bound, rng);
        fill_uniform(l->b.data, (size_t)out, bound, rng);
        return;
    }
    float bound = relu_like ? sqrtf(6.0f / (float)in) : sqrtf(6.0f / (float)(in + out));
    fill_uniform(l->w.data, (size_t)out * in, bound, rng);
}

dml_status dml_mlp_init(dml_mlp *m, int n_widths, const int *widths, dml_activation act,
                        dml_output_norm output, dml_init_scheme init, dml_rng *rng, dml_error *err)
{
    memset(m, 0, sizeof *m);
    m->act = act;
    m->output = output;
    m->n_layers = n_widths - 1;
    if (m->n_layers < 1)
        return dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0, "an MLP needs at least one layer");
    m->layers = calloc((size_t)m->n_layers, sizeof *m->layers);
    if (!m->layers)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the MLP");
    int relu_like = act == DML_ACT_RELU || act == DML_ACT_LEAKY_RELU || act == DML_ACT_GELU;
    for (int i = 0; i < m->n_layers; i++) {
        dml_linear *l = &m->layers[i];
        if (!param_alloc(&l->w, widths[i + 1], widths[i]) || !param_alloc(&l->b, 1, widths[i + 1])) {
            dml_mlp_free(m);
            return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the MLP");
        }
        linear_init(l, relu_like && i + 1 < m->n_layers, init, rng);
    }
    return DML_OK;
}

void dml_mlp_free(dml_mlp *m)
{
    for (int i = 0; m->layers && i < m->n_layers; i++) {
        free(m->layers[i].w.data);
        free(m->layers[i].w.grad);
        free(m->layers[i].b.data);
        free(m->layers[i].b.grad);
    }
    free(m->layers);
    memset(m, 0, sizeof *m);
}

dml_tensor *dml_mlp_body(dml_graph *g, const dml_mlp *m, dml_tensor *x)
{
    for (int i = 0; i < m->n_layers; i++) {
        /* Parameters are leaves owned by the layer; the tape only points at them. */
        dml_linear *l = &m->layers[i];
        if (i + 1 == m->n_layers)
            x = dml_dense(g, x, &l->w, &l->b);
        else if (m->act == DML_ACT_RELU)
            x = dml_dense_relu(g, x, &l->w, &l->b);
        else
            x = dml_activate(g, dml_dense(g, x, &l->w, &l->b), m->act);
    }
    return x;
}

dml_tensor *dml_mlp_head(dml_graph *g, const dml_mlp *m, dml_tensor *h)
{
    if (m->output == DML_OUTPUT_L2)
        return dml_l2_normalize(g, h);
    return m->output == DML_OUTPUT_TANH ? dml_tanh(g, h) : h;
}

dml_tensor *dml_mlp_forward(dml_graph *g, const dml_mlp *m, dml_tensor *x)
{
    return dml_mlp_head(g, m, dml_mlp_body(g, m, x));
}

void dml_mlp_freeze(dml_mlp *m, int n)
{
    for (int i = m->n_frozen; i < n && i < m->n_layers; i++) {
        dml_linear *l = &m->layers[i];
        free(l->w.grad);
        free(l->b.grad);
        l->w.grad = l->b.grad = NULL; /* no gradient flows into them, none is computed */
    }
    if (n > m->n_frozen)
        m->n_frozen = n < m->n_layers ? n : m->n_layers;
}

int dml_mlp_dim_in(const dml_mlp *m)
{
    return m->layers[0].w.cols;
}

int dml_mlp_dim_out(const dml_mlp *m)
{
    return m->layers[m->n_layers - 1].w.rows;
}

static void view(dml_param_view *v, dml_tensor *t)
{
    v->data = t->data;
    v->grad = t->grad;
    v->n = (size_t)t->rows * t->cols;
}

int dml_mlp_params(dml_mlp *m, dml_param_view *out)
{
    int n = 0;
    for (int i = m->n_frozen; i < m->n_layers; i++) {
        view(&out[n++], &m->layers[i].w);
        view(&out[n++], &m->layers[i].b);
    }
    return n;
}

size_t dml_mlp_n_floats(const dml_mlp *m)
{
    size_t n = 0;
    for (int i = 0; i < m->n_layers; i++)
        n += (size_t)m->layers[i].w.rows * m->layers[i].w.cols + (size_t)m->layers[i].b.cols;
    return n;
}

/* ---- encoder stacks ---- */
dml_status dml_net_init(dml_net *net, const dml_net_spec *s, dml_rng *rng, dml_error *err)
{
    memset(net, 0, sizeof *net);
    net->type = s->type;
    int n = s->n_hidden + 2;
    int *widths = malloc((size_t)n * sizeof *widths);
    if (!widths)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the model");
    widths[0] = s->dim_in;
    memcpy(widths + 1, s->hidden, (size_t)s->n_hidden * sizeof *widths);
    widths[n - 1] = s->dim;
    dml_status st = dml_mlp_init(&net->encoder, n, widths, s->act, s->output, s->init, rng, err);
    if (st == DML_OK && s->type == DML_NET_AUTOENCODER) {
        for (int i = 0; i < n / 2; i++) { /* the mirror: dim -> hidden reversed -> dim_in */
            int t = widths[i];
            widths[i] = widths[n - 1 - i];
            widths[n - 1 - i] = t;
        }
        st = dml_mlp_init(&net->decoder, n, widths, s->act, DML_OUTPUT_NONE, s->init, rng, err);
    } else if (st == DML_OK && s->type == DML_NET_DUAL) {
        widths[0] = s->dim_in_b;
        st = dml_mlp_init(&net->encoder_b, n, widths, s->act, s->output, s->init, rng, err);
    }
    free(widths);
    if (st != DML_OK)
        dml_net_free(net);
    return st;
}

void dml_net_free(dml_net *net)
{
    dml_mlp_free(&net->encoder);
    dml_mlp_free(&net->decoder);
    dml_mlp_free(&net->encoder_b);
}

int dml_net_params(dml_net *net, dml_param_view *out)
{
    int n = dml_mlp_params(&net->encoder, out);
    n += dml_mlp_params(&net->decoder, out + n);
    n += dml_mlp_params(&net->encoder_b, out + n);
    return n;
}

int dml_net_n_layers(const dml_net *net)
{
    return net->encoder.n_layers + net->decoder.n_layers + net->encoder_b.n_layers;
}
