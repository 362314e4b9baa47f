/* IDX files (MNIST, Fashion-MNIST): magic bytes 0, 0, a type code and the number of dimensions,
 * then one big-endian uint32 size per dimension and the raw values. Only unsigned bytes (type
 * 0x08) occur in these sets. zlib reads .gz and plain files alike. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/readers.h"

#define IDX_UBYTE 0x08
#define IDX_MAX_DIMS 4

typedef struct idx_file {
    int ndim;
    uint32_t dims[IDX_MAX_DIMS];
    size_t rows, cols; /* dims[0] and the product of the others */
    uint8_t *values;   /* [rows * cols] */
} idx_file;

static uint32_t be32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* gzread in pieces (its length is an unsigned int); returns the bytes read, or -1 on error. */
static long long read_all(gzFile gz, uint8_t *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        size_t want = n - done < (1u << 30) ? n - done : (1u << 30);
        int got = gzread(gz, buf + done, (unsigned)want);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        done += (size_t)got;
    }
    return (long long)done;
}

/* The n values after the header into a new *out. The buffer grows with what the file holds
 * (from 1 MiB, doubling), so a header promising gigabytes in a short file costs no more memory
 * than the file. Returns the bytes read, -1 on a read error, -2 when out of memory. */
static long long read_values(gzFile gz, size_t n, uint8_t **out)
{
    size_t cap = n < (1u << 20) ? n : (1u << 20), done = 0;
    uint8_t *buf = malloc(cap ? cap : 1);
    while (buf && done < n) {
        long long got = read_all(gz, buf + done, cap - done);
        if (got < 0) {
            free(buf);
            return -1;
        }
        done += (size_t)got;
        if (done < cap)
            break; /* the end of the file */
        if (done < n) {
            size_t grown = cap > n / 2 ? n : 2 * cap;
            uint8_t *p = realloc(buf, grown);
            if (!p)
                free(buf);
            buf = p;
            cap = grown;
        }
    }
    if (!buf)
        return -2;
    *out = buf;
    return (long long)done;
}

static dml_status gz_failure(gzFile gz, const char *path, const char *what, dml_error *err)
{
    int code;
    const char *msg = gzerror(gz, &code);
    return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot read the %s: %s", what,
                         code != Z_OK && msg ? msg : "read error");
}

/* Images want ndim >= 2 (rows, then the feature dimensions), labels ndim == 1. */
static dml_status read_idx_file(const char *path, int labels, idx_file *f, dml_error *err)
{
    memset(f, 0, sizeof *f);
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot open the file");
    uint8_t head[4 * (1 + IDX_MAX_DIMS)];
    dml_status st = DML_OK;
    long long got = read_all(gz, head, 4);
    if (got < 0) {
        st = gz_failure(gz, path, "header", err);
        goto done;
    }
    if (got != 4 || head[0] != 0 || head[1] != 0) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "not an IDX file (bad magic number)");
        goto done;
    }
    if (head[2] != IDX_UBYTE) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "IDX data type 0x%02X: only unsigned bytes (0x08) are supported",
                           head[2]);
        goto done;
    }
    f->ndim = head[3];
    if (labels ? f->ndim != 1 : (f->ndim < 2 || f->ndim > IDX_MAX_DIMS)) {
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "an IDX %s file with %d dimensions: "
                           "expected %s", labels ? "labels" : "images", f->ndim,
                           labels ? "1" : "2 to 4 (rows, then the features)");
        goto done;
    }
    got = read_all(gz, head + 4, 4 * (size_t)f->ndim);
    if (got != 4 * f->ndim) {
        st = got < 0 ? gz_failure(gz, path, "header", err)
                     : dml_error_set(err, DML_ERR_DATA, path, 0, 0, "truncated IDX header");
        goto done;
    }
    f->cols = 1;
    int too_large = 0;
    for (int i = 0; i < f->ndim; i++) {
        f->dims[i] = be32(head + 4 + 4 * i);
        if (i > 0 && !too_large) {
            too_large = f->dims[i] && f->cols > INT_MAX / f->dims[i];
            f->cols *= f->dims[i]; /* each partial product stays at most INT_MAX */
        }
    }
    f->rows = f->dims[0];
    if (too_large || f->rows > INT_MAX || (f->cols && f->rows > SIZE_MAX / 4 / f->cols)) {
        st = too_large ? dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                       "IDX sizes too large (more than 2^31 values per row)")
                       : dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                       "IDX sizes too large (%zu x %zu)", f->rows, f->cols);
        goto done;
    }
    size_t total = f->rows * f->cols;
    got = read_values(gz, total, &f->values);
    if (got == -2)
        st = dml_error_set(err, DML_ERR_NOMEM, path, 0, 0, "out of memory for %zu bytes", total);
    else if (got < 0)
        st = gz_failure(gz, path, "values", err);
    else if ((size_t)got != total)
        st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                           "truncated: the header promises %zu bytes of values, the file has %lld",
                           total, got);
