/* The training loop: set-up (data, model, optimizer, samplers), steps with validation,
 * early stopping, codebook updates and checkpoints, then the final evaluation and outputs. */
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/loss_data.h"
#include "train/run.h"
#include "train/run_output.h"

#define ARENA_BYTES (8u << 20)

_Static_assert(2 * (3 * (DML_CONFIG_MAX_HIDDEN + 1) + DML_CONFIG_MAX_HIDDEN) + 1 <= DML_MAX_PARAMS,
               "r->params must hold every tower's and the head's weights and biases, and the "
               "loss's class rows");

/* ---- set-up: data ---- */
static dml_status open_data(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    dml_status st = r->given_train ? DML_OK : dml_run_open_train(r, err);
    if (st == DML_OK) /* the rows as read: data.normalize is compared on its own */
        r->data_hash = dml_run_data_hash(&r->train);
    if (st == DML_OK && r->val_rows.n) /* a resume with other validation rows is another run */
        r->data_hash = r->data_hash * 1099511628211ull ^ dml_run_data_hash(&r->val_rows);
    if (st == DML_OK && c->data.test[0] && !r->given_test)
        st = dml_dataset_open(c->data.test, &r->test, err);
    if (st != DML_OK)
        return st;
    if (r->test.n && r->test.d != r->train.d)
        return dml_error_set(err, DML_ERR_DATA, c->data.test, 0, 0,
                             "rows of width %d, but the training data (%s) has width %d",
                             r->test.d, c->data.train, r->train.d);
    if ((st = dml_run_fit_loss(r, err)) != DML_OK)
        return st;
    int supervised = !c->data.unlabelled && dml_loss_needs_labels(c);
    if (supervised && !r->train.y && !dml_config_where(c, "loss.type", NULL, NULL))
        return dml_config_error(c, "loss.type", err,
                                "the default loss (triplet) needs labels, and %s has none: set "
                                "model.type to autoencoder (it then reconstructs the rows), or "
                                "loss.type to mnr with data.pairs halves, file or augment",
                                c->data.train);
    if (supervised && !r->train.y)
        return dml_config_error(c, "loss.type", err, "the %s%s loss needs labels, and %s has none",
                                c->loss.row->name,
                                c->loss.row->needs & DML_LOSS_NEEDS_LABELS ? "" : " (same_class)",
                                c->data.train);
    if (c->data.pairs == DML_PAIRS_FILE && !r->train.x_b)
        return dml_config_error(c, "data.pairs", err,
                                "file pairs need datasets anchor and positive in %s",
                                c->data.train);
    dml_dataset *sets[3] = {&r->train, &r->test, &r->val_rows};
    for (int i = 0; c->data.pairs == DML_PAIRS_HALVES && i < 3; i++) {
        /* two views of every row: its two halves */
        dml_dataset halves;
        if (sets[i]->n == 0)
            continue;
        if ((st = dml_dataset_halves(sets[i], &halves, err)) != DML_OK)
            return st;
        dml_dataset_free(sets[i]);
        *sets[i] = halves;
    }
    dml_split_spec spec = {c->data.val_fraction, c->data.labels_per_class, c->data.unlabelled};
    if ((st = dml_split_make(&r->split, &r->train, &spec, &r->rng, err)) != DML_OK ||
        (r->val_rows.n && (st = dml_run_append_validation(r, err)) != DML_OK) ||
        (st = dml_loss_check_rows(c, &r->train, r->split.train, r->split.n_train, err)) != DML_OK ||
        (st = dml_check_test_labels(c, &r->test, err)) != DML_OK)
        return st;
    if ((st = dml_run_fit_defaults(r, err)) != DML_OK ||
        (st = dml_run_stream_fit(r, err)) != DML_OK)
        return st;
    if (c->pq.k > r->split.n_train + r->split.n_unlabelled)
        return dml_config_error(c, "pq.k", err, "%d centroids, but only %d training rows",
                                c->pq.k, r->split.n_train + r->split.n_unlabelled);
    return DML_OK;
}

