/* dml_config_load_text (dml_train's config entry) on untrusted text and --set overrides: the
 * input is the YAML text, then NUL-separated overrides (at most MAX_SETS). The text is handed
 * over unterminated, exactly its length, so a read past it is ASan's to catch. It must give
 * what dml_config_load gives on a file of the same bytes: the same status and message, and a
 * config equal byte for byte from name to the key positions. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/config.h"
#include "tests/fuzz/fuzzutil.h"

#define MAX_SETS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t doc_len = strnlen((const char *)data, size);
    char *text = malloc(doc_len ? doc_len : 1); /* exactly the text, no NUL after it */
    char *sets_copy = malloc(size - doc_len + 1); /* the overrides, NUL-terminated */
    if (!text || !sets_copy)
        abort();
    memcpy(text, data, doc_len);
    memcpy(sets_copy, data + doc_len, size - doc_len);
    sets_copy[size - doc_len] = '\0';
    char *sets[MAX_SETS];
    int n_sets = 0;
    for (size_t at = 1; at <= size - doc_len && n_sets < MAX_SETS; at += strlen(sets_copy + at) + 1)
        sets[n_sets++] = sets_copy + at;

    char path[1024];
    fz_write("fuzz.yaml", data, doc_len, path, sizeof path);
    static dml_config from_text, from_file; /* 40 KB each: not on the stack */
    dml_error err_text = {0}, err_file = {0};
    dml_status st_text = dml_config_load_text(text, doc_len, path, n_sets, sets, &from_text,
                                              &err_text);
    dml_status st_file = dml_config_load(path, n_sets, sets, &from_file, &err_file);
    char msg_text[1024], msg_file[1024];
    dml_error_format(&err_text, msg_text, sizeof msg_text);
    dml_error_format(&err_file, msg_file, sizeof msg_file);
    if (st_text != st_file || (st_text != DML_OK && strcmp(msg_text, msg_file) != 0)) {
        fprintf(stderr, "from text: %s %s\nfrom the file: %s %s\n", dml_status_name(st_text),
                msg_text, dml_status_name(st_file), msg_file);
        abort();
    }
    size_t from = offsetof(dml_config, name), to = offsetof(dml_config, keys);
    if (st_text == DML_OK &&
        memcmp((char *)&from_text + from, (char *)&from_file + from, to - from) != 0) {
        fprintf(stderr, "the config from text differs from the file's\n");
        abort();
    }
    fz_remove("fuzz.yaml");
    free(text);
    free(sets_copy);
    return 0;
}
