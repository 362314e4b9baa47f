/* The training cases: the trainer's own step (train/train_step.c's dml_run_loss, backward,
 * gradient norm, graph reset, optimizer step: dml_run_step) on a run opened by the trainer's
 * own dml_run_open, timed; the same step's GEMM shapes replayed through dml_gemm for
 * the machine's ceiling; and a briefly trained encoder's embeddings for the search cases. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench/bench.h"
#include "train/run_output.h"
#include "train/trainer.h"

#define MAX_GEMMS 1024         /* GEMM calls noted in one step (GradCache at 4096 by 256: ~360) */
#define LOSS_WINDOW 5          /* steps averaged for the first and last loss */

/* ---- GEMM shapes of one step ----
 * The bench links with -Wl,--wrap=dml_gemm (the Makefile's bench recipe): every call the library
 * makes to dml_gemm comes here first, so a real step's GEMMs are noted exactly as the ops issue
 * them, without this file knowing the ops. The names are the linker's convention. The count is
 * atomic: a call may come from any of dml's threads. */
typedef struct gemm_call {
    int ta, tb, m, n, k, lda, ldb, ldc;
    float alpha, beta;
} gemm_call;

static gemm_call calls[MAX_GEMMS];
static atomic_int n_calls;
static int recording;

void __real_dml_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                     int lda, const float *b, int ldb, float beta, float *c, int ldc);
void __wrap_dml_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                     int lda, const float *b, int ldb, float beta, float *c, int ldc);

