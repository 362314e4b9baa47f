/* dml encode MODEL.h5 INPUT OUTPUT.h5 [--pq] [--tower a|b] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "serve/serve.h"

static const char HELP[] =
    "usage: dml encode MODEL.h5 INPUT OUTPUT.h5 [--pq] [--tower a|b]\n"
    "\n"
    "Embeds every row of the data SPEC INPUT with the model (its input normalisation, MLP and\n"
    "output normalisation) and writes OUTPUT.h5, which dml reads back as a data SPEC:\n"
    "  X      float32 [n, dim]       the embeddings\n"
    "  codes  uint8 [n, code_size]   with --pq: their PQ codes, packed as FAISS's IndexPQ packs them\n"
    "  y      int64 [n]              the input's labels, when it has them\n"
    "\n"
    "  --pq          also encode the embeddings with the model's PQ codebooks\n"
    "  --tower a|b   the tower of a dual encoder: a (default) or b, the positive side, which reads\n"
    "                INPUT's second view when it has one\n"
    "  -h, --help    this text\n";

typedef struct args {
    const char *model, *input, *output;
    int pq, tower;
} args;

/* -1 to go on; otherwise the exit code. */
static int parse(int argc, char **argv, args *a)
{
    const char **pos[3] = {&a->model, &a->input, &a->output};
    int n_pos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--pq")) {
            a->pq = 1;
        } else if (!strcmp(argv[i], "--tower")) {
            if (i + 1 == argc || (strcmp(argv[i + 1], "a") != 0 && strcmp(argv[i + 1], "b") != 0)) {
                fprintf(stderr, "dml encode: --tower takes a or b\n\n%s", HELP);
                return 2;
            }
            a->tower = argv[++i][0] == 'b';
        } else if (argv[i][0] != '-' && n_pos < 3) {
            *pos[n_pos++] = argv[i];
        } else {
            fprintf(stderr, "dml encode: unexpected argument '%s'\n\n%s", argv[i], HELP);
            return 2;
        }
    }
    if (n_pos < 3) {
        fprintf(stderr, "dml encode: expected MODEL.h5 INPUT OUTPUT.h5\n\n%s", HELP);
        return 2;
    }
    return -1;
}

static dml_status run(const args *a, dml_model_file *mf, dml_dataset *ds, dml_error *err)
{
    dml_status st = dml_model_file_read(a->model, mf, err);
    if (st != DML_OK)
        return st;
    if (a->tower && mf->net.type != DML_NET_DUAL)
        return dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0,
                             "--tower b needs a dual encoder; this model is %s",
                             dml_model_file_type_name(mf->net.type));
    if (a->pq && !mf->pq.d)
        return dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0,
                             "the model has no PQ codebooks (/pq): drop --pq");
    if ((st = dml_dataset_open(a->input, ds, err)) != DML_OK)
        return st;
    float *x = NULL;
    uint8_t *codes = NULL;
    size_t cs = a->pq ? dml_pq_code_size(&mf->pq) : 0;
    st = dml_model_file_encode_dataset(mf, a->tower, ds, &x, err);
    if (st == DML_OK && a->pq && !(codes = malloc((size_t)ds->n * cs + 1)))
        st = dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory for %d codes", ds->n);
    if (st == DML_OK) {
        if (codes)
            dml_pq_encode(&mf->pq, x, (size_t)ds->n, codes);
        const dml_mlp *m = dml_model_file_tower(mf, a->tower);
        dml_embeddings e = {a->model, a->input,   a->tower ? "encoder_b" : "encoder",
                            (size_t)ds->n, dml_mlp_dim_out(m), x, codes, cs, ds->y};
        st = dml_embeddings_write(a->output, &e, err);
        if (st == DML_OK)
            printf("%s: %d rows -> %d-dim embeddings%s\n", a->output, ds->n, e.dim,
                   codes ? " and PQ codes" : "");
    }
    free(x);
    free(codes);
    return st;
}

int dml_cli_encode(int argc, char **argv)
{
    args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    dml_model_file mf;
    dml_dataset ds;
    memset(&mf, 0, sizeof mf);
    memset(&ds, 0, sizeof ds);
    dml_error err = {0};
    dml_status st = run(&a, &mf, &ds, &err);
    if (st != DML_OK)
        dml_cli_report_error("encode", st, &err);
    dml_dataset_free(&ds);
    dml_model_file_free(&mf);
    return dml_status_exit_code(st);
}
