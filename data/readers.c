/* The table of data readers dml_dataset_open probes, in order: the first whose probe takes a
 * spec reads it. HDF5 comes first, as "file.h5:/group/x.npy" names a dataset in an HDF5 file. */
#include <stdio.h>
#include <string.h>

#include "data/readers.h"

const dml_reader *const dml_readers[] = {
    &dml_reader_hdf5, &dml_reader_npy, &dml_reader_vecs, &dml_reader_csv, &dml_reader_idx, NULL,
};

int dml_reader_probe_suffix(const char *spec, const char *suffix, char *file, size_t n)
{
    size_t ls = strlen(spec), lx = strlen(suffix);
    if (ls < lx || strcmp(spec + ls - lx, suffix) != 0)
        return 0;
    snprintf(file, n, "%s", spec);
    return 1;
}
