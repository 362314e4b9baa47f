/* A comma-separated list of metric keys split into the request's array: dml eval --metrics and
 * dml_evaluate's metrics argument read it alike, each key a row of the metric table. */
#include <string.h>

#include "eval/metric_table.h"

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
        if (*key && dml_metric_find(key) < 0) {
            char names[512];
            dml_metric_names(0, ", ", names, sizeof names);
            return dml_error_set(err, DML_ERR_USAGE, name, 0, 0,
                                 "unknown metric \"%s\": expected one of %s", key, names);
        }
        for (int i = 0; *key && i < out->n; i++)
            if (!strcmp(out->keys[i], key))
                return dml_error_set(err, DML_ERR_USAGE, name, 0, 0,
                                     "metric %s listed twice: expected each once", key);
        if (*key) /* distinct rows: at most DML_METRIC_COUNT */
            out->keys[out->n++] = key;
        key = comma ? comma + 1 : NULL;
    }
    return DML_OK;
}
