/* An evaluation's results for people (an aligned table) and for programs (one JSON object). */
#include <math.h>
#include <string.h>

#include "eval/metric_table.h"

static int find(const dml_eval_result *res, const char *name)
{
    for (int i = 0; i < res->n_values; i++)
        if (!strcmp(res->values[i].name, name))
            return i;
    return -1;
}

double dml_eval_get(const dml_eval_result *res, const char *name)
{
    int i = find(res, name);
    return i < 0 ? NAN : res->values[i].value;
}

int dml_eval_table_rows(const dml_eval_result *res, dml_eval_row *rows)
{
    int n = 0;
    for (int i = 0; i < res->n_values; i++) {
        const char *name = res->values[i].name;
        if (!strncmp(name, "pq_", 3) && find(res, name + 3) >= 0)
            continue; /* beside its float twin */
        char twin[48];
        snprintf(twin, sizeof twin, "pq_%s", name);
        int pq_only = 0; /* a PQ value without a float twin: the table's PQ metrics */
        dml_metric_of_value(name, &pq_only);
        int t = pq_only ? i : find(res, twin);
        rows[n++] = (dml_eval_row){name, !pq_only, t >= 0, pq_only ? NAN : res->values[i].value,
                                   t >= 0 ? res->values[t].value : NAN};
    }
    return n;
}

/* A value in a 10-wide column: "-" when absent, "n/a" when no query counted. */
static void cell(FILE *f, int present, double v)
{
    if (!present)
        fprintf(f, " %10s", "-");
    else if (isnan(v))
        fprintf(f, " %10s", "n/a");
    else if (v != 0.0 && fabs(v) < 0.01)
        fprintf(f, " %10.3e", v);
    else
        fprintf(f, " %10.4f", v);
}

void dml_eval_print_table(const dml_eval_result *res, FILE *f)
{
    fprintf(f, "%-18s %10s %10s\n", "metric", "float", "pq");
    dml_eval_row rows[DML_EVAL_MAX_METRICS];
    int n = dml_eval_table_rows(res, rows);
    for (int i = 0; i < n; i++) {
        fprintf(f, "%-18s", rows[i].name);
        cell(f, rows[i].has_float, rows[i].value_float);
        cell(f, rows[i].has_pq, rows[i].value_pq);
        fputc('\n', f);
    }
    fprintf(f, "%d queries, %d references, %.2f s\n", res->n_queries, res->n_db, res->seconds);
    if (res->n_classes > 0) /* R = 0: no relevant reference to rank, so no label metric */
        fprintf(f, "scored %d of %d queries (%d skipped: no %s)\n", res->scored_queries,
                res->n_queries, res->skipped_queries,
                res->protocol2 ? "database row of their class" : "other row of their class");
    if (res->omitted[0])
        fprintf(f, "left out with a streamed database: %s\n", res->omitted);
}

void dml_eval_write_json(const dml_eval_result *res, FILE *f)
{
    fputc('{', f);
    for (int i = 0; i < res->n_values; i++) {
        fprintf(f, "\"%s\": ", res->values[i].name);
        if (isfinite(res->values[i].value))
            fprintf(f, "%.8g, ", res->values[i].value);
        else
            fputs("null, ", f);
    }
    if (res->omitted[0]) /* plain text: no quote or backslash to escape */
        fprintf(f, "\"omitted\": \"%s\", ", res->omitted);
    fprintf(f, "\"n_queries\": %d, \"n_db\": %d, \"scored_queries\": %d, \"skipped_queries\": %d, "
            "\"seconds\": %.3f}",
            res->n_queries, res->n_db, res->scored_queries, res->skipped_queries, res->seconds);
}
