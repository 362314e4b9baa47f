/* Files the TensorFlow Embedding Projector (projector.tensorflow.org) loads: vectors.tsv, one
 * embedding per line as tab-separated floats, and metadata.tsv, one label per line (a single
 * column has no header line). */
#include <stdlib.h>

#include "eval/eval.h"

typedef struct rows {
    const float *x;
    const int32_t *labels;
    int n, d;
} rows;

static void write_vectors(FILE *f, const void *ctx)
{
    const rows *r = ctx;
    for (int i = 0; i < r->n; i++)
        for (int j = 0; j < r->d; j++)
            fprintf(f, "%.7g%c", r->x[(size_t)i * r->d + j], j + 1 < r->d ? '\t' : '\n');
}

static void write_metadata(FILE *f, const void *ctx)
{
    const rows *r = ctx;
    for (int i = 0; i < r->n; i++)
        fprintf(f, "%d\n", (int)r->labels[i]);
}

dml_status dml_projector_write(const char *dir, const float *x, const int32_t *labels, int n,
                               int d, dml_error *err)
{
    if (!x || n < 1 || d < 1)
        return dml_error_set(err, DML_ERR_USAGE, dir, 0, 0,
                             "projector export: expected at least one embedding (got %d x %d)", n, d);
    rows r = {x, labels, n, d};
    char path[4096];
    snprintf(path, sizeof path, "%s/vectors.tsv", dir);
    dml_status st = dml_file_write_stdio(path, "projector vectors", write_vectors, &r, err);
    if (st == DML_OK && labels) {
        snprintf(path, sizeof path, "%s/metadata.tsv", dir);
        st = dml_file_write_stdio(path, "projector labels", write_metadata, &r, err);
    }
    return st;
}
