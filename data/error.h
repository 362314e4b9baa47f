/* The error record every fallible function fills, and the status names. */
#ifndef DML_DATA_ERROR_H
#define DML_DATA_ERROR_H

#include <stddef.h>
#include "dml.h"

/* What went wrong, about which file, and where in it (line/col 1-based, 0 = not known). */
typedef struct dml_error {
    dml_status code;
    char file[256];
    int line, col;
    char msg[512];
} dml_error;

/* Fill *e (e may be NULL) and return code, so callers can write `return dml_error_set(...)`. */
dml_status dml_error_set(dml_error *e, dml_status code, const char *file, int line, int col,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* A value read from a file, as a message shows it: its first DML_SHOWN_CHARS bytes, then
 * "... (N bytes)" when it is longer, control characters as '?' (a message stays one line, and
 * keeps what follows the value). out holds DML_SHOWN_SIZE bytes; returns out. */
#define DML_SHOWN_CHARS 80
#define DML_SHOWN_SIZE (DML_SHOWN_CHARS + 32)
const char *dml_error_shown(char *out, const char *s);
/* The same in a buffer of its own that lives to the end of the enclosing block: an argument. */
#define DML_SHOWN(s) dml_error_shown((char[DML_SHOWN_SIZE]){0}, (s))

/* Clear *e to DML_OK. */
void dml_error_clear(dml_error *e);

/* "file:line:col: msg", "file: msg" or "msg", whichever parts are known. */
void dml_error_format(const dml_error *e, char *buf, size_t n);

/* The process exit code for a status: 0 ok, 2 bad usage/config/data, 1 anything else. */
int dml_status_exit_code(dml_status s);

/* Invariants that hold after validation (shapes inside an op): print file:line and abort.
 * Never for user input, which gets a dml_error instead. */
#define DML_ASSERT(x) \
    do { if (!(x)) dml_assert_fail(__FILE__, __LINE__, #x); } while (0)
_Noreturn void dml_assert_fail(const char *file, int line, const char *expr);

#endif
