/* dml_dataset_open on an untrusted HDF5 data file. The first byte picks the spec's form (X by
 * default, a named dataset, ann-benchmarks' test set); the rest is the file. */
#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "tests/fuzz/fuzzutil.h"

static const char *const INNER[] = {"", ":/X", ":/test", ":/g/X"};
#define N_INNER (sizeof INNER / sizeof INNER[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char path[1024], spec[1100];
    fz_write("x.h5", data + 1, size - 1, path, sizeof path);
    snprintf(spec, sizeof spec, "%s%s", path, INNER[data[0] % N_INNER]);
    dml_dataset ds;
    dml_error err = {0};
    dml_dataset_open(spec, &ds, &err);
    dml_dataset_free(&ds);
    fz_remove("x.h5");
    return 0;
}