/* Normalisation statistics from the training rows only, applied to every set in place (a set
 * of borrowed rows is copied first, once, when its normalisation writes). */
static dml_status normalise(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    dml_status st = dml_run_measure_scale(r, err);
    if (st == DML_OK)
        st = dml_input_norm_fit(&r->norm, c->data.normalize, &r->train, 0, r->split.train,
                                r->split.n_train, err);
    if (st == DML_OK && r->train.x_b)
        st = dml_input_norm_fit(&r->norm_b, c->data.normalize, &r->train, 1, r->split.train,
                                r->split.n_train, err);
    int writes = r->norm.d || r->norm_b.d; /* d 0: the identity */
    if (st == DML_OK && writes && (st = dml_dataset_own(&r->train, err)) == DML_OK)
        st = dml_dataset_own(&r->test, err);
    if (st != DML_OK)
        return st;
    if (r->streamed)
        dml_run_stream_normalise(r);
    else
        dml_input_norm_apply(&r->norm, r->train.x, (size_t)r->train.n);
    if (r->train.x_b)
        dml_input_norm_apply(&r->norm_b, r->train.x_b, (size_t)r->train.n);
    if (r->test.n)
        dml_input_norm_apply(&r->norm, r->test.x, (size_t)r->test.n);
    if (r->test.x_b)
        dml_input_norm_apply(&r->norm_b, r->test.x_b, (size_t)r->test.n);
    return DML_OK;
}

/* ---- set-up: model ---- */
static dml_activation activation(int a)
{
    static const dml_activation map[] = {DML_ACT_RELU, DML_ACT_TANH, DML_ACT_GELU,
                                         DML_ACT_LEAKY_RELU};
    return map[a];
}

static dml_output_norm output_norm(int o)
{
    static const dml_output_norm map[] = {DML_OUTPUT_L2, DML_OUTPUT_TANH, DML_OUTPUT_NONE};
    return map[o];
}

static dml_status build_model(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    r->d_in = r->train.d;
    r->d_in_b = r->train.x_b ? r->train.d_b : r->train.d;
    if (c->data.pairs != DML_PAIRS_NONE && c->model.type != DML_NET_DUAL && r->d_in != r->d_in_b)
        return dml_config_error(c, "model.type", err,
                                "the two views have widths %d and %d: a shared encoder needs one "
                                "width (use model.type: dual)", r->d_in, r->d_in_b);
    dml_net_spec spec = {c->model.type, r->d_in, r->d_in_b, c->model.n_hidden, c->model.hidden,
                         c->model.dim, activation(c->model.activation), output_norm(c->model.output),
                         c->model.init_scheme};
    dml_status st = dml_net_init(&r->net, &spec, &r->rng, err);
    if (st == DML_OK && c->model.init[0])
        st = dml_run_load_init(r, err);
    if (st != DML_OK)
        return st;
    dml_mlp_freeze(&r->net.encoder, c->model.freeze);
    r->n_params = dml_net_params(&r->net, r->params);
    r->dim_loss = c->model.dim;
    if (c->model.n_head > 0) {
        /* SimCLR's projection head: ReLU between its layers, the last linear, then the same
         * output normalisation as the encoder (l2: the loss compares cosines). Its weights come
         * from a generator of their own, so the batches are those of the run without it. */
        int widths[DML_CONFIG_MAX_HIDDEN + 1] = {c->model.dim};
        memcpy(widths + 1, c->model.head, (size_t)c->model.n_head * sizeof *widths);
        dml_rng rng_head;
        dml_rng_seed(&rng_head, (uint64_t)c->seed ^ 0x68656164ull); /* "head" */
        if ((st = dml_mlp_init(&r->head, c->model.n_head + 1, widths, DML_ACT_RELU,
                               output_norm(c->model.output), c->model.init_scheme, &rng_head,
                               err)) != DML_OK)
            return st;
        r->n_params += dml_mlp_params(&r->head, r->params + r->n_params);
        r->dim_loss = c->model.head[c->model.n_head - 1];
    }
    r->n_floats = dml_mlp_n_floats(&r->net.encoder) + dml_mlp_n_floats(&r->net.decoder) +
                  dml_mlp_n_floats(&r->net.encoder_b);
    return dml_run_class_params_open(r, c->loss.row, c->loss.p, err);
}

