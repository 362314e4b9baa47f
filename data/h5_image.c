#include "data/h5_image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/fileio.h"

#define CORE_INCREMENT (1u << 20) /* the in-memory file grows by this much at a time */
/* A streamed file's metadata is allocated in blocks this large: the first one, at the start of
 * the file, holds every object header and attribute, so the image stays ahead of the data. */
#define META_BLOCK (64u << 10)

#define ROT(x, k) (((x) << (k)) | ((x) >> (32 - (k))))

/* Bob Jenkins' lookup3 hash (hashlittle, byte by byte, initval 0): HDF5's metadata checksum. */
static uint32_t lookup3(const uint8_t *k, size_t n)
{
    uint32_t a, b, c;
    a = b = c = 0xdeadbeefu + (uint32_t)n;
    for (; n > 12; n -= 12, k += 12) {
        a += k[0] + ((uint32_t)k[1] << 8) + ((uint32_t)k[2] << 16) + ((uint32_t)k[3] << 24);
        b += k[4] + ((uint32_t)k[5] << 8) + ((uint32_t)k[6] << 16) + ((uint32_t)k[7] << 24);
        c += k[8] + ((uint32_t)k[9] << 8) + ((uint32_t)k[10] << 16) + ((uint32_t)k[11] << 24);
        a -= c; a ^= ROT(c, 4); c += b;
        b -= a; b ^= ROT(a, 6); a += c;
        c -= b; c ^= ROT(b, 8); b += a;
        a -= c; a ^= ROT(c, 16); c += b;
        b -= a; b ^= ROT(a, 19); a += c;
        c -= b; c ^= ROT(b, 4); b += a;
    }
    if (n == 0)
        return c;
    uint32_t *word[3] = {&a, &b, &c};
    for (size_t i = 0; i < n; i++)
        *word[i / 4] += (uint32_t)k[i] << (8 * (i % 4));
    c ^= b; c -= ROT(b, 14);
    a ^= c; a -= ROT(c, 11);
    b ^= a; b -= ROT(a, 25);
    c ^= b; c -= ROT(b, 16);
    a ^= c; a -= ROT(c, 4);
    b ^= a; b -= ROT(a, 14);
    c ^= b; c -= ROT(b, 24);
    return c;
}

/* libhdf5 1.10 clears the "open for writing" flags in the image of a version 2 or 3 superblock
 * but keeps the checksum of the flagged one, so the file would not open again: recompute it. */
static void fix_superblock(uint8_t *img, size_t n)
{
    static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (n < 12 || memcmp(img, sig, 8) != 0 || img[8] < 2)
        return;
    size_t len = 12 + 4 * (size_t)img[9]; /* then base, extension, EOF and root addresses */
    if (len + 4 > n)
        return;
    uint32_t sum = lookup3(img, len);
    for (int i = 0; i < 4; i++)
        img[len + (size_t)i] = (uint8_t)(sum >> (8 * i));
}

/* The EOF address a version 2 or 3 superblock records (little-endian, at 12 + 2 offsets). */
static uint64_t superblock_eof(const uint8_t *img, size_t n)
{
    size_t size = n > 9 ? img[9] : 0, at = 12 + 2 * size;
    uint64_t eof = 0;
    for (size_t i = 0; size <= 8 && at + size <= n && i < size; i++)
        eof |= (uint64_t)img[at + i] << (8 * i);
    return eof;
}

/* The image of the open in-memory file f (malloc'ed, *n bytes), or NULL. */
static void *image_of(hid_t f, size_t *n)
{
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        return NULL;
    ssize_t size = H5Fget_file_image(f, NULL, 0);
    void *buf = size > 0 ? malloc((size_t)size) : NULL;
    if (buf && H5Fget_file_image(f, buf, (size_t)size) != size) {
        free(buf);
        return NULL;
    }
    *n = (size_t)size;
    if (buf)
        fix_superblock(buf, *n);
    return buf;
}

