/* dml info MODEL.h5 [--config] */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "serve/serve.h"
#include "train/checkpoint.h"

static const char HELP[] =
    "usage: dml info MODEL.h5 [--config]\n"
    "\n"
    "What a model file holds: the model type and metric; per tower the input normalisation, each\n"
    "layer's widths and activation, the output normalisation and the parameter count; the PQ\n"
    "codebooks (M, K, bits); the training seed, steps and final metrics. Of a run's\n"
    "checkpoint.h5, what it is and what reads it (dml train --resume).\n"
    "\n"
    "  --config     also print the effective config the model was trained with (YAML)\n"
    "  -h, --help   this text\n";

static void print_tower(const char *name, const dml_mlp *m, const dml_input_norm *norm,
                        const dml_input_scale *scale)
{
    printf("%s: %d", name, dml_mlp_dim_in(m));
    for (int i = 0; i < m->n_layers; i++)
        printf(" -> %d", m->layers[i].w.rows);
    printf(" (%zu parameters)\n", dml_mlp_n_floats(m));
    char input[200];
    if (norm) {
        dml_input_scale_describe(scale, norm, input, sizeof input);
        printf("  input_norm   %s\n", input);
    }
    for (int i = 0; i < m->n_layers; i++)
        printf("  layer_%03d    linear %d -> %d, %s\n", i, m->layers[i].w.cols,
               m->layers[i].w.rows,
               dml_activation_name(i + 1 < m->n_layers ? m->act : DML_ACT_NONE));
    printf("  output_norm  %s\n", dml_model_file_output_name(m->output));
}

static void print_model(const char *path, const dml_model_file *mf, int config)
{
    const dml_net *net = &mf->net;
    printf("%s: %s model (format %s %d), metric %s\n", path,
           dml_model_file_type_name(net->type), DML_MODEL_FORMAT, DML_MODEL_FORMAT_VERSION,
           mf->metric);
    print_tower("encoder", &net->encoder, &mf->norm, &mf->scale);
    if (net->type == DML_NET_AUTOENCODER)
        print_tower("decoder", &net->decoder, NULL, NULL);
    if (net->type == DML_NET_DUAL)
        print_tower("encoder_b", &net->encoder_b, &mf->norm_b, &mf->scale_b);
    if (mf->pq.d)
        printf("pq: M = %d sub-quantizers x K = %d centroids (%d bits each), d = %d, dsub = %d, "
               "%zu-byte codes\n",
               mf->pq.m, mf->pq.ksub, mf->pq.nbits, mf->pq.d, mf->pq.dsub,
               dml_pq_code_size(&mf->pq));
    else
        printf("pq: none\n");
    printf("training: seed %lld, %lld steps\n", (long long)mf->seed, (long long)mf->steps);
    printf("final metrics: %s\n", mf->metrics_json ? mf->metrics_json : "(none recorded)");
    if (config) {
        const char *c = mf->config_yaml ? mf->config_yaml : "(none recorded)";
        size_t n = strlen(c);
        printf("config:\n%s%s", c, n && c[n - 1] == '\n' ? "" : "\n");
    }
}

int dml_cli_info(int argc, char **argv)
{
    const char *path = NULL;
    int config = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--config")) {
            config = 1;
        } else if (argv[i][0] != '-' && !path) {
            path = argv[i];
        } else {
            fprintf(stderr, "dml info: unexpected argument '%s'\n\n%s", argv[i], HELP);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "dml info: which model?\n\n%s", HELP);
        return 2;
    }
    dml_checkpoint_summary ck;
    if (dml_checkpoint_probe(path, &ck)) { /* a run's state, not a model: say what reads it */
        printf("%s: a dml training checkpoint (format %s %lld), not a model: %lld arrays, %llu "
               "bytes (the run's weights, optimizer moments, sampler and RNG positions, curves "
               "so far)\n`dml train CONFIG --resume` continues the run from it; the run's "
               "model.h5 is what dml info, eval, encode and export read\n",
               path, DML_CHECKPOINT_FORMAT, ck.version, ck.n_arrays, ck.bytes);
        return 0;
    }
    dml_model_file mf;
    dml_error err = {0};
    dml_status st = dml_model_file_read(path, &mf, &err);
    if (st == DML_OK)
        print_model(path, &mf, config);
    else
        dml_cli_report_error("info", st, &err);
    dml_model_file_free(&mf);
    return dml_status_exit_code(st);
}