void __wrap_dml_gemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a,
                     int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (recording && m > 0 && n > 0) {
        int at = atomic_fetch_add(&n_calls, 1);
        if (at < MAX_GEMMS)
            calls[at] = (gemm_call){trans_a, trans_b, m, n, k, lda, ldb, ldc, alpha, beta};
    }
    __real_dml_gemm(trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* ---- a run, set up by the trainer's own dml_run_open ---- */

/* Loads the config (file plus overrides) and opens a run on it, on the bench's thread count. */
static dml_status open_case(const dml_bench_args *a, dml_config *c, dml_run **r, dml_error *err)
{
    *r = NULL;
    dml_status st = dml_config_load(a->pos[0], a->n_sets, (char *const *)a->sets, c, err);
    if (st != DML_OK)
        return st;
    if (c->data.pairs == DML_PAIRS_HALVES || c->data.pairs == DML_PAIRS_FILE ||
        c->model.type == DML_NET_DUAL || c->loss.reconstruction_weight > 0.0f || c->model.init[0])
        return dml_error_set(err, DML_ERR_USAGE, c->path, 0, 0,
                             "the bench times one tower on one view, fresh weights, no extra "
                             "reconstruction term");
    dml_train_opts opts = {.out_dir = NULL, .resume = 0, .log = stderr};
    if ((st = dml_run_open(c, &opts, r, err)) != DML_OK)
        return st;
    dml_set_threads(a->threads);
    /* The joint loss's codebooks, as the trainer fits them after its warm-up. */
    if (c->loss.quantization.weight > 0.0f) {
        if ((st = dml_run_fit_codebooks(*r, 1, err)) != DML_OK)
            return st;
        (*r)->pq_ready = 1;
    }
    return DML_OK;
}

/* ---- the first step's inputs, for bench/torch_peer.py's check ---- */
/* The loss's name for the peer: the row's, a triplet's with its miner (triplet_hard). */
static void loss_key(const dml_config *c, char *out, size_t size)
{
    int miner = dml_loss_param_index(c->loss.row, "miner");
    if (miner >= 0)
        snprintf(out, size, "%s_%s", c->loss.row->name,
                 c->loss.row->params[miner].choices[(int)c->loss.p[miner]]);
    else
        snprintf(out, size, "%s", c->loss.row->name);
}

/* The loss's parameters as JSON members ("margin": 0.2, "miner": "all", ...), each followed by
 * ", ". */
static void json_loss_params(FILE *f, const dml_config *c)
{
    const dml_loss_row *row = c->loss.row;
    for (int i = 0; i < row->n_params; i++) {
        const dml_loss_param *p = &row->params[i];
        float v = c->loss.p[i];
        fprintf(f, "\"%s\": ", p->key);
        switch (p->kind) {
        case DML_LP_FLOAT: fprintf(f, "%g", (double)v); break;
        case DML_LP_INT: fprintf(f, "%d", (int)v); break;
        case DML_LP_FLAG: fputs(v != 0.0f ? "true" : "false", f); break;
        case DML_LP_CHOICE: fprintf(f, "\"%s\"", p->choices[(int)v]); break;
        }
        fputs(", ", f);
    }
}

static dml_status dump_mlp(const char *dir, const char *tower, const dml_mlp *m, dml_error *err)
{
    char path[1200];
    dml_status st = DML_OK;
    for (int i = 0; st == DML_OK && i < m->n_layers; i++) {
        const dml_linear *l = &m->layers[i];
        snprintf(path, sizeof path, "%s/%s%d_w.npy", dir, tower, i);
        st = dml_bench_write_npy(path, l->w.data, l->w.rows, l->w.cols, 0, err);
        snprintf(path, sizeof path, "%s/%s%d_b.npy", dir, tower, i);
        if (st == DML_OK)
            st = dml_bench_write_npy(path, l->b.data, l->b.cols, 0, 0, err);
    }
    return st;
}

static void json_widths(FILE *f, const char *key, const dml_mlp *m)
{
    fprintf(f, "\"%s\": [", key);
    for (int i = 0; i < m->n_layers; i++)
        fprintf(f, "%s%d", i ? ", " : "", m->layers[i].w.cols);
    fprintf(f, ", %d]", dml_mlp_dim_out(m));
}

/* What the step computes, for the peer to do the same: one JSON object (no newline). */
static void write_spec(FILE *f, const dml_run *r)
{
    const dml_config *c = r->cfg;
    static const char *const OUT[] = {"l2", "tanh", "none"};
    static const char *const ACT[] = {"relu", "tanh", "gelu", "leaky_relu"};
    static const char *const NORM[] = {"none", "unit", "standardize"};
    static const char *const OPT[] = {"sgd", "adam", "adamw"};
    char loss[64];
    loss_key(c, loss, sizeof loss);
    fprintf(f, "{\"loss\": \"%s\", ", loss);
    json_loss_params(f, c);
    fprintf(f, "\"reconstruction\": \"%s\", \"quant_weight\": %g, \"pq_m\": %d, \"pq_k\": %d, ",
            c->loss.reconstruction == DML_RECON_BCE ? "bce" : "mse", c->loss.quantization.weight,
            c->pq.m, c->pq.k);
    fprintf(f, "\"net\": \"%s\", ", c->model.type == DML_NET_AUTOENCODER ? "autoencoder" : "mlp");
    json_widths(f, "widths", &r->net.encoder);
    if (r->net.decoder.n_layers) {
        fputs(", ", f);
        json_widths(f, "decoder_widths", &r->net.decoder);
    }
    fprintf(f, ", \"activation\": \"%s\", \"output\": \"%s\", \"data\": \"%s\", "
               "\"normalize\": \"%s\", \"sampler\": \"%s\", \"m\": %d, \"pairs\": \"%s\", "
               "\"batch\": %d, \"optimizer\": \"%s\", \"lr\": %g, \"weight_decay\": %g, "
               "\"n_params\": %d}",
            ACT[c->model.activation], OUT[c->model.output], c->data.train,
            NORM[c->data.normalize], r->sampler.spec.kind == DML_SAMPLER_M_PER_CLASS ? "m_per_class"
                                                                                     : "random",
            r->sampler.spec.m, r->sampler.spec.pairs == DML_PAIR_MODE_SAME_CLASS ? "same_class"
                                                                                 : "none",
            r->batch, OPT[c->train.optimizer], c->train.lr, c->train.weight_decay, r->n_params);
}

/* After the first step: its batch, codebooks, loss and gradient norm, and the spec. The
 * weights were written before the step (dump_mlp). */
static dml_status dump_first(const char *dir, const dml_run *r, float loss, float norm,
                             dml_error *err)
{
    char path[1200], tmp[1300];
    snprintf(path, sizeof path, "%s/batch_idx.npy", dir);
    dml_status st = dml_bench_write_npy(path, r->idx, r->batch, 0, 1, err);
    snprintf(path, sizeof path, "%s/batch_pos.npy", dir);
    if (st == DML_OK && r->sampler.spec.pairs != DML_PAIR_MODE_NONE)
        st = dml_bench_write_npy(path, r->pos, r->batch, 0, 1, err);
    snprintf(path, sizeof path, "%s/pq_centroids.npy", dir);
    if (st == DML_OK && r->pq_ready)
        st = dml_bench_write_npy(path, r->pq.centroids, r->pq.m * r->pq.ksub, r->pq.dsub, 0, err);
    if (st != DML_OK)
        return st;
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    dml_tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write");
    fprintf(f, "{\"spec\": ");
    write_spec(f, r);
    fprintf(f, ", \"first_loss\": %.9g, \"first_grad_norm\": %.9g}\n", loss, norm);
    if (fclose(f) != 0)
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "write failed");
    return dml_file_commit(tmp, path, err);
}