/* data.augment: the image shape (a square when the config gives none and the width is one), its
 * generator and scratch. */
static dml_status build_augment(dml_run *r, dml_error *err)
{
    dml_augment *a = &r->cfg_fitted.data.augment;
    if (!(r->augment_on = dml_augment_on(a)))
        return DML_OK;
    if (dml_augment_geometric(a) && a->height == 0) {
        int side = (int)lround(sqrt((double)r->d_in));
        if (side * side != r->d_in)
            return dml_config_error(r->cfg, "data.augment", err,
                                    "shifts, rotations, zoom, flips and cutout need the rows' "
                                    "image shape: set data.augment.height and width (rows of "
                                    "width %d)", r->d_in);
        a->height = a->width = side;
        fprintf(r->log, "# data.augment: %d x %d images (the rows' width %d)\n", side, side,
                r->d_in);
    }
    if (dml_augment_geometric(a) && a->height * a->width != r->d_in)
        return dml_config_error(r->cfg, "data.augment.height", err,
                                "%d x %d images, but the encoder's rows have width %d", a->height,
                                a->width, r->d_in);
    dml_rng_seed(&r->rng_aug, (uint64_t)r->cfg->seed ^ 0x6175676d656e74ull); /* "augment" */
    /* a row of scratch for each row of a batch: the rows are augmented on dml's threads */
    r->aug_scratch = malloc((size_t)r->cfg->train.batch_size * (size_t)r->d_in * sizeof(float));
    return r->aug_scratch ? DML_OK
                          : dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the run");
}