dml_status dml_h5_write_atomic(const char *path, const char *what,
                               int (*fill)(hid_t file, const void *ctx), const void *ctx,
                               dml_error *err)
{
    void *image = NULL;
    size_t n = 0;
    int filled = 0;
    /* The in-memory file's name: not path, which the core driver would open (read-write) when
     * it exists, but the temporary name, which does not. */
    char name[4096];
    dml_tmp_path(path, name, sizeof name);
    H5E_BEGIN_TRY { /* our messages, not the HDF5 error stack */
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        /* HDF5 1.10's format: the superblock and the version-2 object headers carry checksums
         * that HDF5 verifies before parsing them, so a damaged file is refused, not parsed. */
        hid_t f = fapl >= 0 && H5Pset_fapl_core(fapl, CORE_INCREMENT, 0) >= 0 &&
                          H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) >= 0
                      ? H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)
                      : -1;
        filled = f >= 0 && fill(f, ctx);
        if (filled)
            image = image_of(f, &n);
        if (f >= 0)
            H5Fclose(f);
        if (fapl >= 0)
            H5Pclose(fapl);
    } H5E_END_TRY;
    if (!image)
        return dml_error_set(err, filled ? DML_ERR_NOMEM : DML_ERR_IO, path, 0, 0,
                             filled ? "out of memory for the %s's image" : "cannot write the %s",
                             what);
    dml_status st = dml_file_write_atomic(path, what, image, n, err);
    free(image);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Streamed files: the core driver builds the metadata only (its datasets' storage is allocated
 * but never written), the image is kept when the file closes, and the data follows in ranges. */

/* The in-memory file's buffer: libhdf5 allocates and grows it through these callbacks, and at
 * close hands it to image_free, which keeps it. H5Fclose, unlike H5Fflush, does not grow it to
 * the file's full size first. */
typedef struct kept_image {
    void *mem;
    size_t size; /* the bytes written so far: the core driver grows it to each write's end */
} kept_image;

static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    ((kept_image *)udata)->size = size;
    return malloc(size);
}

static void *image_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op,
                          void *udata)
{
    (void)op;
    (void)udata;
    return memcpy(dst, src, size);
}

static void *image_realloc(void *p, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    ((kept_image *)udata)->size = size;
    return realloc(p, size);
}

static herr_t image_free(void *p, H5FD_file_image_op_t op, void *udata)
{
    kept_image *k = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE)
        k->mem = p;
    else
        free(p);
    return 0;
}

static void *udata_copy(void *udata)
{
    return udata; /* every copy of the property list shares the one record */
}

static herr_t udata_free(void *udata)
{
    (void)udata;
    return 0;
}

int dml_h5_put_str(hid_t loc, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    hid_t s = H5Screate(H5S_SCALAR);
    int ok = t >= 0 && s >= 0 && H5Tset_size(t, strlen(value) + 1) >= 0 &&
             H5Tset_strpad(t, H5T_STR_NULLTERM) >= 0 && H5Tset_cset(t, H5T_CSET_UTF8) >= 0;
    hid_t a = ok ? H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT) : -1;
    ok = a >= 0 && H5Awrite(a, t, value) >= 0;
    if (a >= 0)
        H5Aclose(a);
    if (s >= 0)
        H5Sclose(s);
    if (t >= 0)
        H5Tclose(t);
    return ok;
}

int dml_h5_reserve(hid_t loc, const char *name, hid_t type, int rank, const hsize_t *dims)
{
    hid_t s = H5Screate_simple(rank, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = s >= 0 && dcpl >= 0 && H5Pset_layout(dcpl, H5D_CONTIGUOUS) >= 0 &&
                      H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0 &&
                      H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) >= 0
                  ? H5Dcreate2(loc, name, type, s, H5P_DEFAULT, dcpl, H5P_DEFAULT)
                  : -1;
    int ok = d >= 0 && H5Dclose(d) >= 0;
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (s >= 0)
        H5Sclose(s);
    return ok;
}

