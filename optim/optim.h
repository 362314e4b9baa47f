/* optim/: SGD (momentum, Nesterov), Adam, AdamW, learning-rate schedules and gradient-norm
 * clipping. The optimizer sees a flat list of {data, grad, n} views and nothing of layers. */
#ifndef DML_OPTIM_H
#define DML_OPTIM_H

#include "nn/nn.h"

typedef enum dml_optim_kind { DML_OPTIM_SGD, DML_OPTIM_ADAM, DML_OPTIM_ADAMW } dml_optim_kind;

typedef struct dml_optim_spec {
    dml_optim_kind kind;
    float momentum;     /* sgd; 0 = plain SGD */
    int nesterov;       /* sgd with momentum */
    float beta1, beta2; /* adam/adamw; 0.9, 0.999 when both are 0 */
    float eps;          /* adam/adamw; 1e-8 when 0 */
    float weight_decay; /* sgd/adam: L2 added to the gradient; adamw: decoupled decay */
} dml_optim_spec;

typedef struct dml_optim {
    dml_optim_spec spec;
    int n_params;
    dml_param_view *params; /* [n_params], copied */
    float **m, **v;         /* [n_params][params[i].n]: momentum / first and second moments */
    float *lr_scale;        /* [n_params] each parameter's learning rate over lr (1 unless set) */
    long step;              /* updates made so far */
} dml_optim;

dml_status dml_optim_init(dml_optim *o, const dml_optim_spec *spec, const dml_param_view *params,
                          int n_params, dml_error *err);
void dml_optim_free(dml_optim *o);
/* Parameter i learns at scale * lr (a parameter group's rate in torch.optim, e.g. a loss's
 * proxies at 100 times the network's); weight decay scales with it, as in torch. */
void dml_optim_set_lr_scale(dml_optim *o, int i, float scale);
/* One update with learning rate lr (times each parameter's lr_scale) from the gradients in
 * params[i].grad. */
void dml_optim_step(dml_optim *o, float lr);
/* Zero every parameter gradient (before a step's backward). */
void dml_optim_zero_grad(dml_optim *o);
/* Floats of state per parameter (0, 1 or 2 buffers of n): what a checkpoint saves. */
int dml_optim_n_state(const dml_optim *o);

/* Global L2 norm of all gradients; when max_norm > 0 and the norm exceeds it, every gradient is
 * scaled by max_norm / norm. Returns the norm before clipping. */
float dml_clip_grad_norm(dml_param_view *params, int n_params, float max_norm);

typedef enum dml_schedule_kind {
    DML_SCHEDULE_CONSTANT,
    DML_SCHEDULE_COSINE,
    DML_SCHEDULE_STEP
} dml_schedule_kind;

typedef struct dml_schedule {
    dml_schedule_kind kind;
    float lr;          /* base rate */
    long total_steps;  /* cosine decays to lr_min over this many steps */
    long warmup_steps; /* linear warm-up from 0 to lr first */
    float lr_min;      /* cosine floor */
    long step_every;   /* step: multiply by gamma every step_every steps */
    float gamma;
} dml_schedule;

/* The learning rate for update number `step` (0-based). */
float dml_schedule_lr(const dml_schedule *s, long step);

#endif
