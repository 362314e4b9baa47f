/* The scale of a model's input: data.normalize as configured, and the values the training rows
 * held (their stored type and range). A model's input normalisation is one fixed transform
 * (unit: x / 255 when the training rows were bytes), so rows of another scale, raw bytes
 * against floats in [0, 1], embed to meaningless points without any error. model.h5 records
 * it beside the normalisation (serve/model_file.h), and the training and test rows, or a model
 * and the data it is given, are compared with it. */
#ifndef DML_DATA_SCALE_H
#define DML_DATA_SCALE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "data/normalize.h"
#include "data/rows.h"

typedef struct dml_input_scale {
    char mode[16];   /* data.normalize: "none", "unit", "standardize"; "" unknown (older files) */
    char type[16];   /* the training values as stored (dml_dataset.value_type); "" unknown */
    double min, max; /* their range, before normalisation; NAN unknown */
} dml_input_scale;

/* Rows a scale is measured on at most when they are read from a file rather than held: the
 * first ones, enough to tell bytes from unit floats. */
#define DML_SCALE_SAMPLE_ROWS 65536

/* data.normalize's names, as the config spells them. */
const char *dml_norm_kind_name(dml_norm_kind kind);

/* s->type and s->min, s->max of rows[n] (NULL: the first n) of one view of ds (0: x, 1: x_b);
 * rows a cache holds are gathered in blocks. s->mode is left as it is. DML_ERR_NOMEM only. */
dml_status dml_input_scale_measure(dml_input_scale *s, const dml_dataset *ds, int view,
                                   const int32_t *rows, int n, dml_error *err);
/* The same over the first DML_SCALE_SAMPLE_ROWS rows of an opened file (read errors name it). */
dml_status dml_input_scale_of_rows(dml_input_scale *s, dml_rows *r, dml_error *err);

/* When rows of scale got (from got_name) look unlike the training rows of scale want (from
 * want_name): one warning line (no newline) in msg[n] naming both, their types and ranges and
 * what to do, and 1. Else 0. Unknown types or ranges are not compared. */
int dml_input_scale_mismatch(const dml_input_scale *want, const char *want_name,
                             const dml_input_scale *got, const char *got_name, char *msg, size_t n);
/* That warning as "dml COMMAND: warning: ..." on log (dml eval, dml encode), want being the
 * training rows' scale as the model at model_path records it. Nothing when they look alike. */
void dml_input_scale_warn(FILE *log, const char *command, const char *model_path,
                          const dml_input_scale *want, const dml_input_scale *got,
                          const char *got_name);

/* What a model does to its input and expects, for people (dml info, ONNX metadata):
 * "unit (x / 255; expects raw uint8 values 0..255)". norm is the model's normalisation; an
 * older file without the record says "standardize" or "none" alone. */
void dml_input_scale_describe(const dml_input_scale *s, const dml_input_norm *norm, char *out,
                              size_t n);

#endif
