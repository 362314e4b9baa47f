/* One training step's loss, composed from the config: a batch from the sampler, the encoder
 * forward on the tape, the metric loss, and the optional reconstruction and quantization
 * terms. No allocation here: batch buffers were sized at set-up, tensors live in the arena. */
#include <string.h>

#include "train/run.h"

#define EMBED_BLOCK 1024

/* Rows idx[n] of x (width d), columns [col, col + width), into out[n, width]. */
static void gather(const float *x, int d, const int32_t *idx, int n, int col, int width, float *out)
{
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * width, x + (size_t)idx[i] * d + col, (size_t)width * sizeof(float));
}

static dml_reduction reduction(const dml_config *c)
{
    return c->loss.reduction == DML_CFG_REDUCE_MEAN_NONZERO ? DML_REDUCE_MEAN_NONZERO
                                                            : DML_REDUCE_MEAN;
}

/* The anchor and positive embeddings of a pair batch. */
static void pair_batch(dml_run *r, dml_graph *g, dml_tensor **za, dml_tensor **zp)
{
    const dml_config *c = r->cfg;
    const dml_dataset *ds = &r->train;
    int b = r->batch;
    dml_sampler_next_pairs(&r->sampler, r->idx, r->pos);
    const dml_mlp *tower_b = c->model.type == DML_NET_DUAL ? &r->net.encoder_b : &r->net.encoder;
    if (ds->x_b) { /* two views: file pairs, or the halves of each row */
        gather(ds->x, ds->d, r->idx, b, 0, r->d_in, r->xa);
        gather(ds->x_b, ds->d_b, r->pos, b, 0, r->d_in_b, r->xb);
    } else { /* same_class: two rows of one class through the shared encoder */
        gather(ds->x, ds->d, r->idx, b, 0, r->d_in, r->xa);
        gather(ds->x, ds->d, r->pos, b, 0, r->d_in, r->xb);
    }
    for (int i = 0; ds->y && i < b; i++)
        r->labels[i] = ds->y[r->idx[i]];
    *za = dml_mlp_forward(g, &r->net.encoder, dml_leaf(g, r->xa, NULL, b, r->d_in));
    *zp = dml_mlp_forward(g, tower_b, dml_leaf(g, r->xb, NULL, b, r->d_in_b));
}

/* The encoder's bottleneck before its output normalisation: what the decoder reads, so an
 * l2 or tanh embedding head does not squeeze what the autoencoder can reconstruct. */
static dml_tensor *bottleneck(dml_graph *g, const dml_mlp *encoder, dml_tensor *x)
{
    dml_mlp raw = *encoder;
    raw.output = DML_OUTPUT_NONE;
    return dml_mlp_forward(g, &raw, x);
}

static dml_tensor *output_norm(dml_graph *g, const dml_mlp *encoder, dml_tensor *h)
{
    if (encoder->output == DML_OUTPUT_L2)
        return dml_l2_normalize(g, h);
    return encoder->output == DML_OUTPUT_TANH ? dml_tanh(g, h) : h;
}

static dml_tensor *reconstruction(dml_run *r, dml_graph *g, dml_tensor *h, dml_tensor *x)
{
    dml_tensor *out = dml_mlp_forward(g, &r->net.decoder, h);
    return r->cfg->loss.reconstruction == DML_RECON_BCE ? dml_loss_bce_logits(g, out, x)
                                                        : dml_mse(g, out, x);
}

dml_tensor *dml_run_loss(dml_run *r, dml_graph *g)
{
    const dml_config *c = r->cfg;
    const dml_dataset *ds = &r->train;
    int b = r->batch;
    dml_tensor *z = NULL, *loss = NULL;
    if (c->loss.type == DML_LOSS_MNR) {
        dml_tensor *zp;
        pair_batch(r, g, &z, &zp);
        int mask = c->loss.mask_same_label && ds->y && c->data.pairs == DML_PAIRS_SAME_CLASS;
        loss = dml_loss_mnr(g, z, zp, NULL, mask ? r->labels : NULL, c->loss.scale,
                            c->loss.symmetric);
    } else {
        dml_sampler_next(&r->sampler, r->idx);
        gather(ds->x, ds->d, r->idx, b, 0, r->d_in, r->xa);
        for (int i = 0; ds->y && i < b; i++)
            r->labels[i] = ds->y[r->idx[i]];
        dml_tensor *x = dml_leaf(g, r->xa, NULL, b, r->d_in);
        dml_tensor *h = bottleneck(g, &r->net.encoder, x);
        z = output_norm(g, &r->net.encoder, h);
        switch (c->loss.type) {
        case DML_LOSS_TRIPLET:
            loss = dml_loss_triplet(g, dml_distance_matrix(g, z, z, c->loss.distance), r->labels,
                                    c->loss.margin, c->loss.miner, c->loss.soft, reduction(c));
            break;
        case DML_LOSS_CONTRASTIVE:
            loss = dml_loss_contrastive(g, dml_distance_matrix(g, z, z, c->loss.distance), r->labels,
                                        c->loss.pos_margin, c->loss.neg_margin, c->loss.power,
                                        reduction(c));
            break;
        case DML_LOSS_COSINE_PAIR:
            loss = dml_loss_cosine_pair(g, z, r->labels);
            break;
        default: /* DML_LOSS_RECONSTRUCTION */
            loss = reconstruction(r, g, h, x);
            break;
        }
    }
    /* Fine-tuning recipe: keep reconstructing the rows whose labels were set aside. */
    if (r->sampler_unl.n > 0) { /* set up only when unlabelled rows fill a batch */
        dml_sampler_next(&r->sampler_unl, r->idx_unl);
        gather(ds->x, ds->d, r->idx_unl, b, 0, r->d_in, r->xu);
        dml_tensor *u = dml_leaf(g, r->xu, NULL, b, r->d_in);
        dml_tensor *rec = reconstruction(r, g, bottleneck(g, &r->net.encoder, u), u);
        loss = dml_add(g, loss, dml_scale(g, rec, c->loss.reconstruction_weight));
    }
    if (c->loss.quantization.weight > 0.0f && r->pq_ready)
        loss = dml_add(g, loss, dml_scale(g, dml_loss_quantization(g, z, &r->pq),
                                          c->loss.quantization.weight));
    return loss;
}

void dml_run_embed(dml_graph *g, const dml_mlp *m, const float *x, int n, float *out)
{
    int d_in = dml_mlp_dim_in(m), dim = dml_mlp_dim_out(m);
    for (int i0 = 0; i0 < n; i0 += EMBED_BLOCK) {
        int rows = n - i0 < EMBED_BLOCK ? n - i0 : EMBED_BLOCK;
        dml_graph_reset(g);
        dml_tensor *z = dml_mlp_forward(g, m, dml_leaf(g, (float *)x + (size_t)i0 * d_in, NULL,
                                                       rows, d_in));
        DML_ASSERT(z);
        memcpy(out + (size_t)i0 * dim, z->data, (size_t)rows * dim * sizeof(float));
    }
    dml_graph_reset(g);
}
