/* The defaults only the data can settle. A key the user left at its default must work with the
 * data it meets (config.md: a default never makes a run fail), so the loss of an autoencoder on
 * rows without labels, the batch size, the m_per_class sampler's m and the codebook size are
 * fitted to the training rows when not given,
 * each change said in one line of the log. A value the user gave is kept, and a later check
 * refuses it if the data cannot take it. */
#include <stdlib.h>
#include <string.h>

#include "train/run.h"

static int given(const dml_config *c, const char *key)
{
    return dml_config_where(c, key, NULL, NULL);
}

static int pow2_floor(int n)
{
    int p = 1;
    while (p <= n / 2)
        p *= 2;
    return p;
}

/* Classes among the rows the training loss samples; -1 when out of memory. */
static int classes_present(const dml_run *r)
{
    if (!r->train.y || r->train.n_classes < 1)
        return 0;
    unsigned char *seen = calloc((size_t)r->train.n_classes, 1);
    if (!seen)
        return -1;
    int n = 0;
    for (int i = 0; i < r->split.n_train; i++) {
        int c = r->train.y[r->split.train[i]];
        n += !seen[c];
        seen[c] = 1;
    }
    free(seen);
    return n;
}

static int gcd(int a, int b)
{
    while (b) {
        int t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* The batch size: at most the training rows, and under mpirun a multiple of the ranks, each
 * taking an equal share (train/run_comm.c), and of the m_per_class groups. */
static void fit_batch(dml_run *r, int grouped)
{
    dml_config *c = &r->cfg_fitted;
    int rows = r->split.n_train, ranks = r->comm ? r->comm->size : 1, b = c->train.batch_size;
    int m = grouped ? c->sampler.m : 1, unit = ranks / gcd(ranks, m) * m;
    char why[160] = "";
    if (rows >= 2 && rows < b) {
        b = pow2_floor(rows);
        snprintf(why, sizeof why, " is more than the %d training rows", rows);
    }
    if (ranks > 1 && b % unit != 0 && b >= unit) {
        b -= b % unit;
        size_t n = strlen(why);
        n += (size_t)snprintf(why + n, sizeof why - n, "%s rounded down to a multiple of the %d "
                              "ranks", n ? ";" : "", ranks);
        if (m > 1)
            snprintf(why + n, sizeof why - n, " and of sampler.m %d", m);
    }
    if (b != c->train.batch_size) {
        fprintf(r->log, "# train.batch_size: %d (the default %d%s)\n", b, c->train.batch_size, why);
        c->train.batch_size = b;
    }
}

/* Random batches keep each epoch's last, short batch by default; under mpirun the ranks share
 * it equally only when its rows divide by their count, so the default drops it otherwise. */
static void fit_drop_last(dml_run *r)
{
    dml_config *c = &r->cfg_fitted;
    int ranks = r->comm ? r->comm->size : 1, b = c->train.batch_size;
    int last = b > 0 ? r->split.n_train % b : 0;
    /* the batches train/trainer.c draws at random, a row at a time (augment pairs: a row, twice) */
    int random = c->data.pairs != DML_PAIRS_NONE || c->sampler.type == DML_SAMPLER_RANDOM ||
                 !r->train.y || c->data.unlabelled;
    int rows = c->data.pairs == DML_PAIRS_NONE || c->data.pairs == DML_PAIRS_AUGMENT;
    if (ranks < 2 || !random || !rows || c->sampler.drop_last || last % ranks == 0)
        return;
    fprintf(r->log, "# sampler.drop_last: true (the default keeps each epoch's last batch, of the "
                    "%d rows left, which the %d ranks cannot share equally)\n", last, ranks);
    c->sampler.drop_last = true;
}

dml_status dml_run_fit_defaults(dml_run *r, dml_error *err)
{
    dml_config *c = &r->cfg_fitted;
    int grouped = c->sampler.type == DML_SAMPLER_M_PER_CLASS && c->data.pairs == DML_PAIRS_NONE &&
                  !c->data.unlabelled && r->train.y;
    if (!given(c, "train.batch_size"))
        fit_batch(r, grouped);
    if (!given(c, "sampler.drop_last"))
        fit_drop_last(r);
    int classes = grouped ? classes_present(r) : 0;
    if (classes < 0) /* not a guess: sampler.m fitted to no classes would be another run */
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for the run");
    int b = c->train.batch_size, m = c->sampler.m;
    if (grouped && !given(c, "sampler.m") && classes > 0 && (b % m != 0 || b / m > classes)) {
        /* the smallest m above the default that splits the batch into classes the data have */
        int fit = m;
        while (fit < b && (b % fit != 0 || b / fit > classes))
            fit++;
        fprintf(r->log, "# sampler.m: %d (batch_size %d in groups of the default %d needs %s; the "
                        "training rows have %d classes)\n",
                fit, b, m, b % m != 0 ? "a divisor of the batch" : "more classes", classes);
        c->sampler.m = fit;
    }
    int pool = r->split.n_train + r->split.n_unlabelled;
    if (!given(c, "pq.k") && pool >= 2 && c->pq.k > pool) {
        int k = pow2_floor(pool);
        fprintf(r->log, "# pq.k: %d (the default %d centroids is more than the %d training rows)\n",
                k, c->pq.k, pool);
        c->pq.k = k;
    }
    return DML_OK;
}

dml_status dml_run_fit_loss(dml_run *r, dml_error *err)
{
    dml_config *c = &r->cfg_fitted;
    if (given(c, "loss.type") || r->train.y || c->model.type != DML_NET_AUTOENCODER ||
        !c->loss.row->build) /* reconstruction already */
        return DML_OK;
    fprintf(r->log, "# loss.type: reconstruction (the training data have no labels, which the "
                    "default loss needs)\n");
    dml_config_set_loss(c, dml_loss_find("reconstruction"));
    return dml_config_check(c, err); /* as if the config had given it: model.head, say */
}
