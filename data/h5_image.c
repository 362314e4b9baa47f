#include "data/h5_image.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/fileio.h"

#define CORE_INCREMENT (1u << 20) /* the in-memory file grows by this much at a time */

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