/* ---- set-up: optimisation ---- */
static dml_status build_training(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    dml_optim_spec os = {.kind = (dml_optim_kind)c->train.optimizer,
                         .momentum = c->train.momentum,
                         .weight_decay = c->train.weight_decay};
    dml_status st = dml_optim_init(&r->optim, &os, r->params, r->n_params, err);
    if (st != DML_OK)
        return st;
    dml_run_class_params_lr(r);
    r->batch = c->train.batch_size;
    dml_sampler_spec ss = {(dml_sampler_kind)c->sampler.type, DML_PAIR_MODE_NONE, r->batch,
                           c->sampler.m, !c->sampler.drop_last, 0, 0};
    if (c->data.pairs != DML_PAIRS_NONE) {
        ss.kind = DML_SAMPLER_RANDOM;
        ss.pairs = c->data.pairs == DML_PAIRS_SAME_CLASS ? DML_PAIR_MODE_SAME_CLASS
                   : c->data.pairs == DML_PAIRS_AUGMENT  ? DML_PAIR_MODE_NONE /* a row, twice */
                                                         : DML_PAIR_MODE_OTHER_VIEW;
    }
    if ((!r->train.y || c->data.unlabelled) && ss.kind == DML_SAMPLER_M_PER_CLASS)
        ss.kind = DML_SAMPLER_RANDOM; /* nothing to group by (labels ignored: config_check.c) */
    if (c->sampler.shuffle == DML_SHUFFLE_BLOCK) {
        ss.block_rows = c->sampler.block_rows;
        ss.window_blocks = dml_run_window_blocks(r);
    }
    st = dml_sampler_init(&r->sampler, &ss, &r->train, r->split.train, r->split.n_train, &r->rng,
                          err);
    if (st == DML_OK && c->loss.reconstruction_weight > 0.0f && r->split.n_unlabelled >= r->batch) {
        dml_sampler_spec us = {DML_SAMPLER_RANDOM, DML_PAIR_MODE_NONE, r->batch, 1, 0,
                               ss.block_rows, ss.window_blocks};
        st = dml_sampler_init(&r->sampler_unl, &us, &r->train, r->split.unlabelled,
                              r->split.n_unlabelled, &r->rng, err);
    }
    if (st != DML_OK)
        return st;
    r->steps_per_epoch = dml_sampler_steps_per_epoch(&r->sampler);
    r->total_steps = c->train.steps > 0 ? c->train.steps : (long)c->train.epochs * r->steps_per_epoch;
    dml_schedule sched = {(dml_schedule_kind)c->train.schedule, c->train.lr, r->total_steps,
                          c->train.warmup_steps, 0.0f, r->steps_per_epoch, 0.5f};
    r->schedule = sched;
    size_t b = (size_t)r->batch, w = (size_t)(r->d_in > r->d_in_b ? r->d_in : r->d_in_b);
    r->idx = malloc(b * sizeof *r->idx);
    r->pos = malloc(b * sizeof *r->pos);
    r->idx_unl = malloc(b * sizeof *r->idx_unl);
    r->labels = calloc(b, sizeof *r->labels);
    r->xa = malloc(2 * b * w * sizeof(float)); /* a same-class pair batch: [2B, d] */
    r->xb = malloc(b * w * sizeof(float));
    r->xu = malloc(b * w * sizeof(float));
    r->best = malloc((r->n_floats ? r->n_floats : 1) * sizeof(float));
    r->loss_curve = calloc((size_t)r->total_steps, sizeof(float));
    if (!r->idx || !r->pos || !r->idx_unl || !r->labels || !r->xa || !r->xb || !r->xu || !r->best ||
        !r->loss_curve)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the run");
    if ((st = dml_pq_init(&r->pq, c->model.dim, c->pq.m, __builtin_ctz((unsigned)c->pq.k), err)))
        return st;
    r->best_score = -1.0;
    if ((st = dml_memory_init(&r->mem, c->loss.memory.size, r->dim_loss, err)))
        return st;
    if (c->train.chunk_size > 0) {
        size_t n_z = b * (size_t)c->model.dim;
        r->gc.za = malloc(n_z * sizeof(float));
        r->gc.zp = malloc(n_z * sizeof(float));
        r->gc.ga = malloc(n_z * sizeof(float));
        r->gc.gp = malloc(n_z * sizeof(float));
        if (!r->gc.za || !r->gc.zp || !r->gc.ga || !r->gc.gp)
            return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for GradCache");
    }
    if ((st = dml_hard_negatives_init(r, err)))
        return st;
    dml_graph_init(&r->graph, ARENA_BYTES + dml_hard_negatives_arena_bytes(r) +
                                  (c->loss.memory.size > 0
                                       ? dml_memory_arena_bytes(c->loss.memory.size, r->dim_loss,
                                                                r->batch)
                                       : 0));
    return DML_OK;
}

void dml_run_close(dml_run *r)
{
    if (!r)
        return;
    dml_dataset_free(&r->train);
    dml_dataset_free(&r->test);
    dml_dataset_free(&r->val_rows);
    dml_row_cache_free(&r->cache);
    free(r->plan_rows);
    dml_rows_close(&r->rows);
    dml_split_free(&r->split);
    dml_input_norm_free(&r->norm);
    dml_input_norm_free(&r->norm_b);
    dml_net_free(&r->net);
    dml_mlp_free(&r->head);
    dml_run_class_params_free(&r->cls);
    dml_optim_free(&r->optim);
    dml_pq_free(&r->pq);
    dml_sampler_free(&r->sampler);
    dml_sampler_free(&r->sampler_unl);
    dml_graph_free(&r->graph);
    free(r->idx);
    free(r->pos);
    free(r->idx_unl);
    free(r->labels);
    free(r->xa);
    free(r->xb);
    free(r->xu);
    free(r->best);
    free(r->loss_curve);
    free(r->aug_scratch);
    dml_memory_free(&r->mem);
    dml_hard_negatives_free(&r->hn);
    free(r->gc.za);
    free(r->gc.zp);
    free(r->gc.ga);
    free(r->gc.gp);
    free(r->flat);
    dml_run_overlap_free(&r->ovl);
    free(r->final_json);
    free(r);
}