/* The metadata of the file fill builds (malloc'ed, *n bytes) and where each named dataset's
 * storage lies; NULL when libhdf5 failed. */
static void *build_streamed(const char *name, int (*fill)(hid_t file, const void *ctx),
                            const void *ctx, dml_h5_out *o, size_t *n)
{
    kept_image k = {NULL, 0};
    H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy, image_realloc, image_free,
                                      udata_copy, udata_free, &k};
    int ok = 0;
    H5E_BEGIN_TRY {
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        /* increment 1: the buffer holds exactly the bytes written, never the data's range */
        hid_t f = fapl >= 0 && H5Pset_fapl_core(fapl, 1, 0) >= 0 &&
                          H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110) >= 0 &&
                          H5Pset_meta_block_size(fapl, META_BLOCK) >= 0 &&
                          H5Pset_file_image_callbacks(fapl, &cb) >= 0
                      ? H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)
                      : -1;
        ok = f >= 0 && fill(f, ctx);
        for (int i = 0; ok && i < o->n; i++) {
            hid_t d = H5Lexists(f, o->name[i], H5P_DEFAULT) > 0
                          ? H5Dopen2(f, o->name[i], H5P_DEFAULT)
                          : -1;
            haddr_t at = d >= 0 ? H5Dget_offset(d) : HADDR_UNDEF;
            o->offset[i] = at == HADDR_UNDEF ? 0 : (uint64_t)at;
            o->bytes[i] = d >= 0 ? (uint64_t)H5Dget_storage_size(d) : 0;
            if (d >= 0)
                H5Dclose(d);
        }
        if (f >= 0 && H5Fclose(f) < 0)
            ok = 0;
        if (fapl >= 0)
            H5Pclose(fapl);
    } H5E_END_TRY;
    if (!ok) {
        free(k.mem);
        return NULL;
    }
    *n = k.size;
    return k.mem;
}

dml_status dml_h5_out_open(dml_h5_out *o, const char *path, const char *what,
                           int (*fill)(hid_t file, const void *ctx), const void *ctx,
                           dml_error *err)
{
    char name[4096];
    dml_tmp_path(path, name, sizeof name); /* as in dml_h5_write_atomic */
    size_t n = 0;
    uint8_t *image = build_streamed(name, fill, ctx, o, &n);
    if (!image)
        return dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the %s", what);
    fix_superblock(image, n);
    uint64_t eof = superblock_eof(image, n), first = eof;
    const char *why = eof < n ? "the image is longer than the file" : NULL;
    for (int i = 0; i < o->n; i++) {
        if (o->bytes[i] && (o->offset[i] + o->bytes[i] > eof || !o->offset[i]))
            why = "a dataset lies outside the file";
        if (o->bytes[i] && o->offset[i] < first)
            first = o->offset[i];
    }
    if (!why && n > first) /* metadata after the data: writing the data would overwrite it */
        why = "its metadata outgrew the block reserved for it";
    dml_status st = why ? dml_error_set(err, DML_ERR_IO, path, 0, 0, "cannot write the %s: %s",
                                        what, why)
                        : dml_file_out_open(&o->file, path, what, err);
    if (st == DML_OK) {
        dml_file_out_write(&o->file, image, n);
        dml_file_out_truncate(&o->file, eof); /* the data's range, a hole until written */
    }
    free(image);
    return st;
}

void dml_h5_out_write(dml_h5_out *o, int i, uint64_t at, const void *p, size_t n)
{
    DML_ASSERT(i >= 0 && i < o->n && at + n <= o->bytes[i]);
    dml_file_out_write_at(&o->file, p, n, o->offset[i] + at);
}

dml_status dml_h5_out_finish(dml_h5_out *o, int ok, dml_error *err)
{
    return dml_file_out_finish(&o->file, ok, err);
}
