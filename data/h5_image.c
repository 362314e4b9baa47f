#include "data/h5_image.h"

#include <stdlib.h>

#include "data/fileio.h"

#define CORE_INCREMENT (1u << 20) /* the in-memory file grows by this much at a time */

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
        hid_t f = fapl >= 0 && H5Pset_fapl_core(fapl, CORE_INCREMENT, 0) >= 0
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