/* ---- the loop ---- */
static int every(long step, int n, long steps_per_epoch)
{
    if (n == DML_EVERY_NEVER)
        return 0;
    long period = n > 0 ? n : steps_per_epoch;
    return step % period == 0;
}

/* Copies every parameter into (to_best) or out of the early-stopping snapshot. */
static void snapshot(dml_run *r, int to_best)
{
    dml_mlp *towers[3] = {&r->net.encoder, &r->net.decoder, &r->net.encoder_b};
    float *p = r->best;
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < towers[t]->n_layers; i++) {
            dml_tensor *ts[2] = {&towers[t]->layers[i].w, &towers[t]->layers[i].b};
            for (int k = 0; k < 2; k++) {
                size_t n = (size_t)ts[k]->rows * ts[k]->cols;
                if (to_best)
                    memcpy(p, ts[k]->data, n * sizeof(float));
                else
                    memcpy(ts[k]->data, p, n * sizeof(float));
                p += n;
            }
        }
}

/* The joint loss's codebooks: initialised after the warm-up, then refitted on schedule. */
static dml_status update_codebooks(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    long warmup = (long)c->loss.quantization.warmup_epochs * r->steps_per_epoch;
    if (c->loss.quantization.weight <= 0.0f || r->step < warmup)
        return DML_OK;
    int due = !r->pq_ready || every(r->step - warmup, c->loss.quantization.codebook_every,
                                    r->steps_per_epoch);
    if (!due)
        return DML_OK;
    dml_status st = dml_run_fit_codebooks(r, !r->pq_ready, err);
    if (st == DML_OK)
        r->pq_ready = 1;
    return st;
}

/* Rank 0 writes the checkpoint and metrics.jsonl; every rank learns whether it could. */
static dml_status save_state(dml_run *r, dml_error *err)
{
    dml_status st = DML_OK;
    if (r->no_folder)
        return DML_OK;
    if (dml_run_is_root(r) && (st = dml_run_checkpoint_save(r, err)) == DML_OK)
        st = dml_run_write_metrics(r, NULL, err);
    return dml_run_comm_agree(r, st, NULL, 0, err);
}

static dml_status validate_now(dml_run *r, dml_progress *bar, dml_error *err)
{
    dml_validation v = {r->step, 0.0, 0.0, {0, 0.0, 0.0, 0.0, NAN, NAN}};
    /* Over several ranks, rank 0 validates and sends its metrics: the early-stopping
     * decisions below are then the same on every rank. */
    dml_status st = dml_run_is_root(r) ? dml_run_validate(r, &v, err) : DML_OK;
    st = dml_run_comm_agree(r, st, &v, sizeof v, err);
    if (st != DML_OK)
        return st;
    if (r->n_val < DML_MAX_VALIDATIONS)
        r->val[r->n_val++] = v;
    /* Only a validation split picks the model and stops early. Unlabelled training selects
     * nothing by labels, and validation on the test set (no split) is only reported: a model
     * picked by the test set would flatter its own test figures. */
    int selects = !r->cfg->data.unlabelled && r->split.n_val > 0;
    int better = selects && v.map_at_r > r->best_score;
    if (better) {
        r->best_score = v.map_at_r;
        r->evals_without_gain = 0;
        snapshot(r, 1);
    } else if (selects) {
        r->evals_without_gain++;
    }
    if (isnan(v.map_at_r)) /* nothing labelled to validate on, nothing to say */
        return DML_OK;
    char dist[96];
    dml_label_distances_text(&v.spread, dist, sizeof dist);
    dml_progress_note(bar, "step %ld: validation map_at_r %.4f precision_at_1 %.4f, effective "
                      "rank %.1f, distance same/other label %s%s\n", r->step, v.map_at_r,
                      v.precision_at_1, v.spread.effective_rank, dist, better ? " (best)" : "");
    if (dml_spread_collapsed(&v.spread))
        dml_progress_note(bar, "step %ld: warning: the embeddings look collapsed (effective rank "
                          "%.2f of %d dimensions, spread %.3f of their norm; distance same/other "
                          "label %s): try a lower train.lr, or another loss.miner\n", r->step,
                          v.spread.effective_rank, r->cfg->model.dim, v.spread.relative_spread,
                          dist);
    return DML_OK;
}

