/* The input scale a model was trained on, measured, compared and described. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/scale.h"

/* Two samples of one source rarely differ by more than a few times in their largest |x|;
 * bytes (0..255) against floats in [0, 1] differ 255 times. Ten sits between. */
#define MAX_RATIO 10.0

const char *dml_norm_kind_name(dml_norm_kind kind)
{
    static const char *const names[] = {[DML_NORM_NONE] = "none", [DML_NORM_UNIT] = "unit",
                                        [DML_NORM_STANDARDIZE] = "standardize"};
    return names[kind];
}

static void take_range(dml_input_scale *s, const float *x, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        s->min = x[i] < s->min ? x[i] : s->min;
        s->max = x[i] > s->max ? x[i] : s->max;
    }
}

static void start(dml_input_scale *s, const char *type)
{
    snprintf(s->type, sizeof s->type, "%s", type ? type : "");
    s->min = INFINITY;
    s->max = -INFINITY;
}

static void finish(dml_input_scale *s)
{
    if (s->min > s->max) /* no rows */
        s->min = s->max = NAN;
}

dml_status dml_input_scale_measure(dml_input_scale *s, const dml_dataset *ds, int view,
                                   const int32_t *rows, int n, dml_error *err)
{
    enum { BLOCK = 4096 };
    const float *x = view ? ds->x_b : ds->x;
    int d = view ? ds->d_b : ds->d;
    start(s, view ? ds->value_type_b : ds->value_type);
    if (x) {
        for (int i = 0; i < n; i++)
            take_range(s, x + (size_t)(rows ? rows[i] : i) * (size_t)d, (size_t)d);
        finish(s);
        return DML_OK;
    }
    float *buf = malloc((size_t)BLOCK * (size_t)d * sizeof *buf);
    int32_t *ids = malloc(BLOCK * sizeof *ids);
    if (!buf || !ids) {
        free(buf);
        free(ids);
        return dml_error_set(err, DML_ERR_NOMEM, NULL, 0, 0, "out of memory");
    }
    for (int i0 = 0; i0 < n; i0 += BLOCK) {
        int k = n - i0 < BLOCK ? n - i0 : BLOCK;
        for (int i = 0; i < k; i++)
            ids[i] = rows ? rows[i0 + i] : i0 + i;
        dml_dataset_gather(buf, ds, ids, k);
        take_range(s, buf, (size_t)k * (size_t)d);
    }
    free(buf);
    free(ids);
    finish(s);
    return DML_OK;
}

dml_status dml_input_scale_of_rows(dml_input_scale *s, dml_rows *r, dml_error *err)
{
    int n = r->n < DML_SCALE_SAMPLE_ROWS ? r->n : DML_SCALE_SAMPLE_ROWS;
    float *x = malloc((size_t)(n ? n : 1) * (size_t)r->d * sizeof *x);
    if (!x)
        return dml_error_set(err, DML_ERR_NOMEM, r->source, 0, 0, "out of memory");
    dml_status st = dml_rows_read(r, 0, n, x, err);
    start(s, r->value_type);
    if (st == DML_OK)
        take_range(s, x, (size_t)n * (size_t)r->d);
    finish(s);
    free(x);
    return st;
}

/* Integer types against float ones; text (CSV) could be either. */
static int kind_of(const char *type)
{
    if (!strcmp(type, "uint8") || !strcmp(type, "int32"))
        return 1;
    return !strcmp(type, "float32") || !strcmp(type, "float64") ? 2 : 0;
}

static double max_abs(const dml_input_scale *s)
{
    return fmax(fabs(s->min), fabs(s->max));
}

int dml_input_scale_mismatch(const dml_input_scale *want, const char *want_name,
                             const dml_input_scale *got, const char *got_name, char *msg, size_t n)
{
    int kw = kind_of(want->type), kg = kind_of(got->type);
    int types = kw && kg && kw != kg;
    double a = max_abs(want), b = max_abs(got);
    int ranges = a > 0.0 && b > 0.0 && (a / b > MAX_RATIO || b / a > MAX_RATIO);
    if (!types && !ranges) /* NaN ranges compare false: not judged */
        return 0;
    snprintf(msg, n,
             "warning: %s holds %s values in [%g, %g], but the training rows (%s) held %s values "
             "in [%g, %g]: the encoder would see inputs of another scale than it learned from "
             "(data.normalize %s is one transform, fitted on the training rows, for both). "
             "Convert one to the other's scale (floats 0..1 are bytes / 255), or train on rows "
             "of the scale you will give",
             got_name, got->type[0] ? got->type : "unknown", got->min, got->max, want_name,
             want->type[0] ? want->type : "unknown", want->min, want->max,
             want->mode[0] ? want->mode : "(unknown)");
    return 1;
}

void dml_input_scale_describe(const dml_input_scale *s, const dml_input_norm *norm, char *out,
                              size_t n)
{
    const char *kind = norm && norm->d ? "standardize" : "none";
    if (!s->mode[0]) { /* an older file: its kind alone */
        snprintf(out, n, "%s", kind);
        return;
    }
    char values[96] = "";
    if (s->type[0] && !isnan(s->min))
        snprintf(values, sizeof values, "%s values %g..%g", s->type, s->min, s->max);
    else if (s->type[0])
        snprintf(values, sizeof values, "%s values", s->type);
    if (!values[0])
        snprintf(out, n, "%s", s->mode);
    else if (!strcmp(s->mode, "unit") && norm && norm->d)
        snprintf(out, n, "unit (x / 255; expects raw %s)", values);
    else if (!strcmp(s->mode, "standardize"))
        snprintf(out, n, "standardize ((x - mean) / std per feature; expects %s)", values);
    else /* none, or unit on float rows: the identity */
        snprintf(out, n, "%s (the identity; expects %s)", s->mode, values);
}

void dml_input_scale_warn(FILE *log, const char *command, const char *model_path,
                          const dml_input_scale *want, const dml_input_scale *got,
                          const char *got_name)
{
    char where[1100], msg[2400];
    snprintf(where, sizeof where, "recorded in %s", model_path);
    if (dml_input_scale_mismatch(want, where, got, got_name, msg, sizeof msg))
        fprintf(log, "dml %s: %s\n", command, msg);
}