/* ---- sub-commands ---- */
static double mean(const float *v, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return n > 0 ? s / n : NAN;
}

/* Buffers for replaying the noted calls: the largest A, B and C any of them reads. */
static size_t need(int rows, int ld)
{
    return (size_t)rows * (size_t)ld;
}

/* The machine's ceiling for this step: one more step with its GEMM calls noted, then the same
 * calls (shapes, transposes, leading dimensions, alpha, beta) replayed `reps` times through the
 * real dml_gemm on buffers of random values. Prints a JSON object (no newline): the step's GEMM
 * flops, the median time of one step's worth of GEMMs, and each call's throughput. */
static dml_status gemm_ceiling(dml_run *r, int reps, dml_error *err)
{
    float loss, norm;
    recording = 1;
    n_calls = 0;
    dml_status st = dml_run_step(r, &loss, &norm, err);
    recording = 0;
    if (n_calls > MAX_GEMMS)
        n_calls = MAX_GEMMS;
    if (st != DML_OK)
        return st;
    size_t na = 1, nb = 1, nc = 1;
    double flops = 0.0;
    for (int i = 0; i < n_calls; i++) {
        const gemm_call *g = &calls[i];
        size_t sa = need(g->ta ? g->k : g->m, g->lda), sb = need(g->tb ? g->n : g->k, g->ldb);
        na = sa > na ? sa : na;
        nb = sb > nb ? sb : nb;
        nc = need(g->m, g->ldc) > nc ? need(g->m, g->ldc) : nc;
        flops += 2.0 * g->m * g->n * g->k;
    }
    reps = reps > 0 ? reps : 1;
    float *ba = malloc(na * sizeof(float)), *bb = malloc(nb * sizeof(float));
    float *bc = calloc(nc, sizeof(float));
    double *rep = malloc((size_t)reps * sizeof *rep);
    double *per_call = calloc((size_t)(n_calls ? n_calls : 1), sizeof *per_call);
    if (!ba || !bb || !bc || !rep || !per_call)
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the GEMM buffers");
    if (st == DML_OK) {
        dml_rng rng;
        dml_rng_seed(&rng, 1);
        for (size_t i = 0; i < na; i++)
            ba[i] = 0.1f * dml_rng_uniform(&rng);
        for (size_t i = 0; i < nb; i++)
            bb[i] = 0.1f * dml_rng_uniform(&rng);
        for (int k = -2; k < reps; k++) { /* two reps to warm up */
            double t0 = dml_bench_now();
            for (int i = 0; i < n_calls; i++) {
                const gemm_call *g = &calls[i];
                double t = dml_bench_now();
                __real_dml_gemm(g->ta, g->tb, g->m, g->n, g->k, g->alpha, ba, g->lda, bb, g->ldb,
                                g->beta, bc, g->ldc);
                if (k >= 0)
                    per_call[i] += dml_bench_now() - t;
            }
            if (k >= 0)
                rep[k] = dml_bench_now() - t0;
        }
        double med = dml_bench_median(rep, reps);
        printf("{\"calls_per_step\": %d, \"flops_per_step\": %.0f, \"seconds_per_step\": %.9f, "
               "\"best_seconds_per_step\": %.9f, \"gflops\": %.3f, \"calls\": [",
               n_calls, flops, med, rep[0], 1e-9 * flops / med);
        for (int i = 0; i < n_calls; i++) {
            const gemm_call *g = &calls[i];
            printf("%s{\"ta\": %d, \"tb\": %d, \"m\": %d, \"n\": %d, \"k\": %d, \"gflops\": %.3f}",
                   i ? ", " : "", g->ta, g->tb, g->m, g->n, g->k,
                   2e-9 * g->m * g->n * g->k * reps / per_call[i]);
        }
        printf("]}");
    }
    free(ba);
    free(bb);
    free(bc);
    free(rep);
    free(per_call);
    return st;
}