done:
    gzclose(gz);
    if (st != DML_OK) {
        free(f->values);
        f->values = NULL;
    }
    return st;
}

/* The labels file beside an images file: "images" -> "labels" and "idx3" -> "idx1" in the
 * file name (train-images-idx3-ubyte.gz -> train-labels-idx1-ubyte.gz), compressed or not.
 * 0 when the name has no such parts or no such file exists. */
static int labels_path(const char *images, char *out, size_t n)
{
    const char *base = strrchr(images, '/');
    base = base ? base + 1 : images;
    const char *img = strstr(base, "images"), *idx = strstr(base, "idx3-ubyte");
    if (!img || !idx || idx < img)
        return 0;
    char name[4096];
    snprintf(name, sizeof name, "%.*slabels%.*sidx1-ubyte", (int)(img - images), images,
             (int)(idx - img - 6), img + 6);
    static const char *const tails[] = {".gz", ""};
    for (int i = 0; i < 2; i++) {
        if (snprintf(out, n, "%s%s", name, tails[i]) < (int)n && dml_file_exists(out))
            return 1;
    }
    return 0;
}

static dml_status read_idx(const char *images_path, const char *inner, dml_dataset *ds,
                           dml_error *err)
{
    (void)inner; /* one data set per file */
    idx_file img, lab = {0};
    dml_status st = read_idx_file(images_path, 0, &img, err);
    if (st != DML_OK)
        return st;
    char lpath[4096];
    int labelled = labels_path(images_path, lpath, sizeof lpath);
    if (labelled && (st = read_idx_file(lpath, 1, &lab, err)) != DML_OK)
        goto done;
    if (labelled && lab.rows != img.rows) {
        st = dml_error_set(err, DML_ERR_DATA, lpath, 0, 0, "%zu labels for the %zu images of %s",
                           lab.rows, img.rows, images_path);
        goto done;
    }
    if ((st = dml_dataset_alloc(ds, (int)img.rows, (int)img.cols, labelled, err)) != DML_OK)
        goto done;
    for (size_t i = 0; i < img.rows * img.cols; i++)
        ds->x[i] = (float)img.values[i];
    for (size_t i = 0; labelled && i < img.rows; i++)
        ds->y[i] = lab.values[i];
    ds->from_bytes = 1;
    ds->value_type = "uint8";
done:
    free(img.values);
    free(lab.values);
    return st;
}

static int probe_idx(const char *spec, char *file, size_t n)
{
    return dml_reader_probe_suffix(spec, "idx3-ubyte", file, n) ||
           dml_reader_probe_suffix(spec, "idx3-ubyte.gz", file, n);
}

const dml_reader dml_reader_idx = {"an IDX file (*-idx3-ubyte[.gz])", probe_idx, read_idx, NULL};
