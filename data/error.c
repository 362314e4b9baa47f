#include "data/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *dml_status_name(dml_status s)
{
    switch (s) {
    case DML_OK: return "DML_OK";
    case DML_ERR_USAGE: return "DML_ERR_USAGE";
    case DML_ERR_CONFIG: return "DML_ERR_CONFIG";
    case DML_ERR_DATA: return "DML_ERR_DATA";
    case DML_ERR_IO: return "DML_ERR_IO";
    case DML_ERR_NOMEM: return "DML_ERR_NOMEM";
    case DML_ERR_DIVERGED: return "DML_ERR_DIVERGED";
    case DML_ERR_INTERNAL: return "DML_ERR_INTERNAL";
    case DML_ERR_INTERRUPTED: return "DML_ERR_INTERRUPTED";
    }
    return "DML_ERR_UNKNOWN";
}

dml_status dml_error_set(dml_error *e, dml_status code, const char *file, int line, int col,
                         const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    snprintf(e->file, sizeof e->file, "%s", file ? file : "");
    e->line = line;
    e->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *dml_error_shown(char *out, const char *s)
{
    size_t n = strlen(s), k = n < DML_SHOWN_CHARS ? n : DML_SHOWN_CHARS;
    for (size_t i = 0; i < k; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    out[k] = '\0';
    if (n > k)
        snprintf(out + k, DML_SHOWN_SIZE - k, "... (%zu bytes)", n);
    return out;
}

void dml_error_clear(dml_error *e)
{
    if (e)
        memset(e, 0, sizeof *e);
}

void dml_error_format(const dml_error *e, char *buf, size_t n)
{
    if (!e->file[0])
        snprintf(buf, n, "%s", e->msg);
    else if (e->line > 0 && e->col > 0)
        snprintf(buf, n, "%s:%d:%d: %s", e->file, e->line, e->col, e->msg);
    else if (e->line > 0)
        snprintf(buf, n, "%s:%d: %s", e->file, e->line, e->msg);
    else
        snprintf(buf, n, "%s: %s", e->file, e->msg);
}

int dml_status_exit_code(dml_status s)
{
    switch (s) {
    case DML_OK: return 0;
    case DML_ERR_USAGE:
    case DML_ERR_CONFIG:
    case DML_ERR_DATA: return 2;
    default: return 1;
    }
}

void dml_assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "%s:%d: internal error: assertion failed: %s\n", file, line, expr);
    abort();
}