dml_status dml_run_step(dml_run *r, float *loss_value, float *grad_norm, dml_error *err)
{
    dml_status st = dml_hard_negatives_mine(r, err);
    if (st != DML_OK)
        return st;
    dml_optim_zero_grad(&r->optim);
    float value = 0.0f;
    if (r->cfg->train.chunk_size > 0) {
        st = dml_run_gradcache_step(r, &value);
    } else {
        dml_tensor *loss = dml_run_loss(r, &r->graph);
        if (r->comm && loss)
            dml_run_overlap_begin(r);
        if ((st = dml_backward(&r->graph, loss)) == DML_OK)
            value = loss->data[0];
    }
    if (st != DML_OK) /* the same batch shape on every rank: all of them stop here */
        return dml_error_set(err, st, NULL, 0, 0, "step %ld: out of memory in the arena",
                             r->step + 1);
    if (r->streamed && (st = dml_row_cache_status(&r->cache, err)) != DML_OK) {
        dml_graph_reset(&r->graph);
        return st; /* the file failed under the batch: its message names the file */
    }
    /* The loss is the global batch's on every rank; the gradients are summed over the ranks. */
    dml_run_class_params_own(r);
    int bad_rank = r->comm ? dml_run_comm_reduce(r) : -1;
    if (r->mem.size > 0) /* after backward, which read the memory as forward did */
        dml_memory_push(&r->mem);
    float norm = dml_clip_grad_norm(r->params, r->n_params, r->cfg->train.clip_grad_norm);
    dml_graph_reset(&r->graph);
    if (loss_value)
        *loss_value = value;
    if (grad_norm)
        *grad_norm = norm;
    if (!isfinite(value) || !isfinite(norm)) {
        char where[64] = "";
        if (bad_rank >= 0)
            snprintf(where, sizeof where, " (non-finite first on rank %d)", bad_rank);
        else if (r->comm) /* every rank's part finite, their sum not */
            snprintf(where, sizeof where, " (in the sum over the %d ranks)", r->comm->size);
        char kept[1100] = "; no run folder, so no checkpoint was kept";
        if (!r->no_folder)
            snprintf(kept, sizeof kept, "; %s/checkpoint.h5 keeps the last good state",
                     r->out_dir);
        return dml_error_set(err, DML_ERR_DIVERGED, NULL, 0, 0,
                             "step %ld: the %s is %s%s: training diverged (try a lower train.lr "
                             "or train.clip_grad_norm)%s",
                             r->step + 1, isfinite(value) ? "gradient norm" : "loss",
                             isnan(isfinite(value) ? norm : value) ? "NaN" : "Inf", where, kept);
    }
    dml_optim_step(&r->optim, dml_schedule_lr(&r->schedule, r->step));
    r->step++;
    return DML_OK;
}

/* The caller's progress callback, whose nonzero answer stops the run at the next boundary. */
static void tell(dml_run *r, const dml_train_event *ev)
{
    if (r->progress && r->progress(r->progress_ctx, ev))
        r->stop_asked = 1;
}

