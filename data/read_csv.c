/* CSV: comma-separated numbers, the last column an integer label; a first line that is not
 * numeric is a header. Errors give the line and column. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/readers.h"

/* Parses one line into vals (up to cap); returns the field count, or -(column) of a bad field. */
static int parse_line(char *line, double *vals, int cap)
{
    int n = 0;
    char *p = line;
    for (;;) {
        char *end;
        errno = 0;
        double v = strtod(p, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (end == p || errno == ERANGE || (*end != ',' && *end != '\0'))
            return -(n + 1);
        if (n < cap)
            vals[n] = v;
        n++;
        if (*end == '\0')
            return n;
        p = end + 1;
    }
}

dml_status dml_read_csv(const char *path, dml_dataset *ds, dml_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open: no such file");
    char *line = NULL;
    size_t cap = 0;
    int width = 0, rows = 0, row_cap = 0, line_no = 0;
    double *vals = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    dml_status st = DML_OK;
    while (getline(&line, &cap, f) > 0) {
        line_no++;
        if (line[strspn(line, " \t\r\n")] == '\0')
            continue;
        if (!width) { /* the first line fixes the width, or is a header */
            int n = parse_line(line, NULL, 0);
            if (n < 0 && rows == 0 && line_no == 1)
                continue;
            if (n < 2) {
                st = dml_error_set(err, DML_ERR_DATA, path, line_no, 0,
                                   "expected at least one feature and a label, comma-separated");
                break;
            }
            width = n;
            vals = malloc((size_t)width * sizeof *vals);
        }
        int n = parse_line(line, vals, width);
        if (n < 0 || n != width) {
            st = n < 0 ? dml_error_set(err, DML_ERR_DATA, path, line_no, -n, "not a number")
                       : dml_error_set(err, DML_ERR_DATA, path, line_no, 0,
                                       "%d fields where the first row has %d", n, width);
            break;
        }
        if (rows == row_cap) {
            row_cap = row_cap ? 2 * row_cap : 1024;
            float *nx = realloc(x, (size_t)row_cap * (width - 1) * sizeof *x);
            int32_t *ny = realloc(y, (size_t)row_cap * sizeof *y);
            if (nx)
                x = nx;
            if (ny)
                y = ny;
            if (!nx || !ny) {
                st = dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory");
                break;
            }
        }
        double label = vals[width - 1];
        if (label != (double)(int32_t)label) {
            st = dml_error_set(err, DML_ERR_DATA, path, line_no, width,
                               "the label (last column) must be an integer, got %g", label);
            break;
        }
        for (int j = 0; j < width - 1; j++)
            x[(size_t)rows * (width - 1) + j] = (float)vals[j];
        y[rows++] = (int32_t)label;
    }
    free(line);
    free(vals);
    fclose(f);
    if (st != DML_OK) {
        free(x);
        free(y);
        return st;
    }
    ds->x = x ? x : malloc(sizeof(float));
    ds->y = y ? y : malloc(sizeof(int32_t));
    ds->n = rows;
    ds->d = width > 0 ? width - 1 : 0;
    return DML_OK;
}
