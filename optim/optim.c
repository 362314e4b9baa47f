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

void dml_optim_zero_grad(dml_optim *o)
{
    for (int i = 0; i < o->n_params; i++)
        memset(o->params[i].grad, 0, o->params[i].n * sizeof(float));
}

/* torch.optim.SGD: g += wd p; buf = mu buf + g; nesterov: g + mu buf.
 * The loops take restrict locals and no per-element branch, so they vectorise. */
static void sgd_update(dml_optim *o, int i, float lr)
{
    const dml_param_view *p = &o->params[i];
    float *restrict w = p->data;
    const float *restrict grad = p->grad;
    const float mu = o->spec.momentum, wd = o->spec.weight_decay;
    const size_t n = p->n;
    if (mu == 0.0f) {
        for (size_t k = 0; k < n; k++)
            w[k] -= lr * (grad[k] + wd * w[k]);
        return;
    }
    float *restrict buf = o->m[i];
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
DML_SIMD_CLONES static void adam_update(dml_optim *o, int i, float lr)
{
    const dml_param_view *p = &o->params[i];
    float *restrict w = p->data, *restrict m = o->m[i], *restrict v = o->v[i];
    const float *restrict grad = p->grad;
    const float b1 = o->spec.beta1, b2 = o->spec.beta2, eps = o->spec.eps, wd = o->spec.weight_decay;
    const int decoupled = o->spec.kind == DML_OPTIM_ADAMW;
    const float l2 = decoupled ? 0.0f : wd, shrink = decoupled ? 1.0f - lr * wd : 1.0f;
    const float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
    /* torch divides sqrt(v) by sqrt(bc2); multiplying by its inverse instead differs by at most
     * an ulp and leaves one division per element, which is what bounds this loop. */
    const float step_size = lr / bc1, inv_bc2_sqrt = 1.0f / sqrtf(bc2);
    for (size_t k = 0, n = p->n; k < n; k++) {
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
    for (int i = 0; i < o->n_params; i++) {
        if (o->spec.kind == DML_OPTIM_SGD)
            sgd_update(o, i, lr * o->lr_scale[i]);
        else
            adam_update(o, i, lr * o->lr_scale[i]);
    }
}

/* Sum of squares in float over short blocks (so the loop vectorises), each block's sum added in
 * double (so a large model's norm keeps its precision). */
static double sum_squares(const float *restrict x, size_t n)
{
    enum { BLOCK = 256 };
    double total = 0.0;
    for (size_t start = 0; start < n; start += BLOCK) {
        size_t end = start + BLOCK < n ? start + BLOCK : n;
        float s[8] = {0};
        for (size_t k = start; k + 8 <= end; k += 8)
            for (int j = 0; j < 8; j++)
                s[j] += x[k + j] * x[k + j];
        for (size_t k = start + (end - start) / 8 * 8; k < end; k++)
            s[0] += x[k] * x[k];
        for (int j = 0; j < 8; j++)
            total += s[j];
    }
    return total;
}

float dml_clip_grad_norm(dml_param_view *params, int n_params, float max_norm)
{
    double ss = 0.0;
    for (int i = 0; i < n_params; i++)
        ss += sum_squares(params[i].grad, params[i].n);
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) {
        /* torch.nn.utils.clip_grad_norm_ adds 1e-6 to the norm. */
        float s = max_norm / (norm + 1e-6f);
        for (int i = 0; i < n_params; i++) {
            float *restrict g = params[i].grad;
            for (size_t k = 0, n = params[i].n; k < n; k++)
                g[k] *= s;
        }
    }
    return norm;
}