static dml_status train_loop(dml_run *r, dml_error *err)
{
    const dml_config *c = r->cfg;
    dml_progress bar;
    dml_progress_init(&bar, r->log, r->total_steps, r->step);
    dml_status st = DML_OK;
    while (r->step < r->total_steps) {
        /* Ranks stop together: at the boundary after the step whose reduction told them. */
        int stop = r->comm ? r->stop_any : (r->stop && *r->stop) || r->stop_asked;
        if (stop) { /* a step boundary: the checkpoint resumes from here */
            dml_progress_note(&bar, "\n");
            if ((st = save_state(r, err)) != DML_OK)
                return st;
            if (r->no_folder)
                return dml_error_set(err, DML_ERR_INTERRUPTED, NULL, 0, 0,
                                     "interrupted at step %ld of %ld (no run folder: nothing "
                                     "saved)", r->step, r->total_steps);
            return dml_error_set(err, DML_ERR_INTERRUPTED, NULL, 0, 0,
                                 "interrupted at step %ld of %ld: %s/checkpoint.h5 written; "
                                 "--resume continues from it",
                                 r->step, r->total_steps, r->out_dir);
        }
        if ((st = update_codebooks(r, err)) != DML_OK)
            return st;
        float value;
        if ((st = dml_run_step(r, &value, NULL, err)) != DML_OK) {
            if (st == DML_ERR_DIVERGED)
                dml_progress_note(&bar, "\n");
            return st;
        }
        r->loss_curve[r->step - 1] = value;
        float lr = dml_schedule_lr(&r->schedule, r->step - 1);
        dml_progress_update(&bar, r->step, value, lr);
        dml_train_event ev = {r->step, r->total_steps, value, lr, 0, NAN, NAN};
        tell(r, &ev);
        int at_end = r->step == r->total_steps;
        if ((every(r->step, c->train.eval_every, r->steps_per_epoch) || at_end)) {
            if ((st = validate_now(r, &bar, err)) != DML_OK)
                return st;
            ev.validated = 1;
            ev.map_at_r = r->val[r->n_val - 1].map_at_r;
            ev.precision_at_1 = r->val[r->n_val - 1].precision_at_1;
            tell(r, &ev);
        }
        stop = c->train.early_stop_patience > 0 &&
               r->evals_without_gain >= c->train.early_stop_patience;
        if (stop)
            dml_progress_note(&bar, "step %ld: early stop, no validation gain in %d evaluations\n",
                              r->step, r->evals_without_gain);
        if ((every(r->step, c->train.checkpoint_every, r->steps_per_epoch) || at_end || stop) &&
            (st = save_state(r, err)) != DML_OK)
            return st;
        if (stop)
            break;
    }
    dml_progress_finish(&bar, r->step);
    return DML_OK;
}

dml_status dml_run_open(const dml_config *cfg, const dml_train_opts *opts, dml_run **out,
                        dml_error *err)
{
    *out = NULL;
    dml_run *r = calloc(1, sizeof *r);
    if (!r)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory");
    r->cfg_fitted = *cfg;
    r->cfg = &r->cfg_fitted;
    r->log = opts->log ? opts->log : stderr;
    r->lock.fd = -1;
    r->resume = opts->resume;
    r->stop = opts->stop;
    r->comm = opts->comm;
    r->no_folder = opts->no_folder;
    r->progress = opts->progress;
    r->progress_ctx = opts->progress_ctx;
    if (opts->train) { /* taken over: the run normalises and frees them */
        r->train = *opts->train;
        memset(opts->train, 0, sizeof *opts->train);
        r->given_train = 1;
    }
    if (opts->val) {
        r->val_rows = *opts->val;
        memset(opts->val, 0, sizeof *opts->val);
    }
    if (opts->test) {
        r->test = *opts->test;
        memset(opts->test, 0, sizeof *opts->test);
        r->given_test = 1;
    }
    if (opts->out_dir)
        snprintf(r->out_dir, sizeof r->out_dir, "%s", opts->out_dir);
    else
        snprintf(r->out_dir, sizeof r->out_dir, "runs/%s", cfg->name);
    dml_rng_seed(&r->rng, (uint64_t)cfg->seed);
    dml_set_threads(cfg->train.threads);

    /* Everything that can be wrong with the config or data is found before anything is written. */
    dml_status st = open_data(r, err);
    if (st == DML_OK)
        st = normalise(r, err);
    if (st == DML_OK)
        st = build_model(r, err);
    if (st == DML_OK)
        st = build_augment(r, err);
    if (st == DML_OK)
        st = build_training(r, err);
    r->n_local = r->batch;
    if (r->comm) /* every rank's verdict, so that all of them go on or stop together */
        st = dml_run_comm_open(r, st, err);
    if (st != DML_OK) {
        dml_run_close(r);
        return st;
    }
    *out = r;
    return DML_OK;
}

