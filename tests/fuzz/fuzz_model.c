/* libFuzzer harness for the model reader: the input is written to a temporary file and opened
 * with dml_model_open, as a service would open it; a model that opens encodes one row, which
 * must come out finite, and after it no HDF5 object may be left open (libhdf5's own leaks on
 * damaged files are suppressed: tests/fuzz/fuzzutil.c). Seeds: tests/fuzz/corpus/model/ (small
 * real model files). */
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "dml.h"
#include "tests/fuzz/fuzzutil.h"

/* libhdf5's H5C_protect asks for what a damaged cache entry's size says (2.7 GB for one found
 * here, tests/fuzz/corpus/model/model-cache-2.7GB) and never touches most of it. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_allow_untouched_allocations(argc, argv);
    return 0;
}

static char path[64];

static void remove_file(void)
{
    unlink(path);
}

/* An opened model must embed a finite row finitely. */
static void encode_one_row(dml_model *m)
{
    int d_in = dml_model_dim_in(m), dim = dml_model_dim_out(m);
    float *x = calloc((size_t)d_in, sizeof(float)), *y = calloc((size_t)dim, sizeof(float));
    for (int j = 0; x && j < d_in; j++)
        x[j] = (float)(j % 7) - 3.0f;
    if (x && y && dml_model_encode(m, x, 1, y) == DML_OK)
        for (int j = 0; j < dim; j++)
            if (!isfinite(y[j]))
                abort();
    free(x);
    free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz_model_%ld.h5", (long)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort(); /* the harness's own failure, not the reader's */
    char msg[512];
    dml_model *m = NULL;
    if (dml_model_open(path, &m, msg, sizeof msg) != DML_OK) {
        if (m || !msg[0])
            abort(); /* a failed open returns no handle and says why */
    } else {
        encode_one_row(m);
        dml_model_free(m);
    }
    if (H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_ALL) != 0)
        abort(); /* a file, group, attribute or dataset dml left open */
    return 0;
}
