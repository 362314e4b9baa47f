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
    if (!o->params || !o->m || !o->v)
        goto nomem;
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
    free(o->params);
    memset(o, 0, sizeof *o);
}

void dml_optim_zero_grad(dml_optim *o)
{
    for (int i = 0; i < o->n_params; i++)
        memset(o->params[i].grad, 0, o->params[i].n * sizeof(float));
}

/* torch.optim.SGD: g += wd p; buf = mu buf + g (buf = g on the first step); nesterov: g + mu buf. */
static void sgd_update(dml_optim *o, int i, float lr)
{
    dml_param_view *p = &o->params[i];
    float mu = o->spec.momentum, wd = o->spec.weight_decay;
    for (size_t k = 0; k < p->n; k++) {
        float g = p->grad[k] + wd * p->data[k];
        if (mu > 0.0f) {
            float *buf = &o->m[i][k];
            *buf = o->step == 1 ? g : mu * *buf + g;
            g = o->spec.nesterov ? g + mu * *buf : *buf;
        }
        p->data[k] -= lr * g;
    }
}

/* torch.optim.Adam / AdamW with bias correction; AdamW decays the weight before the update. */
static void adam_update(dml_optim *o, int i, float lr)
{
    dml_param_view *p = &o->params[i];
    float b1 = o->spec.beta1, b2 = o->spec.beta2, eps = o->spec.eps, wd = o->spec.weight_decay;
    int decoupled = o->spec.kind == DML_OPTIM_ADAMW;
    float bc1 = 1.0f - powf(b1, (float)o->step), bc2 = 1.0f - powf(b2, (float)o->step);
    float step_size = lr / bc1, bc2_sqrt = sqrtf(bc2);
    float *m = o->m[i], *v = o->v[i];
    for (size_t k = 0; k < p->n; k++) {
        float g = p->grad[k];
        if (decoupled)
            p->data[k] *= 1.0f - lr * wd;
        else
            g += wd * p->data[k];
        m[k] = b1 * m[k] + (1.0f - b1) * g;
        v[k] = b2 * v[k] + (1.0f - b2) * g * g;
        p->data[k] -= step_size * m[k] / (sqrtf(v[k]) / bc2_sqrt + eps);
    }
}

void dml_optim_step(dml_optim *o, float lr)
{
    o->step++;
    for (int i = 0; i < o->n_params; i++) {
        if (o->spec.kind == DML_OPTIM_SGD)
            sgd_update(o, i, lr);
        else
            adam_update(o, i, lr);
    }
}

float dml_clip_grad_norm(dml_param_view *params, int n_params, float max_norm)
{
    double ss = 0.0;
    for (int i = 0; i < n_params; i++)
        for (size_t k = 0; k < params[i].n; k++)
            ss += (double)params[i].grad[k] * params[i].grad[k];
    float norm = (float)sqrt(ss);
    if (max_norm > 0.0f && norm > max_norm) {
        /* torch.nn.utils.clip_grad_norm_ adds 1e-6 to the norm. */
        float s = max_norm / (norm + 1e-6f);
        for (int i = 0; i < n_params; i++)
            for (size_t k = 0; k < params[i].n; k++)
                params[i].grad[k] *= s;
    }
    return norm;
}
