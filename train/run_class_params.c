/* A loss's learned per-class rows (losses/loss_table.h: class_rows > 0), Proxy Anchor's proxies
 * and ArcFace's class centres: allocated at set-up for the training labels' classes, drawn from a
 * generator of their own (the batches stay the run's without them), then one more parameter of
 * the run (r->params): zeroed, clipped, summed over the ranks and updated by the optimizer with
 * the network's weights, at the row's lr_multiplier times the learning rate, and kept in
 * checkpoint.h5. Like model.head they serve the training loss only: model.h5, ONNX and FAISS
 * exports never see them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

/* Rows per class: the row's class_rows_key parameter when it has one (sub-centres), else its
 * class_rows. */
static int rows_per_class(const dml_loss_row *row, const float *p)
{
    if (!row->class_rows_key)
        return row->class_rows;
    int k = dml_loss_param_index(row, row->class_rows_key);
    DML_ASSERT(k >= 0);
    return (int)p[k];
}

dml_status dml_run_class_params_open(dml_run *r, const dml_loss_row *row, const float *p,
                                     dml_error *err)
{
    dml_class_params *cp = &r->cls;
    if (!row || row->class_rows <= 0)
        return DML_OK;
    if (r->train.n_classes < 1) /* the row needs labels, which the trainer checked */
        return dml_error_set(err, DML_ERR_DATA, r->cfg->data.train, 0, 0,
                             "loss.type %s learns parameters per class, and the training rows "
                             "have no labels", row->name);
    int k = dml_loss_param_index(row, "lr_multiplier");
    DML_ASSERT(k >= 0); /* losses/loss_table.h: every row with class rows declares it */
    cp->lr_multiplier = p[k];
    cp->n_classes = r->train.n_classes;
    cp->rows = rows_per_class(row, p);
    cp->dim = r->dim_loss;
    size_t n_rows = (size_t)cp->n_classes * cp->rows, n = n_rows * cp->dim;
    cp->data = malloc(n * sizeof *cp->data);
    cp->grad = calloc(n, sizeof *cp->grad);
    if (!cp->data || !cp->grad)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0,
                             "out of memory for loss.type %s's %zu x %d class parameters",
                             row->name, n_rows, cp->dim);
    /* As PML draws them (the row's class_rows_std): ProxyAnchorLoss's kaiming_normal_(mode=
     * "fan_out") on [classes, dim] is N(0, 2 / fan_out), fan_out its number of rows; ArcFace's
     * and CosFace's weights are normal_, N(0, 1). */
    dml_rng rng;
    dml_rng_seed(&rng, (uint64_t)r->cfg->seed ^ 0x636c6173736573ull); /* "classes" */
    float std = row->class_rows_std > 0.0f ? row->class_rows_std : sqrtf(2.0f / (float)n_rows);
    for (size_t i = 0; i < n_rows; i++)
        dml_rng_normals(&rng, cp->data + i * cp->dim, cp->dim);
    for (size_t i = 0; i < n; i++)
        cp->data[i] *= std;
    DML_ASSERT(r->n_params < DML_MAX_PARAMS);
    cp->param = r->n_params;
    r->params[r->n_params++] = (dml_param_view){cp->data, cp->grad, n};
    fprintf(r->log, "# loss.type %s: %zu learned class rows (%d classes x %d) of width %d, "
                    "learning rate x %g\n", row->name, n_rows, cp->n_classes, cp->rows, cp->dim,
            (double)cp->lr_multiplier);
    return DML_OK;
}

void dml_run_class_params_lr(dml_run *r)
{
    if (r->cls.data)
        dml_optim_set_lr_scale(&r->optim, r->cls.param, r->cls.lr_multiplier);
}

/* Every rank computes the whole global batch's loss, and so the same gradient for the class
 * rows (the network's differ: each rank backpropagates its own rows). Rank 0's alone enters the
 * sum, which is then the one process's gradient exactly. */
void dml_run_class_params_own(dml_run *r)
{
    if (r->cls.data && r->comm && r->comm->rank != 0)
        memset(r->cls.grad, 0, r->params[r->cls.param].n * sizeof *r->cls.grad);
}

dml_tensor *dml_run_class_params_leaf(const dml_run *r, dml_graph *g)
{
    const dml_class_params *cp = &r->cls;
    return cp->data ? dml_leaf(g, cp->data, cp->grad, cp->n_classes * cp->rows, cp->dim) : NULL;
}

void dml_run_class_params_free(dml_class_params *cp)
{
    free(cp->data);
    free(cp->grad);
    memset(cp, 0, sizeof *cp);
}
