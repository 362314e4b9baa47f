/* dml_rows: a data SPEC read in ranges through its reader's stream function, or read whole and
 * served from memory where the format has none. */
#include <stdlib.h>
#include <string.h>

#include "data/readers.h"
#include "data/rows.h"

static dml_status check_streamed(dml_rows *r, dml_error *err)
{
    if (r->n < 1 || r->d < 1)
        return dml_error_set(err, DML_ERR_DATA, r->file, 0, 0,
                             "the data set is empty (%d rows of width %d)", r->n, r->d);
    r->n_classes = dml_labels_classes(r->y, r->n);
    return DML_OK;
}

dml_status dml_rows_try_stream(const char *spec, dml_rows *r, dml_error *err)
{
    memset(r, 0, sizeof *r);
    snprintf(r->source, sizeof r->source, "%s", spec);
    const dml_reader *reader;
    char inner[1024];
    dml_status st = dml_reader_find(spec, &reader, r->file, sizeof r->file, inner, sizeof inner, err);
    if (st == DML_OK && reader->stream)
        st = reader->stream(r->file, *inner ? inner : NULL, r, err);
    if (st == DML_OK && r->read) {
        r->streamed = 1;
        st = check_streamed(r, err);
    }
    if (st != DML_OK || !r->streamed)
        dml_rows_close(r); /* a stream function that declined may have read labels */
    return st;
}

dml_status dml_rows_open(const char *spec, dml_rows *r, dml_error *err)
{
    dml_status st = dml_rows_try_stream(spec, r, err);
    if (st != DML_OK || r->streamed)
        return st;
    snprintf(r->source, sizeof r->source, "%s", spec);
    if ((st = dml_dataset_open(spec, &r->whole, err)) != DML_OK) {
        dml_rows_close(r);
        return st;
    }
    r->n = r->whole.n;
    r->d = r->whole.d;
    r->y = r->whole.y;
    r->n_classes = r->whole.n_classes;
    r->from_bytes = r->whole.from_bytes;
    r->value_type = r->whole.value_type;
    return DML_OK;
}

void dml_rows_close(dml_rows *r)
{
    if (r->close && r->impl)
        r->close(r->impl);
    if (!r->whole.x)
        free(r->y); /* else the whole data set's */
    dml_dataset_free(&r->whole);
    memset(r, 0, sizeof *r);
}

dml_status dml_rows_read(dml_rows *r, int lo, int count, float *x, dml_error *err)
{
    DML_ASSERT(lo >= 0 && count >= 0 && lo <= r->n - count);
    if (!r->streamed) {
        memcpy(x, r->whole.x + (size_t)lo * (size_t)r->d, (size_t)count * (size_t)r->d * sizeof *x);
        return DML_OK;
    }
    dml_status st = r->read(r, lo, count, x, err);
    return st != DML_OK ? st : dml_check_finite(r->source, x, count, r->d, lo, "data", err);
}

dml_status dml_rows_take(dml_rows *r, dml_dataset *ds, dml_error *err)
{
    dml_status st = DML_OK;
    if (!r->streamed) {
        *ds = r->whole;
        memset(&r->whole, 0, sizeof r->whole);
        r->y = NULL; /* now ds's */
    } else if ((st = dml_dataset_alloc(ds, r->n, r->d, 0, err)) == DML_OK &&
               (st = dml_rows_read(r, 0, r->n, ds->x, err)) == DML_OK) {
        ds->y = r->y;
        r->y = NULL;
        ds->n_classes = r->n_classes;
        ds->from_bytes = r->from_bytes;
        ds->value_type = r->value_type;
        snprintf(ds->source, sizeof ds->source, "%s", r->source);
    }
    if (st != DML_OK)
        dml_dataset_free(ds);
    dml_rows_close(r);
    return st;
}

const dml_dataset *dml_rows_whole(const dml_rows *r)
{
    return r->streamed ? NULL : &r->whole;
}

double dml_rows_bytes(const dml_rows *r)
{
    return (double)r->n * (double)r->d * sizeof(float);
}