dml_status dml_run_train(dml_run *r, dml_error *err)
{
    const dml_config *cfg = r->cfg;
    /* Rank 0 alone writes the run folder, and locks it first (before the checkpoint is read:
     * another run may be writing it); every rank reads the checkpoint it resumes from. */
    int writes = dml_run_is_root(r) && !r->no_folder;
    dml_status st = writes ? dml_mkdirs(r->out_dir, err) : DML_OK;
    if (st == DML_OK && r->no_folder && r->resume)
        st = dml_error_set(err, DML_ERR_USAGE, NULL, 0, 0, "a resume needs a run folder");
    if (st == DML_OK && writes)
        st = dml_run_lock_take(&r->lock, r->out_dir, r->log, err);
    st = dml_run_comm_agree(r, st, NULL, 0, err);
    if (st == DML_OK && r->resume) {
        st = dml_run_checkpoint_load(r, err);
        st = dml_run_comm_all(r, st, "to read the checkpoint", err);
        if (st == DML_OK)
            fprintf(r->log, "resuming %s at step %ld of %ld\n", r->out_dir, r->step, r->total_steps);
    }
    if (st == DML_OK) {
        fprintf(r->log, "# %s: effective config\n", cfg->name);
        dml_config_print(cfg, r->log);
        fprintf(r->log, "# %d training rows, %d validation, %d unlabelled, %d test; %ld steps "
                        "(%ld per epoch)\n",
                r->split.n_train, r->split.n_val, r->split.n_unlabelled, r->test.n,
                r->total_steps, r->steps_per_epoch);
        st = train_loop(r, err);
    }
    if (st == DML_OK && r->loss_bytes > 0) /* docs/scale.md: sharded, it falls as 1/N */
        fprintf(r->log, "# the metric loss took at most %zu bytes of a step's arena (rank %d: %d "
                        "anchors of %d)\n", r->loss_bytes, r->comm ? r->comm->rank : 0,
                r->n_local, r->comm ? r->n_local * r->comm->size : r->n_local);
    if (st == DML_OK && r->n_val > 0 && r->best_score >= 0.0)
        snapshot(r, 0); /* the model is the best validated one */
    /* Over several ranks the final codebooks' k-means runs on all of them (train/run_kmeans.c);
     * the rest of the finish, evaluation and writing, on rank 0, as the others hold the same
     * model. */
    if (st == DML_OK && r->comm && !(cfg->loss.quantization.weight > 0.0f && r->pq_ready)) {
        fprintf(r->log, "fitting PQ codebooks (M = %d, K = %d) over %d ranks\n", cfg->pq.m,
                cfg->pq.k, r->comm->size);
        st = dml_run_comm_all(r, dml_run_fit_codebooks(r, 1, err), "to fit the codebooks", err);
        r->pq_final = 1;
    }
    if (st == DML_OK && dml_run_is_root(r))
        st = dml_run_finish(r, err);
    dml_run_lock_release(&r->lock); /* every way out: done, failed or interrupted */
    return st;
}

dml_status dml_train_run(const dml_config *cfg, const dml_train_opts *opts, dml_error *err)
{
    dml_run *r;
    dml_status st = dml_run_open(cfg, opts, &r, err);
    if (st == DML_OK)
        st = dml_run_train(r, err);
    if (st == DML_OK && opts->model)
        st = dml_run_take_model(r, opts->model, err);
    dml_run_close(r);
    return st;
}
