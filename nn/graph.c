/* The tape: nodes appended in forward order (already a topological order), walked in
 * reverse by dml_backward. Every node and buffer lives in the graph's arena. */
#include <string.h>

#include "nn/nn.h"

#define TAPE_INITIAL_CAP 256

void dml_graph_init(dml_graph *g, size_t arena_bytes)
{
    memset(g, 0, sizeof *g);
    dml_arena_init(&g->arena, arena_bytes);
    if (!g->arena.head)
        g->status = DML_ERR_NOMEM;
}

void dml_graph_reset(dml_graph *g)
{
    dml_arena_reset(&g->arena);
    g->tape = NULL;
    g->n_tape = g->cap_tape = 0;
    g->status = g->arena.head ? DML_OK : DML_ERR_NOMEM;
}

void dml_graph_free(dml_graph *g)
{
    dml_arena_free(&g->arena);
    memset(g, 0, sizeof *g);
}

void *dml_graph_alloc(dml_graph *g, size_t bytes)
{
    if (g->status != DML_OK)
        return NULL;
    void *p = dml_arena_alloc(&g->arena, bytes);
    if (!p)
        g->status = DML_ERR_NOMEM;
    return p;
}

/* A node's gradient is zeroed where it is made (backward adds into it, and a leaf may alias it),
 * a large one on dml's threads: the forward's nodes at batch 256 came to ~1.3 MB of zeroing on
 * one thread. */
typedef struct {
    float *p;
    int cols;
} zero_job;

static void zero_rows(void *ctx, int first, int end)
{
    const zero_job *job = ctx;
    size_t cols = (size_t)job->cols;
    memset(job->p + (size_t)first * cols, 0, (size_t)(end - first) * cols * sizeof(float));
}

static float *alloc_floats(dml_graph *g, int rows, int cols, int zero)
{
    float *p = dml_graph_alloc(g, (size_t)rows * cols * sizeof(float));
    if (p && zero) {
        zero_job job = {p, cols};
        dml_pool_run_rows(zero_rows, &job, rows, cols);
    }
    return p;
}

static dml_tensor *tensor_new(dml_graph *g, int rows, int cols)
{
    dml_tensor *t = dml_graph_alloc(g, sizeof *t);
    if (!t)
        return NULL;
    memset(t, 0, sizeof *t);
    t->rows = rows;
    t->cols = cols;
    return t;
}

dml_tensor *dml_leaf(dml_graph *g, float *data, float *grad, int rows, int cols)
{
    dml_tensor *t = tensor_new(g, rows, cols);
    if (t) {
        t->data = data;
        t->grad = grad;
    }
    return t;
}

dml_tensor *dml_leaf_copy(dml_graph *g, const float *data, int rows, int cols, int want_grad)
{
    size_t n = (size_t)rows * cols;
    dml_tensor *t = tensor_new(g, rows, cols);
    if (!t || !(t->data = alloc_floats(g, rows, cols, 0)))
        return NULL;
    memcpy(t->data, data, n * sizeof(float));
    if (want_grad && !(t->grad = alloc_floats(g, rows, cols, 1)))
        return NULL;
    return t;
}

static int tape_push(dml_graph *g, dml_tensor *t)
{
    if (g->n_tape == g->cap_tape) {
        int cap = g->cap_tape ? 2 * g->cap_tape : TAPE_INITIAL_CAP;
        dml_tensor **tape = dml_graph_alloc(g, (size_t)cap * sizeof *tape);
        if (!tape)
            return 0;
        if (g->n_tape)
            memcpy(tape, g->tape, (size_t)g->n_tape * sizeof *tape);
        g->tape = tape;
        g->cap_tape = cap;
    }
    g->tape[g->n_tape++] = t;
    return 1;
}

dml_tensor *dml_graph_node(dml_graph *g, const dml_op_def *def, int rows, int cols, dml_tensor *a,
                           dml_tensor *b, dml_tensor *c)
{
    dml_tensor *src[DML_MAX_SRC] = {a, b, c};
    int n_src = c ? 3 : b ? 2 : 1;
    int needs_grad = 0;
    for (int i = 0; i < n_src; i++) {
        if (!src[i])
            return NULL;
        needs_grad |= src[i]->grad != NULL;
    }
    dml_tensor *t = tensor_new(g, rows, cols);
    if (!t || !(t->data = alloc_floats(g, rows, cols, 0)))
        return NULL;
    if (needs_grad && !(t->grad = alloc_floats(g, rows, cols, 1)))
        return NULL;
    t->op = def;
    memcpy(t->src, src, sizeof src);
    return t;
}

dml_tensor *dml_graph_run(dml_graph *g, dml_tensor *t)
{
    if (!t)
        return NULL;
    t->op->forward(t);
    if (g->status != DML_OK || !tape_push(g, t))
        return NULL;
    return t;
}

dml_status dml_backward_from(dml_graph *g, dml_tensor *root)
{
    if (g->status != DML_OK)
        return g->status;
    int i = g->n_tape - 1;
    while (i >= 0 && g->tape[i] != root) /* nodes after root get no gradient from it */
        i--;
    for (; i >= 0; i--) {
        dml_tensor *t = g->tape[i];
        if (t->grad)
            t->op->backward(t);
        if (g->after_backward)
            g->after_backward(g->after_backward_ctx, i);
    }
    return DML_OK;
}

dml_status dml_backward(dml_graph *g, dml_tensor *root)
{
    if (!root)
        return g->status != DML_OK ? g->status : DML_ERR_INTERNAL;
    DML_ASSERT(root->rows == 1 && root->cols == 1);
    if (!root->grad)
        return DML_OK; /* nothing that needs a gradient reaches the root */
    root->grad[0] = 1.0f;
    return dml_backward_from(g, root);
}
