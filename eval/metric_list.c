/* A comma-separated list of metric keys split into the request's array: dml eval --metrics and
 * dml_evaluate's metrics argument read it alike. */
#include <string.h>

#include "eval/eval.h"

dml_status dml_eval_metric_list_parse(const char *list, const char *name,
                                      dml_eval_metric_list *out, dml_error *err)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(list);
    if (len >= sizeof out->text)
        return dml_error_set(err, DML_ERR_USAGE, name, 0, 0,
                             "a list of %zu characters: expected at most %zu", len,
                             sizeof out->text - 1);
    memcpy(out->text, list, len + 1);
    /* split in place (not strtok: callers may run on several threads); empty keys are skipped */
    for (char *key = out->text; key;) {
        char *comma = strchr(key, ',');
        if (comma)
            *comma = '\0';
        if (*key && out->n == DML_EVAL_MAX_METRICS)
            return dml_error_set(err, DML_ERR_USAGE, name, 0, 0,
                                 "more than %d metric keys", DML_EVAL_MAX_METRICS);
        if (*key)
            out->keys[out->n++] = key;
        key = comma ? comma + 1 : NULL;
    }
    return DML_OK;
}
