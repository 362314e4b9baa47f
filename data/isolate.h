/* Work on untrusted input that a library may crash on, run in a child process: the crash, hang
 * or memory blow-up becomes the input's error instead of the caller's death. */
#ifndef DML_DATA_ISOLATE_H
#define DML_DATA_ISOLATE_H

#include <stddef.h>

#include "data/error.h"

/* Runs fn(ctx, err) in a forked child with a limit of seconds and, when memory > 0, of memory
 * bytes of address space above what the process already has. Returns fn's status and error
 * record when the child finished; DML_ERR_DATA naming file when it was killed ("<what> crashed
 * (signal N) ... or took more than N s: the file is damaged"); DML_ERR_IO when no child could be
 * started. fn runs in the child only: nothing else it changes reaches the caller. */
dml_status dml_isolated(dml_status (*fn)(const void *ctx, dml_error *err), const void *ctx,
                        int seconds, size_t memory, const char *file, const char *what,
                        dml_error *err);

#endif
