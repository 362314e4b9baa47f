/* dml export MODEL.h5 --faiss OUT.index --db SPEC [--pq | --flat] [--metric l2|ip]
 *                     --onnx OUT.onnx [--tower a|b] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "data/progress.h"
#include "serve/serve.h"

static const char HELP[] =
    "usage: dml export MODEL.h5 --faiss OUT.index --db SPEC [--pq | --flat] [--metric l2|ip]\n"
    "       dml export MODEL.h5 --onnx OUT.onnx\n"
    "\n"
    "Writes what a search library or an inference runtime loads (both at once if both are given):\n"
    "  --faiss OUT.index  a FAISS 1.7 index of the data SPEC --db, encoded by the model: IndexPQ\n"
    "                     with the model's codebooks (--pq, the default when it has them) or\n"
    "                     IndexFlat of the embeddings (--flat); faiss.read_index loads it\n"
    "                     (read, embedded and written 65536 rows at a time, as dml encode)\n"
    "  --metric l2|ip     the index's metric (default: the model's, l2 or inner_product)\n"
    "  --onnx OUT.onnx    the encoder as ONNX (opset 13): input x [N, d_in], output y [N, dim]\n"
    "  --tower a|b        the tower of a dual encoder: a (default) or b, the positive side, which\n"
    "                     reads the --db data's second view when it has one\n"
    "  -h, --help         this text\n";

typedef struct args {
    const char *model, *faiss, *db, *onnx, *metric;
    int pq, flat, tower;
} args;

static int usage(const char *fmt, const char *what)
{
    fputs("dml export: ", stderr);
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n\n%s", HELP);
    return 2;
}

/* -1 to go on; otherwise the exit code. */
static int parse(int argc, char **argv, args *a)
{
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char **value = !strcmp(o, "--faiss")    ? &a->faiss
                             : !strcmp(o, "--db")     ? &a->db
                             : !strcmp(o, "--onnx")   ? &a->onnx
                             : !strcmp(o, "--metric") ? &a->metric
                                                      : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help")) {
            fputs(HELP, stdout);
            return 0;
        } else if (value && i + 1 < argc) {
            *value = argv[++i];
        } else if (value) {
            return usage("%s needs a value", o);
        } else if (!strcmp(o, "--pq") || !strcmp(o, "--flat")) {
            *(o[2] == 'p' ? &a->pq : &a->flat) = 1;
        } else if (!strcmp(o, "--tower")) {
            if (i + 1 == argc || (strcmp(argv[i + 1], "a") != 0 && strcmp(argv[i + 1], "b") != 0))
                return usage("%s takes a or b", o);
            a->tower = argv[++i][0] == 'b';
        } else if (o[0] != '-' && !a->model) {
            a->model = o;
        } else {
            return usage("unexpected argument '%s'", o);
        }
    }
    dml_faiss_metric m;
    if (!a->model)
        return usage("%s", "which model?");
    if (!a->faiss && !a->onnx)
        return usage("%s", "nothing to export: give --faiss OUT.index --db SPEC and/or --onnx OUT.onnx");
    if (a->faiss && !a->db)
        return usage("%s", "--faiss needs the database to index: --db SPEC");
    if (!a->faiss && (a->db || a->pq || a->flat || a->metric))
        return usage("%s", "--db, --pq, --flat and --metric go with --faiss");
    if (a->pq && a->flat)
        return usage("%s", "--pq or --flat, not both");
    if (a->metric && !dml_faiss_metric_parse(a->metric, &m))
        return usage("--metric '%s': expected l2 or ip", a->metric);
    return -1;
}

/* The database streamed a range of rows at a time: read, embed (and PQ-encode), append. */
static dml_status export_faiss(const args *a, const dml_model_file *mf, dml_error *err)
{
    dml_faiss_metric metric;
    dml_faiss_metric_parse(a->metric ? a->metric : mf->metric, &metric);
    int pq = a->pq || (!a->flat && mf->pq.d);
    if (pq && !mf->pq.d)
        return dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0,
                             "the model has no PQ codebooks (/pq): export --flat instead");
    dml_rows db;
    dml_rows_encoder enc;
    dml_faiss_out *w = NULL;
    size_t chunk = 0, n = 0;
    memset(&db, 0, sizeof db);
    memset(&enc, 0, sizeof enc);
    dml_status st = dml_rows_encoder_chunk(&chunk, err);
    if (st == DML_OK)
        st = dml_rows_open(a->db, &db, err);
    if (st == DML_OK)
        st = dml_rows_encoder_init(&enc, mf, a->tower, &db, pq, chunk, err);
    if (st == DML_OK) {
        n = (size_t)db.n;
        st = pq ? dml_faiss_pq_open(a->faiss, &mf->pq, n, metric, &w, err)
                : dml_faiss_flat_open(a->faiss, enc.dim, n, metric, &w, err);
    }
    dml_progress bar;
    dml_progress_init_units(&bar, stderr, (long)n, "rows");
    for (size_t lo = 0; st == DML_OK && lo < n; lo += chunk) {
        size_t count = n - lo < chunk ? n - lo : chunk;
        if ((st = dml_rows_encoder_run(&enc, lo, count, err)) == DML_OK) {
            dml_faiss_put(w, pq ? (const void *)enc.codes : (const void *)enc.x, count);
            dml_progress_count(&bar, (long)(lo + count));
        }
    }
    if (w) {
        dml_status closed = dml_faiss_close(w, st == DML_OK, err);
        st = st == DML_OK ? closed : st;
    }
    if (st == DML_OK)
        printf("%s: FAISS %s, %zu vectors, metric %s\n", a->faiss,
               pq ? "IndexPQ" : metric == DML_FAISS_IP ? "IndexFlatIP" : "IndexFlatL2", n,
               metric == DML_FAISS_IP ? "inner product" : "L2");
    dml_rows_encoder_free(&enc);
    dml_rows_close(&db);
    return st;
}

static dml_status run(const args *a, dml_model_file *mf, dml_error *err)
{
    dml_status st = dml_model_file_read(a->model, mf, err);
    if (st == DML_OK && a->tower && mf->net.type != DML_NET_DUAL)
        st = dml_error_set(err, DML_ERR_USAGE, a->model, 0, 0,
                           "--tower b needs a dual encoder; this model is %s",
                           dml_model_file_type_name(mf->net.type));
    if (st == DML_OK && a->faiss)
        st = export_faiss(a, mf, err);
    if (st == DML_OK && a->onnx && (st = dml_export_onnx(a->onnx, mf, a->tower, err)) == DML_OK)
        printf("%s: ONNX (opset 13) of the %s\n", a->onnx, a->tower ? "encoder_b" : "encoder");
    return st;
}

int dml_cli_export(int argc, char **argv)
{
    args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc >= 0)
        return rc;
    dml_model_file mf;
    dml_error err = {0};
    dml_status st = run(&a, &mf, &err);
    if (st != DML_OK)
        dml_cli_report_error("export", st, &err);
    dml_model_file_free(&mf);
    return dml_status_exit_code(st);
}
