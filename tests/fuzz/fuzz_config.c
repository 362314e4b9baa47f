/* dml_config_load on an untrusted config and --set overrides: the input is the YAML document,
 * then NUL-separated overrides (at most MAX_SETS). A config that loads must print as YAML that
 * loads again to the same config (config.h's promise), compared byte for byte from name to the
 * key positions (set_text zero-pads strings for this). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/config.h"
#include "tests/fuzz/fuzzutil.h"

#define MAX_SETS 4

static char *print_config(const dml_config *cfg)
{
    char *text = dml_config_to_yaml(cfg);
    if (!text)
        abort();
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1); /* NUL-terminated, so the last override is a string */
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    size_t doc_len = strnlen(copy, size);
    char *sets[MAX_SETS];
    int n_sets = 0;
    for (size_t at = doc_len + 1; at <= size && n_sets < MAX_SETS; at += strlen(copy + at) + 1)
        sets[n_sets++] = copy + at;

    char path[1024], again_path[1024];
    fz_write("fuzz.yaml", data, doc_len, path, sizeof path);
    static dml_config cfg, again; /* 40 KB each: not on the stack */
    dml_error err = {0};
    if (dml_config_load(path, n_sets, sets, &cfg, &err) == DML_OK) {
        char *text = print_config(&cfg);
        fz_write("again.yaml", (const uint8_t *)text, strlen(text), again_path,
                 sizeof again_path);
        if (dml_config_load(again_path, 0, NULL, &again, &err) != DML_OK) {
            fprintf(stderr, "the printed config does not load: %s\n%s", err.msg, text);
            abort();
        }
        size_t from = offsetof(dml_config, name), to = offsetof(dml_config, keys);
        if (memcmp((char *)&cfg + from, (char *)&again + from, to - from) != 0) {
            char *text2 = print_config(&again);
            fprintf(stderr, "the config loaded back differs:\n%s\n--- reloaded:\n%s", text, text2);
            abort();
        }
        free(text);
        fz_remove("again.yaml");
    }
    fz_remove("fuzz.yaml");
    free(copy);
    return 0;
}
