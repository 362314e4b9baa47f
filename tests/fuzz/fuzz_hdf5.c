/* dml_dataset_open on an untrusted HDF5 data file. The first byte picks the spec's form (X by
 * default, a named dataset, ann-benchmarks' test set); the rest is the file. */
#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data.h"
#include "tests/fuzz/fuzzutil.h"

/* libhdf5's own leaks on corrupt files are suppressed, and a huge allocation returns NULL, for
 * every harness (fuzzutil.c); dml's side is checked here instead: no HDF5 object may be open
 * after each input. */

/* libhdf5 allocates what a corrupt size field says before finding the file too short (2.4 GB
 * for a local heap, found here), and never touches most of it. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_allow_untouched_allocations(argc, argv);
    return 0;
}

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
    if (H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL) != 0)
        abort(); /* a file, dataset, type or space dml left open */
    fz_remove("x.h5");
    return 0;
}
