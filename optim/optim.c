/* SGD, Adam and AdamW as PyTorch defines them (torch.optim, 1.13), so runs compare. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "optim/optim.h"

int dml_optim_n_state(const dml_optim *o)
{
    if (o->spec.kind == DML_OPTIM_SGD)
        return o->spec.momentum > 0.0f ? 1 : 0;
    return 2;
}

dml_status dml_optim_init(dml_optim *o, const dml_optim_spec *spec, const dml_param_view *params,
                          int n_params, dml_error *err)
{
    memset(o, 0, sizeof *o);
    o->spec = *spec;
    if (o->spec.beta1 == 0.0f && o->spec.beta2 == 0.0f) {
        o->spec.beta1 = 0.9f;
        o->spec.beta2 = 0.999f;
    }
    if (o->spec.eps == 0.0f)
        o->spec.eps = 1e-8f;
    o->n_params = n_params;
    o->params = malloc((size_t)(n_params ? n_params : 1) * sizeof *o->params);
    o->m = calloc((size_t)(n_params ? n_params : 1), sizeof *o->m);
    o->v = calloc((size_t)(n_params ? n_params : 1), sizeof *o->v);
    o->lr_scale = malloc((size_t)(n_params ? n_params : 1) * sizeof *o->lr_scale);
    if (!o->params || !o->m || !o->v || !o->lr_scale)
        goto nomem;
    for (int i = 0; i < n_params; i++)
        o->lr_scale[i] = 1.0f;
    memcpy(o->params, params, (size_t)n_params * sizeof *params);
    int n_state = dml_optim_n_state(o);
    for (int i = 0; i < n_params; i++) {
        if (n_state >= 1 && !(o->m[i] = calloc(params[i].n, sizeof(float))))
            goto nomem;
        if (n_state >= 2 && !(o->v[i] = calloc(params[i].n, sizeof(float))))
            goto nomem;
    }
    return DML_OK;
nomem:
    dml_optim_free(o);
    return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the optimizer state");
}

void dml_optim_free(dml_optim *o)
{
    for (int i = 0; i < o->n_params; i++) {
        if (o->m)
            free(o->m[i]);
        if (o->v)
            free(o->v[i]);
    }
    free(o->m);
    free(o->v);
    free(o->lr_scale);
    free(o->params);
    memset(o, 0, sizeof *o);
}

/* The element-wise passes run on dml's threads (nn/pool.c), each thread taking one stretch of
 * all the parameters' elements laid end to end; an element's arithmetic does not depend on
 * which thread does it. */
typedef void (*param_pass)(dml_optim *o, int i, size_t start, size_t end, float lr);
typedef struct {
    dml_optim *o;
    param_pass pass;
    float lr;
    size_t total; /* elements of all the parameters */
} pass_job;

static size_t total_elements(const dml_param_view *params, int n_params)
{
    size_t total = 0;
    for (int i = 0; i < n_params; i++)
        total += params[i].n;
    return total;
}

/* Calls piece(ctx, i, lo, hi) for each parameter i's elements [lo, hi) that fall in [start, end)
 * of all the parameters' elements laid end to end, in order. */
static void for_each_piece(const dml_param_view *params, int n_params, size_t start, size_t end,
                           void (*piece)(void *ctx, int i, size_t lo, size_t hi), void *ctx)
{
    size_t offset = 0;
    for (int i = 0; i < n_params && offset < end; i++) {
        size_t n = params[i].n, lo = start > offset ? start - offset : 0,
               hi = end - offset < n ? end - offset : n;
        if (lo < hi)
            piece(ctx, i, lo, hi);
        offset += n;
    }
}

static void pass_piece(void *ctx, int i, size_t lo, size_t hi)
{
    const pass_job *job = ctx;
    job->pass(job->o, i, lo, hi, job->lr * job->o->lr_scale[i]);
}

/* Chunks for the threads to take in turn: the threads' halves of the same work took 190 and
 * 250 us in Adam (the slow half stayed slow on either thread), so halves would wait. */
enum { PASS_CHUNKS = 16 };

static void pass_chunk(void *ctx, int chunk, int n_chunks)
{
    const pass_job *job = ctx;
    size_t s, e;
    dml_pool_range(job->total, 16, chunk, n_chunks, &s, &e);
    for_each_piece(job->o->params, job->o->n_params, s, e, pass_piece, ctx);
}

static void run_pass(dml_optim *o, param_pass pass, float lr)
{
    pass_job job = {o, pass, lr, total_elements(o->params, o->n_params)};
    dml_pool_run_chunks(pass_chunk, &job, PASS_CHUNKS, job.total);
}

static void zero_grad(dml_optim *o, int i, size_t start, size_t end, float lr)
{
    (void)lr;
    memset(o->params[i].grad + start, 0, (end - start) * sizeof(float));
}

void dml_optim_zero_grad(dml_optim *o)
{
    run_pass(o, zero_grad, 0.0f);
}

/* torch.optim.SGD: g += wd p; buf = mu buf + g; nesterov: g + mu buf.
 * The loops take restrict locals and no per-element branch, so they vectorise. */
static void sgd_update(dml_optim *o, int i, size_t start, size_t end, float lr)
{
    const dml_param_view *p = &o->params[i];
    float *restrict w = p->data + start;
    const float *restrict grad = p->grad + start;
    const float mu = o->spec.momentum, wd = o->spec.weight_decay;
    const size_t n = end - start;
    if (mu == 0.0f) {
        for (size_t k = 0; k < n; k++)
            w[k] -= lr * (grad[k] + wd * w[k]);
        return;
    }
    float *restrict buf = o->m[i] + start;
    const float keep = o->step == 1 ? 0.0f : mu; /* buf = g on the first step */
    const int nesterov = o->spec.nesterov;
    for (size_t k = 0; k < n; k++) {
        float g = grad[k] + wd * w[k];
        float b = keep * buf[k] + g;
        buf[k] = b;
        w[k] -= lr * (nesterov ? g + mu * b : b);
    }
}

