/* The combinations of keys that cannot work, found from the config alone, before any data are
 * read. Each error points at a key the config gave where it can (a default has no position). */
#include "train/config.h"
#include "train/loss_data.h"

#include <stdio.h>
#include <string.h>

/* "contrastive, triplet and mnr": the losses whose needs (or combines, when combines is 1)
 * hold flag. */
static void losses_with(unsigned flag, int combines, char *out, size_t size)
{
    const char *names[64];
    int n = 0;
    for (int i = 0; i < dml_loss_row_count && n < 64; i++)
        if ((combines ? dml_loss_rows[i]->combines : dml_loss_rows[i]->needs) & flag)
            names[n++] = dml_loss_rows[i]->name;
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n && used < size; i++)
        used += (size_t)snprintf(out + used, size - used, "%s%s",
                                 i == 0 ? "" : i == n - 1 ? " and " : ", ", names[i]);
}

dml_status dml_config_check(const dml_config *c, dml_error *err)
{
    /* The name is a folder under runs/. */
    if (!c->name[0] || strchr(c->name, '/') || !strcmp(c->name, ".") || !strcmp(c->name, ".."))
        return dml_config_error(c, "name", err, "expected a run folder name without '/', got \"%s\"",
                                c->name);
    /* A default pq.m always divides model.dim (train/config.c's settle). */
    if (c->model.dim % c->pq.m != 0)
        return dml_config_error(c, "pq.m", err, "expected a divisor of model.dim (%d), got %d",
                                c->model.dim, c->pq.m);
    int pairs = c->data.pairs != DML_PAIRS_NONE;
    /* Pairs are drawn at random, and unlabelled rows have no classes to group. A default m
     * always divides the batch (train/config.c's settle). */
    if (c->sampler.type == DML_SAMPLER_M_PER_CLASS && !pairs && !c->data.unlabelled &&
        c->train.batch_size % c->sampler.m != 0)
        return dml_config_error(c, "sampler.m", err,
                                "expected a divisor of train.batch_size (%d) for the m_per_class "
                                "sampler, got %d",
                                c->train.batch_size, c->sampler.m);
    const dml_loss_row *row = c->loss.row;
    char names[256];
    if ((row->needs & DML_LOSS_NEEDS_PAIRS) && !pairs)
        return dml_config_error(c, "loss.type", err,
                                "%s needs pairs: set data.pairs to same_class, halves, file or "
                                "augment", row->name);
    if (c->model.type == DML_NET_DUAL && !pairs)
        return dml_config_error(c, "model.type", err,
                                "a dual encoder needs pairs: set data.pairs to halves or file");
    unsigned takes_pairs = DML_LOSS_NEEDS_PAIRS | DML_LOSS_NEEDS_LABELS_OR_PAIRS;
    if (pairs && !(row->needs & takes_pairs)) {
        losses_with(takes_pairs, 0, names, sizeof names);
        return dml_config_error(c, "data.pairs", err,
                                "pairs train with loss.type %s: set data.pairs to none for this "
                                "loss", names);
    }
    if (c->data.pairs == DML_PAIRS_AUGMENT && !dml_augment_on(&c->data.augment))
        return dml_config_error(c, "data.pairs", err,
                                "augment pairs are two augmented views of a row: set data.augment "
                                "(shift, rotate, scale, flip, cutout, brightness, contrast, noise "
                                "or dropout)");
    if (c->data.pairs == DML_PAIRS_AUGMENT && c->model.type == DML_NET_DUAL)
        return dml_config_error(c, "model.type", err,
                                "the two views of augment pairs share one encoder: use mlp or "
                                "autoencoder");
    if ((c->data.augment.height > 0) != (c->data.augment.width > 0))
        return dml_config_error(c, c->data.augment.height > 0 ? "data.augment.height"
                                                              : "data.augment.width",
                                err, "expected both data.augment.height and width, or neither");
    if (c->loss.memory.size > 0 && !(row->combines & DML_LOSS_WITH_MEMORY)) {
        losses_with(DML_LOSS_WITH_MEMORY, 1, names, sizeof names);
        return dml_config_error(c, "loss.memory", err,
                                "cross-batch memory serves loss.type %s: set loss.memory.size to 0 "
                                "for this loss", names);
    }
    if (c->train.chunk_size > 0 && !(row->combines & DML_LOSS_WITH_GRADCACHE)) {
        losses_with(DML_LOSS_WITH_GRADCACHE, 1, names, sizeof names);
        return dml_config_error(c, "train.chunk_size", err,
                                "GradCache chunks serve loss.type %s: set train.chunk_size to 0 "
                                "for this loss", names);
    }
    if (c->loss.quantization.weight > 0.0f && !(row->combines & DML_LOSS_WITH_QUANTIZATION)) {
        losses_with(DML_LOSS_WITH_QUANTIZATION, 1, names, sizeof names);
        return dml_config_error(c, "loss.quantization.weight", err,
                                "the joint quantization loss serves loss.type %s: set this to 0 "
                                "for %s", names, row->name);
    }
    if (c->train.chunk_size > 0 &&
        (c->loss.quantization.weight > 0.0f || c->loss.reconstruction_weight > 0.0f))
        return dml_config_error(c, "train.chunk_size", err,
                                "GradCache chunks the mnr loss alone: set loss.quantization.weight "
                                "and loss.reconstruction_weight to 0, or this to 0");
    const int hard_k = c->loss.hard_negatives.k;
    /* Mined negatives are other rows' second view: pairs whose positive is a row's own other
     * view (halves, file), so that "not the positive" is well defined. */
    if (hard_k > 0 && (!(row->combines & DML_LOSS_WITH_HARD_NEGATIVES) ||
                       (c->data.pairs != DML_PAIRS_HALVES && c->data.pairs != DML_PAIRS_FILE)))
        return dml_config_error(c, "loss.hard_negatives.k", err,
                                "mined hard negatives serve loss.type mnr on data.pairs halves or "
                                "file: set loss.hard_negatives.k to 0");
    /* a mined negative that is another anchor's positive row is dropped through mnr's label
     * mask, the rows' identities standing for labels */
    if (hard_k > 0 && dml_config_loss_param(c, "mask_same_label", 1) == 0.0f)
        return dml_config_error(c, "loss.mask_same_label", err,
                                "mined hard negatives drop an anchor's own positive from the other "
                                "anchors' negatives through this mask: leave it true");
    if (hard_k > c->loss.hard_negatives.candidates)
        return dml_config_error(c, "loss.hard_negatives.k", err,
                                "expected at most loss.hard_negatives.candidates (%d), got %d",
                                c->loss.hard_negatives.candidates, hard_k);
    /* reconstruction, the one loss without a build: the trainer composes it from the decoder */
    if (!row->build && c->model.type != DML_NET_AUTOENCODER)
        return dml_config_error(c, "loss.type", err,
                                "reconstruction needs a decoder: set model.type to autoencoder");
    if (c->loss.reconstruction_weight > 0.0f && c->model.type != DML_NET_AUTOENCODER)
        return dml_config_error(c, "loss.reconstruction_weight", err,
                                "needs a decoder: set model.type to autoencoder, or this to 0");
    if (c->data.unlabelled && dml_loss_needs_labels(c))
        return dml_config_error(c, "data.unlabelled", err,
                                "this loss.type needs labels: unlabelled data train with "
                                "reconstruction, or with mnr on halves, file or augment pairs");
    if (c->data.unlabelled && c->data.labels_per_class > 0)
        return dml_config_error(c, "data.labels_per_class", err,
                                "expected 0 with data.unlabelled: true, got %d",
                                c->data.labels_per_class);
    /* model.head feeds the metric loss alone: reconstruction has none; the joint quantization
     * loss would quantize the head's output while the codebooks serve the encoder's; GradCache
     * caches the encoder's output as the loss's input. */
    if (c->model.n_head > 0 && !(row->combines & DML_LOSS_WITH_HEAD))
        return dml_config_error(c, "model.head", err,
                                "a projection head feeds a metric loss, and %s has none: set "
                                "model.head to [] or loss.type to a metric loss", row->name);
    if (c->model.n_head > 0 && c->loss.quantization.weight > 0.0f)
        return dml_config_error(c, "model.head", err,
                                "the joint quantization loss would quantize the head's output, "
                                "but the codebooks serve the encoder's: set model.head to [] or "
                                "loss.quantization.weight to 0");
    if (c->model.n_head > 0 && c->train.chunk_size > 0)
        return dml_config_error(c, "model.head", err,
                                "GradCache chunks (train.chunk_size) do not run a projection "
                                "head: set model.head to [] or train.chunk_size to 0");
    /* An mlp with every layer frozen has nothing left to train; a decoder or second tower does. */
    int layers = c->model.n_hidden + 1, max_frozen = layers - (c->model.type == DML_NET_MLP);
    if (c->model.freeze > max_frozen)
        return dml_config_error(c, "model.freeze", err,
                                "expected at most %d (the encoder has %d layers%s), got %d",
                                max_frozen, layers,
                                max_frozen < layers ? " and one must train" : "", c->model.freeze);
    if (c->model.freeze > 0 && !c->model.init[0])
        return dml_config_error(c, "model.freeze", err,
                                "frozen layers need pretrained weights: set model.init");
    if (c->train.early_stop_patience > 0 && c->data.val_fraction == 0.0f)
        return dml_config_error(c, "train.early_stop_patience", err,
                                "early stopping needs a validation split: set "
                                "data.val_fraction > 0 (the test set never picks the model)");
    if (c->train.early_stop_patience > 0 && c->train.eval_every == DML_EVERY_NEVER)
        return dml_config_error(c, "train.early_stop_patience", err,
                                "early stopping counts validations, and train.eval_every is never: "
                                "set train.eval_every, or this to 0");
    return DML_OK;
}
