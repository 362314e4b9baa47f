/* CSV: comma-separated numbers, one row per line, the last column an integer label. A first
 * line that is not all numbers is a header. Blank lines are skipped. Errors carry the line and
 * character column (1-based) and the field number. */
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/readers.h"

typedef struct csv {
    const char *path;
    int width;            /* fields per line, fixed by the first line */
    int header;           /* 1 when the first line was a header */
    size_t n, cap;        /* rows read, rows allocated */
    float *x;             /* [cap, width - 1] */
    int32_t *y;           /* [cap] */
} csv;

/* Splits line in place at the commas; fields[i] trimmed of blanks. Returns the field count. */
static int split_fields(char *line, char ***fields, int *cap)
{
    int n = 0;
    for (char *p = line;; p++) {
        char *start = p;
        while (*p && *p != ',')
            p++;
        int last = *p == '\0';
        *p = '\0';
        while (isspace((unsigned char)*start))
            start++;
        for (char *e = start + strlen(start); e > start && isspace((unsigned char)e[-1]); e--)
            e[-1] = '\0';
        if (n == *cap) {
            int grown = *cap ? 2 * *cap : 64;
            char **f = realloc(*fields, (size_t)grown * sizeof *f);
            if (!f)
                return -1;
            *fields = f;
            *cap = grown;
        }
        (*fields)[n++] = start;
        if (last)
            return n;
    }
}

static int parse_number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end); /* out of range gives +-HUGE_VAL, refused later as not finite */
    return *s != '\0' && *end == '\0';
}

static dml_status grow(csv *c, dml_error *err)
{
    /* From 16 rows: the first line fixes the width, and a very wide one must not cost
     * a thousand rows' worth before a second line is seen. */
    size_t cap = c->cap ? 2 * c->cap : 16;
    float *x = realloc(c->x, cap * (size_t)(c->width - 1) * sizeof *x);
    if (x)
        c->x = x;
    int32_t *y = x ? realloc(c->y, cap * sizeof *y) : NULL;
    if (y)
        c->y = y;
    if (!x || !y)
        return dml_error_set(err, DML_ERR_NOMEM, c->path, 0, 0, "out of memory after %zu rows",
                             c->n);
    c->cap = cap;
    return DML_OK;
}

/* One data line; fields point into line (split in place), which gives their columns. */
static dml_status add_row(csv *c, char **fields, int count, int line_no, const char *line,
                          dml_error *err)
{
    if (count != c->width)
        return dml_error_set(err, DML_ERR_DATA, c->path, line_no, 0,
                             "%d fields, expected %d as on the %s line", count, c->width,
                             c->header ? "header" : "first");
    if (c->n == c->cap && grow(c, err) != DML_OK)
        return DML_ERR_NOMEM;
    if (c->n >= INT_MAX)
        return dml_error_set(err, DML_ERR_DATA, c->path, line_no, 0, "too many rows");
    for (int j = 0; j < count; j++) {
        int col = (int)(fields[j] - line) + 1;
        double v;
        if (!*fields[j])
            return dml_error_set(err, DML_ERR_DATA, c->path, line_no, col, "field %d is empty",
                                 j + 1);
        if (!parse_number(fields[j], &v))
            return dml_error_set(err, DML_ERR_DATA, c->path, line_no, col,
                                 "field %d: \"%s\" is not a number", j + 1,
                                 DML_SHOWN(fields[j]));
        if (j == count - 1) {
            if (v != floor(v) || !isfinite(v))
                return dml_error_set(err, DML_ERR_DATA, c->path, line_no, col,
                                     "field %d (the label): \"%s\" is not an integer", j + 1,
                                     DML_SHOWN(fields[j]));
            if (v < 0 || v > DML_MAX_LABEL)
                return dml_error_set(err, DML_ERR_DATA, c->path, line_no, col,
                                     "field %d (the label): %s: expected 0..%d", j + 1,
                                     DML_SHOWN(fields[j]), DML_MAX_LABEL);
            c->y[c->n] = (int32_t)v;
        } else {
            float f = (float)v;
            if (!isfinite(f))
                return dml_error_set(err, DML_ERR_DATA, c->path, line_no, col,
                                     "field %d (row %zu, column %d, 0-based) is %s: expected "
                                     "finite numbers", j + 1, c->n, j, isnan(f) ? "NaN" : "Inf");
            c->x[c->n * (size_t)(c->width - 1) + (size_t)j] = f;
        }
    }
    c->n++;
    return DML_OK;
}

static int all_numbers(char **fields, int count)
{
    double v;
    for (int j = 0; j < count; j++)
        if (!parse_number(fields[j], &v))
            return 0;
    return 1;
}

static dml_status read_csv(const char *path, const char *inner, dml_dataset *ds,
                           dml_error *err)
{
    (void)inner; /* one data set per file */
    FILE *f = fopen(path, "r");
    if (!f)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open the file");
    csv c = {.path = path};
    char *line = NULL, **fields = NULL;
    size_t line_cap = 0;
    int fields_cap = 0, line_no = 0;
    ssize_t len;
    dml_status st = DML_OK;
    while (st == DML_OK && (len = getline(&line, &line_cap, f)) >= 0) {
        line_no++;
        if (line_no == 1 && !strncmp(line, "\xEF\xBB\xBF", 3)) /* a UTF-8 byte order mark */
            memmove(line, line + 3, (size_t)len - 2);
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        int count = split_fields(line, &fields, &fields_cap);
        if (count < 0) {
            st = dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
            break;
        }
        if (!c.width) {
            if (count < 2) {
                st = dml_error_set(err, DML_ERR_DATA, path, line_no, 0,
                                   "1 field: expected at least one feature and a label "
                                   "(comma-separated)");
                break;
            }
            c.width = count;
            if ((c.header = !all_numbers(fields, count)))
                continue;
        }
        st = add_row(&c, fields, count, line_no, line, err);
    }
    free(line);
    free(fields);
    fclose(f);
    if (st == DML_OK && c.n == 0)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "no data rows%s",
                           c.header ? " after the header" : "");
    if (st != DML_OK) {
        free(c.x);
        free(c.y);
        return st;
    }
    ds->x = c.x;
    ds->y = c.y;
    ds->n = (int)c.n;
    ds->d = c.width - 1;
    ds->value_type = "text";
    return DML_OK;
}

static int probe_csv(const char *spec, char *file, size_t n)
{
    return dml_reader_probe_suffix(spec, ".csv", file, n);
}

const dml_reader dml_reader_csv = {".csv", probe_csv, read_csv, NULL};