/* The work every step does over all the parameters outside GEMM, alone: the gradient norm, the
 * optimizer step and the zeroing, as dml_run_step does them, `reps` times back to back (after the
 * run: the weights it moves are not used again). Nothing else runs between them, so their data
 * is as warm as it gets: a lower bound on what they take inside a step. Prints its JSON key. */
static dml_status parameter_passes(dml_run *r, int reps, dml_error *err)
{
    double *rep = malloc((size_t)reps * sizeof *rep);
    if (!rep)
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the timings");
    size_t elements = 0;
    for (int i = 0; i < r->n_params; i++)
        elements += r->params[i].n;
    for (int k = -2; k < reps; k++) { /* two reps to warm up */
        double t0 = dml_bench_now();
        dml_clip_grad_norm(r->params, r->n_params, r->cfg->train.clip_grad_norm);
        dml_optim_step(&r->optim, r->cfg->train.lr);
        dml_optim_zero_grad(&r->optim);
        if (k >= 0)
            rep[k] = dml_bench_now() - t0;
    }
    printf(", \"parameter_passes\": {\"elements\": %zu, \"seconds_per_step\": %.9f}", elements,
           dml_bench_median(rep, reps));
    free(rep);
    return DML_OK;
}

/* train: warm-up steps, then `steps` timed steps; with --reps, the GEMM ceiling after them
 * (the gemm sub-command is the same with no timed steps). */
static int train_case(const dml_bench_args *a, const char *what)
{
    dml_config *c = malloc(sizeof *c);
    dml_run *r = NULL;
    int total = a->warmup + a->steps;
    float *losses = malloc((size_t)(total > 0 ? total : 1) * sizeof *losses);
    dml_error err = {0};
    if (!c || !losses || total < 1) {
        free(c);
        free(losses);
        return dml_bench_fail(what, total < 1 ? DML_ERR_USAGE : DML_ERR_NOMEM, &err);
    }
    double probe = dml_bench_machine_probe(); /* before dml_set_threads, as the peer's */
    dml_status st = open_case(a, c, &r, &err);
    if (st == DML_OK && a->dump && (st = dml_mkdirs(a->dump, &err)) == DML_OK &&
        (st = dump_mlp(a->dump, "enc", &r->net.encoder, &err)) == DML_OK)
        st = dump_mlp(a->dump, "dec", &r->net.decoder, &err);
    double t0 = dml_bench_now(), norm_first = 0.0;
    int finite = 1;
    for (int i = 0; st == DML_OK && i < total; i++) {
        if (i == a->warmup)
            t0 = dml_bench_now();
        float norm;
        st = dml_run_step(r, &losses[i], &norm, &err);
        finite = finite && isfinite(losses[i]) && isfinite(norm);
        if (i == 0)
            norm_first = norm;
        if (st == DML_OK && i == 0 && a->dump)
            st = dump_first(a->dump, r, losses[0], norm, &err);
    }
    double seconds = a->steps > 0 ? dml_bench_now() - t0 : 0.0;
    /* The process's peak so far (data, model, the steps' arena), before the GEMM replay's
     * buffers add to it: what a training run of this config holds. */
    struct rusage ru;
    double rss_mb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss / 1024.0 : 0.0;
    if (st == DML_OK) {
        int w = total < LOSS_WINDOW ? total : LOSS_WINDOW;
        char loss[64];
        loss_key(c, loss, sizeof loss);
        printf("{\"case\": \"%s\", \"side\": \"dml\", \"loss\": \"%s\", \"batch\": %d, "
               "\"steps\": %d, \"warmup\": %d, \"threads\": %d, \"seconds\": %.6f, "
               "\"samples_per_s\": %.3f, \"us_per_step\": %.3f, \"first_loss\": %.6g, "
               "\"first_grad_norm\": %.6g, \"loss_first\": %.6g, \"loss_last\": %.6g, "
               "\"finite\": %s, \"probe_gflops\": %.1f, \"max_rss_mb\": %.1f, \"spec\": ",
               a->name, loss, r->batch, a->steps, a->warmup, dml_set_threads(a->threads),
               seconds, a->steps > 0 ? r->batch * a->steps / seconds : 0.0,
               a->steps > 0 ? 1e6 * seconds / a->steps : 0.0, losses[0], norm_first,
               mean(losses, w), mean(losses + total - w, w), finite ? "true" : "false", probe,
               rss_mb);
        write_spec(stdout, r);
        if (a->reps > 0) {
            printf(", \"gemm\": ");
            st = gemm_ceiling(r, a->reps, &err);
            if (st == DML_OK)
                st = parameter_passes(r, a->reps, &err);
        }
        printf("}\n");
    }
    dml_run_close(r);
    free(c);
    free(losses);
    return st == DML_OK ? 0 : dml_bench_fail(what, st, &err);
}