/* torch.optim.Adam / AdamW with bias correction; AdamW decays the weight before the update.
 * Both are one branch-free loop: Adam's decay adds l2 * w to the gradient, AdamW's scales w. */
DML_SIMD_CLONES static void adam_update(dml_optim *o, int i, size_t start, size_t end, float lr)
{
    const dml_param_view *p = &o->params[i];
    float *restrict w = p->data + start, *restrict m = o->m[i] + start, *restrict v = o->v[i] + start;
    const float *restrict grad = p->grad + start;
    const float b1 = o->spec.beta1, b2 = o->spec.beta2, eps = o->spec.eps, wd = o->spec.weight_decay;
    const int decoupled = o->spec.kind == DML_OPTIM_ADAMW;
    const float l2 = decoupled ? 0.0f : wd, shrink = decoupled ? 1.0f - lr * wd : 1.0f;
    const float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
    /* torch divides sqrt(v) by sqrt(bc2); multiplying by its inverse instead differs by at most
     * an ulp and leaves one division per element, which is what bounds this loop. */
    const float step_size = lr / bc1, inv_bc2_sqrt = 1.0f / sqrtf(bc2);
    for (size_t k = 0, n = end - start; k < n; k++) {
        float g = grad[k] + l2 * w[k];
        float mk = b1 * m[k] + (1.0f - b1) * g;
        float vk = b2 * v[k] + (1.0f - b2) * g * g;
        m[k] = mk;
        v[k] = vk;
        w[k] = w[k] * shrink - step_size * mk / (sqrtf(vk) * inv_bc2_sqrt + eps);
    }
}

void dml_optim_set_lr_scale(dml_optim *o, int i, float scale)
{
    DML_ASSERT(i >= 0 && i < o->n_params);
    o->lr_scale[i] = scale;
}

void dml_optim_step(dml_optim *o, float lr)
{
    o->step++;
    run_pass(o, o->spec.kind == DML_OPTIM_SGD ? sgd_update : adam_update, lr);
}

/* Sum of squares in float over blocks, in LANES partial sums (so the loop vectorises, with
 * several vector additions in flight: with 8 the pass waited on one addition chain, at about an
 * element a cycle), each block's sums added in double (so a large model's norm keeps its
 * precision). */
DML_SIMD_CLONES static double sum_squares(const float *restrict x, size_t n)
{
    enum { BLOCK = 1024, LANES = 32 };
    double total = 0.0;
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t end = start + BLOCK < n ? start + BLOCK : n;
        float s[LANES] = {0};
        for (size_t k = start; k + LANES <= end; k += LANES)
            for (int j = 0; j < LANES; j++)
                s[j] += x[k + j] * x[k + j];
        for (size_t k = start + (end - start) / LANES * LANES; k < end; k++)
            s[0] += x[k] * x[k];
        for (int j = 0; j < LANES; j++)
            total += s[j];
    }
    return total;
}

/* The norm's sum is cut into a fixed number of stretches, whatever the thread count, each summed
 * on its own and the stretches' sums added in order: the same bits on any number of threads. */
enum { NORM_STRETCHES = 64 };
typedef struct {
    dml_param_view *params;
    int n_params;
    size_t total;
    float scale; /* clipping: each gradient times this */
    double sums[NORM_STRETCHES];
} norm_job;

typedef struct {
    const dml_param_view *params;
    double *sum; /* the stretch's */
} stretch;

static void square_piece(void *ctx, int i, size_t lo, size_t hi)
{
    const stretch *st = ctx;
    *st->sum += sum_squares(st->params[i].grad + lo, hi - lo);
}

static void norm_stretch(void *ctx, int k, int n_stretches)
{
    norm_job *job = ctx;
    size_t s, e;
    dml_pool_range(job->total, 256, k, n_stretches, &s, &e);
    job->sums[k] = 0.0;
    stretch st = {job->params, &job->sums[k]};
    for_each_piece(job->params, job->n_params, s, e, square_piece, &st);
}

static void scale_piece(void *ctx, int i, size_t lo, size_t hi)
{
    const norm_job *job = ctx;
    float *restrict g = job->params[i].grad;
    for (size_t k = lo; k < hi; k++)
        g[k] *= job->scale;
}

static void scale_chunk(void *ctx, int chunk, int n_chunks)
{
    const norm_job *job = ctx;
    size_t s, e;
    dml_pool_range(job->total, 16, chunk, n_chunks, &s, &e);
    for_each_piece(job->params, job->n_params, s, e, scale_piece, ctx);
}

float dml_clip_grad_norm(dml_param_view *params, int n_params, float max_norm)
{
    norm_job job = {.params = params, .n_params = n_params,
                    .total = total_elements(params, n_params)};
    dml_pool_run_chunks(norm_stretch, &job, NORM_STRETCHES, job.total);
    double ss = 0.0;
    for (int k = 0; k < NORM_STRETCHES; k++)
        ss += job.sums[k];
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) {
        /* torch.nn.utils.clip_grad_norm_ adds 1e-6 to the norm. */
        job.scale = max_norm / (norm + 1e-6f);
        dml_pool_run_chunks(scale_chunk, &job, PASS_CHUNKS, job.total);
    }
    return norm;
}
