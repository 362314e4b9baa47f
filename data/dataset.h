/* An in-memory dataset: float rows, optional integer labels, optional second view.
 *
 * Subsets (validation splits, k labels per class, sampler pools) are arrays of row indices
 * into one dataset (data/split.h); dml_dataset_subset makes a copy when a separate dataset
 * is wanted (evaluation on the validation rows, for instance). */
#ifndef DML_DATA_DATASET_H
#define DML_DATA_DATASET_H

#include <stdint.h>
#include "data/error.h"

/* Labels above this are refused as absurd (a label column of ids, not classes). */
#define DML_MAX_LABEL 1000000

struct dml_row_cache;

typedef struct dml_dataset {
    int n, d;
    float *x;         /* [n, d], or NULL when the rows stay in the file (cache below) */
    int32_t *y;       /* [n] labels in 0..DML_MAX_LABEL, or NULL when unlabelled */
    int n_classes;    /* max label + 1; 0 when unlabelled */
    int d_b;          /* second view (pairs from a file: anchor in x, positive in x_b), else 0 */
    float *x_b;       /* [n, d_b] or NULL */
    int from_bytes;   /* x was read from bytes (IDX, uint8 arrays): values 0..255 */
    int from_bytes_b; /* the same for x_b */
    /* The values as the file stores them: "uint8", "int32", "float32", "float64" or "text"
     * (CSV); a static string, NULL when not read from a file. What a model expects as input
     * scale (data/scale.h) is told from it. */
    const char *value_type, *value_type_b;
    char source[512]; /* the spec it was read from */
    /* Set (and x NULL): the rows are read from the file in blocks as they are gathered (training
     * on data larger than memory); not owned. Only the gather functions read rows then. */
    struct dml_row_cache *cache;
    /* Set: x and x_b are another's memory (dml_train's caller's arrays), only read: neither
     * written nor freed here. dml_dataset_own copies them before anything writes them. */
    int borrowed;
} dml_dataset;

/* Reads a data SPEC:
 *   file.h5 / file.hdf5      dataset X [n, d] (float32, float64 or uint8), optional integer y [n];
 *                            else anchor + positive [n, *] (x and x_b, a paired file); else the
 *                            ann-benchmarks train set
 *   file.h5:/group/name      that dataset, labels from a sibling y in its group if present
 *                            (file.h5:/test: ann-benchmarks queries)
 *   *-images-idx3-ubyte[.gz] IDX bytes, labels from *-labels-idx1-ubyte[.gz] beside it if present
 *   fashion-mnist:train|test the Debian package dataset-fashion-mnist's copy
 *   file.npy                 float32, float64 or uint8 [n, d], C order; labels from a sibling
 *                            file.labels.npy (int32 or int64 [n]) if present
 *   file.fvecs|ivecs|bvecs   TEXMEX vectors, unlabelled
 *   file.csv                 numbers, the last column an integer label; a first line that is
 *                            not numeric is a header
 * Then validates: at least one row and one column, every value finite (a NaN or Inf is reported
 * with its 0-based row and column), labels in 0..DML_MAX_LABEL and one per row. Every error is
 * DML_ERR_DATA (DML_ERR_NOMEM when memory runs out) and names the file; a missing file is
 * "<path>: no such file". On error *ds is left empty (freeing it is harmless). */
dml_status dml_dataset_open(const char *spec, dml_dataset *ds, dml_error *err);
void dml_dataset_free(dml_dataset *ds);

/* A borrowed dataset's x and x_b replaced by copies it owns; nothing when it owns them. On
 * DML_ERR_NOMEM it is left as it was. */
dml_status dml_dataset_own(dml_dataset *ds, dml_error *err);

/* A dataset over a caller's rows x[n, d] (and x_b[n, d_b], or NULL), borrowed: dml_dataset_own
 * copies them before anything writes them, so the caller's arrays are never written. Labels
 * y[n] (or NULL) are narrowed into a copy; every value must be finite. name (as "<x>") is the
 * source its errors name: DML_ERR_USAGE for no rows or a width < 1, DML_ERR_DATA, DML_ERR_NOMEM. */
dml_status dml_dataset_borrow(const float *x, int64_t n, int d, const int64_t *y, const float *x_b,
                              int d_b, const char *name, dml_dataset *ds, dml_error *err);

/* Uninitialised storage for n rows of width d (and labels when labelled); other fields zero. */
dml_status dml_dataset_alloc(dml_dataset *ds, int n, int d, int labelled, dml_error *err);

/* A copy of rows[n] of src (labels and second view included); n_classes, from_bytes and source
 * stay those of src, so class ids keep their meaning. */
dml_status dml_dataset_subset(const dml_dataset *src, const int32_t *rows, int n, dml_dataset *out,
                              dml_error *err);

/* The two-view task of pairs: halves. out->x holds the first d/2 features of each row of src
 * (the anchor view), out->x_b the remaining d - d/2 (the positive view); labels are copied.
 * src must have one view and d >= 2. */
dml_status dml_dataset_halves(const dml_dataset *src, dml_dataset *out, dml_error *err);

/* Batch inputs: out[n, d] = the rows idx[n] of x, copied as they are (no normalisation), or
 * from the cache (a read failure is kept there: dml_row_cache_status). */
void dml_dataset_gather(float *out, const dml_dataset *ds, const int32_t *idx, int n);
/* The same from the second view: out[n, d_b]. */
void dml_dataset_gather_b(float *out, const dml_dataset *ds, const int32_t *idx, int n);
/* out[n] = the labels of the rows idx[n]; ds must be labelled. */
void dml_dataset_gather_labels(int32_t *out, const dml_dataset *ds, const int32_t *idx, int n);

#endif