int dml_bench_train(const dml_bench_args *a)
{
    return train_case(a, "train");
}

int dml_bench_gemm(const dml_bench_args *a)
{
    dml_bench_args g = *a;
    g.steps = 0;
    g.warmup = a->warmup > 0 ? a->warmup : 1;
    g.reps = a->reps > 0 ? a->reps : 20;
    return train_case(&g, "gemm");
}

/* Embeddings of rows x[n, r->d_in] into a new [n, dim] buffer. */
static float *embed(dml_run *r, const float *x, int n)
{
    float *z = malloc((size_t)n * dml_mlp_dim_out(&r->net.encoder) * sizeof(float));
    if (z)
        dml_run_embed(&r->graph, &r->net.encoder, x, n, z);
    return z;
}

static dml_status write_set(const char *dir, const char *stem, const float *z, const int32_t *y,
                            int n, int dim, dml_error *err)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/%s.npy", dir, stem);
    dml_status st = dml_bench_write_npy(path, z, n, dim, 0, err);
    snprintf(path, sizeof path, "%s/%s.labels.npy", dir, stem);
    return st == DML_OK ? dml_bench_write_npy(path, y, n, 0, 1, err) : st;
}

int dml_bench_embed(const dml_bench_args *a)
{
    dml_config *c = malloc(sizeof *c);
    dml_run *r = NULL;
    dml_error err = {0};
    if (!c)
        return dml_bench_fail("embed", DML_ERR_NOMEM, &err);
    dml_status st = open_case(a, c, &r, &err);
    float loss = NAN, first = NAN, norm;
    for (int i = 0; st == DML_OK && i < a->steps; i++) {
        st = dml_run_step(r, &loss, &norm, &err);
        first = i == 0 ? loss : first;
    }
    const dml_dataset *test = st == DML_OK ? &r->test : NULL; /* normalised by dml_run_open */
    if (st == DML_OK && test->n == 0)
        st = dml_error_set(&err, DML_ERR_USAGE, c->path, 0, 0, "embed needs data.test");
    int dim = c->model.dim;
    float *zt = st == DML_OK ? embed(r, r->train.x, r->train.n) : NULL;
    float *zq = st == DML_OK ? embed(r, test->x, test->n) : NULL;
    if (st == DML_OK && (!zt || !zq))
        st = dml_error_set(&err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the embeddings");
    if (st == DML_OK && (st = dml_mkdirs(a->pos[1], &err)) == DML_OK &&
        (st = write_set(a->pos[1], "train_emb", zt, r->train.y, r->train.n, dim, &err)) == DML_OK)
        st = write_set(a->pos[1], "test_emb", zq, test->y, test->n, dim, &err);
    if (st == DML_OK)
        printf("{\"case\": \"embed\", \"steps\": %d, \"first_loss\": %.6g, \"last_loss\": %.6g, "
               "\"n_train\": %d, \"n_test\": %d, \"dim\": %d}\n",
               a->steps, first, loss, r->train.n, test->n, dim);
    free(zt);
    free(zq);
    dml_run_close(r);
    free(c);
    return st == DML_OK ? 0 : dml_bench_fail("embed", st, &err);
}
