/* model.h5 read and validated: every problem is DML_ERR_DATA naming the file and the object
 * (the layout, and what is checked before any tensor is read, are in model_file.h). */
#include "serve/model_file.h"

#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_WIDTH (1 << 24)
#define MAX_STR (1 << 20) /* bytes of one string attribute (the config is a few KB) */

/* Every helper is a no-op once an error is recorded, so the caller reads a whole group
 * and checks r->st once. */
typedef struct reader {
    const char *path;
    dml_error *err;
    dml_status st;
    int version;        /* the file's format_version: 1 only when reading for dml upgrade */
    hsize_t file_size;  /* no dataset or string can be larger, nor stored past it */
} reader;

static void fail(reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(reader *r, const char *fmt, ...)
{
    if (r->st != DML_OK)
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->st = dml_error_set(r->err, DML_ERR_DATA, r->path, 0, 0, "%s", msg);
}

/* 1 when loc holds a hard link called name, 0 when it holds nothing by that name. Soft and
 * external links are refused: a model file is read alone, never other files it names. */
static int has_link(reader *r, hid_t loc, const char *where, const char *name)
{
    if (r->st != DML_OK)
        return 0;
    htri_t has = H5Lexists(loc, name, H5P_DEFAULT);
    H5L_info_t info;
    if (has < 0 || (has > 0 && H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0))
        fail(r, "%s: cannot read the link '%s' (the file is damaged)", where, name);
    else if (has > 0 && info.type != H5L_TYPE_HARD)
        fail(r, "%s: '%s' is a soft or external link (a model file holds its objects itself)",
             where, name);
    return r->st == DML_OK && has > 0;
}

/* The stored type of an attribute is one dml writes for class cls. */
static int attr_type_ok(const reader *r, hid_t t, H5T_class_t cls)
{
    size_t size = H5Tget_size(t);
    if (H5Tget_class(t) != cls)
        return 0;
    if (cls == H5T_INTEGER)
        return size >= 1 && size <= 8;
    if (cls == H5T_FLOAT)
        return size == 4 || size == 8;
    htri_t vl = H5Tis_variable_str(t);
    if (vl != 0) /* format_version 1 wrote variable-length strings (read by dml upgrade only) */
        return vl > 0 && r->version == 1;
    return size >= 1 && size <= MAX_STR && size <= r->file_size;
}

/* An attribute holding one value of class cls, opened; -1 (and maybe an error) otherwise. */
static hid_t open_attr(reader *r, hid_t loc, const char *where, const char *name,
                       H5T_class_t cls, int required)
{
    if (r->st != DML_OK)
        return -1;
    htri_t has = H5Aexists(loc, name);
    if (has < 0) {
        fail(r, "%s: cannot read its attributes (the file is damaged)", where);
        return -1;
    }
    if (!has) {
        if (required)
            fail(r, "%s: the attribute '%s' is missing", where, name);
        return -1;
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : -1, s = a >= 0 ? H5Aget_space(a) : -1;
    int ok = t >= 0 && s >= 0 && attr_type_ok(r, t, cls) && H5Sget_simple_extent_npoints(s) == 1;
    if (t >= 0)
        H5Tclose(t);
    if (s >= 0)
        H5Sclose(s);
    if (!ok) {
        fail(r, "%s: the attribute '%s' is not a single %s", where, name,
             cls == H5T_STRING ? (r->version == 1 ? "string" : "fixed-length string")
             : cls == H5T_INTEGER ? "integer" : "number");
        if (a >= 0)
            H5Aclose(a);
        return -1;
    }
    return a;
}

/* A string attribute, malloc'ed; NULL when absent or on error. Fixed-length unless the file is
 * format_version 1. */
static char *get_str(reader *r, hid_t loc, const char *where, const char *name, int required)
{
    hid_t a = open_attr(r, loc, where, name, H5T_STRING, required);
    if (a < 0)
        return NULL;
    hid_t ft = H5Aget_type(a), mt = ft >= 0 ? H5Tcopy(ft) : -1;
    char *out = NULL;
    int no_memory = 0;
    if (mt >= 0 && H5Tis_variable_str(ft) > 0) {
        char *v = NULL;
        if (H5Aread(a, mt, &v) >= 0) {
            size_t n = v ? strlen(v) : 0;
            if ((out = malloc(n + 1)))
                memcpy(out, v ? v : "", n + 1);
            no_memory = !out;
        }
        H5free_memory(v);
    } else if (mt >= 0) {
        out = calloc(H5Tget_size(ft) + 1, 1);
        no_memory = !out;
        if (out && H5Aread(a, mt, out) < 0) {
            free(out);
            out = NULL;
        }
    }
    if (mt >= 0)
        H5Tclose(mt);
    if (ft >= 0)
        H5Tclose(ft);
    H5Aclose(a);
    if (no_memory && r->st == DML_OK)
        r->st = dml_error_set(r->err, DML_ERR_NOMEM, r->path, 0, 0,
                              "%s: out of memory for the attribute '%s'", where, name);
    else if (!out)
        fail(r, "%s: cannot read the attribute '%s'", where, name);
    return out;
}

static int64_t get_i64(reader *r, hid_t loc, const char *where, const char *name, int required)
{
    int64_t v = 0;
    hid_t a = open_attr(r, loc, where, name, H5T_INTEGER, required);
    if (a >= 0 && H5Aread(a, H5T_NATIVE_INT64, &v) < 0)
        fail(r, "%s: cannot read the attribute '%s'", where, name);
    if (a >= 0)
        H5Aclose(a);
    return v;
}

/* A positive integer attribute no larger than max. */
static int get_size(reader *r, hid_t loc, const char *where, const char *name, int64_t max)
{
    int64_t v = get_i64(r, loc, where, name, 1);
    if (r->st == DML_OK && (v < 1 || v > max))
        fail(r, "%s: %s = %lld is out of range (1..%lld)", where, name, (long long)v,
             (long long)max);
    return r->st == DML_OK ? (int)v : 0;
}

static hid_t open_group(reader *r, hid_t loc, const char *where, const char *name, int required)
{
    if (!has_link(r, loc, where, name)) {
        if (required)
            fail(r, "%s: the group '%s' is missing", where, name);
        return -1;
    }
    hid_t g = H5Gopen2(loc, name, H5P_DEFAULT);
    if (g < 0)
        fail(r, "%s: '%s' is not a group", where, name);
    return g;
}

/* Why dataset d (float32, of `bytes` bytes) is not stored as dml writes it, or NULL. Version 2:
 * one chunk with a Fletcher-32 checksum (HDF5 checks it on read); version 1: contiguous and
 * unfiltered. Either way no external files, and every byte inside the file. */
static const char *storage_problem(const reader *r, hid_t d, hid_t space, int rank,
                                   const hsize_t *want, hsize_t bytes)
{
    hid_t dcpl = H5Dget_create_plist(d);
    if (dcpl < 0)
        return "its creation properties cannot be read";
    H5D_layout_t layout = H5Pget_layout(dcpl);
    int n_filters = H5Pget_nfilters(dcpl), n_external = H5Pget_external_count(dcpl);
    hsize_t chunk[3] = {0, 0, 0}, size = 0, n_chunks = 0;
    haddr_t addr = HADDR_UNDEF;
    unsigned flags = 0, mask = 0;
    size_t n_cd = 0;
    int chunk_rank = layout == H5D_CHUNKED ? H5Pget_chunk(dcpl, 3, chunk) : 0;
    H5Z_filter_t filter = n_filters == 1 ? H5Pget_filter2(dcpl, 0, &flags, &n_cd, NULL, 0, NULL,
                                                          NULL)
                                         : H5Z_FILTER_ERROR;
    H5Pclose(dcpl);
    if (n_external != 0)
        return "it names external files";
    if (r->version == 1) {
        if (layout != H5D_CONTIGUOUS || n_filters != 0)
            return "version 1 stores contiguous, unfiltered data";
        addr = H5Dget_offset(d);
        size = H5Dget_storage_size(d);
    } else {
        int same = chunk_rank == rank;
        for (int i = 0; same && i < rank; i++)
            same = chunk[i] == want[i];
        if (layout != H5D_CHUNKED || !same || filter != H5Z_FILTER_FLETCHER32)
            return "version 2 stores one chunk with a Fletcher-32 checksum";
        if (H5Dget_num_chunks(d, space, &n_chunks) < 0 || n_chunks != 1 ||
            H5Dget_chunk_info(d, space, 0, NULL, &mask, &addr, &size) < 0 || mask != 0)
            return "its chunk cannot be located";
        bytes += 4; /* the checksum */
    }
    if (addr == HADDR_UNDEF || size != bytes)
        return "its storage has another size than its shape";
    if (addr > r->file_size || size > r->file_size - addr)
        return "its data lies past the end of the file (a truncated file?)";
    return NULL;
}

static void shape_text(char *buf, size_t len, int rank, const hsize_t *dims)
{
    buf[0] = '\0';
    for (int i = 0; i < rank && i < 3; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%llu", i ? ", " : "",
                 (unsigned long long)dims[i]);
}

/* A float dataset of exactly the given shape, every value finite, into a new buffer. Its type,
 * shape and storage are checked (against the file size too) before anything is allocated. */
static float *get_f32(reader *r, hid_t loc, const char *where, const char *name, int rank,
                      const hsize_t *want)
{
    char full[200];
    snprintf(full, sizeof full, "%s/%s", where, name);
    if (!has_link(r, loc, where, name)) {
        fail(r, "the dataset '%s' is missing", full);
        return NULL;
    }
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    hid_t s = d >= 0 ? H5Dget_space(d) : -1, t = d >= 0 ? H5Dget_type(d) : -1;
    hsize_t dims[3] = {0, 0, 0}, n = 1;
    int got = s >= 0 && H5Sget_simple_extent_type(s) == H5S_SIMPLE
                  ? H5Sget_simple_extent_ndims(s) : -1;
    if (got < 1 || got > 3 || H5Sget_simple_extent_dims(s, dims, NULL) != got)
        got = 0;
    int same = got == rank;
    for (int i = 0; i < rank; i++) {
        same &= dims[i] == want[i];
        n *= want[i]; /* each width is at most 2^24 and d * ksub too: no overflow */
    }
    const char *why = NULL;
    float *out = NULL;
    if (d < 0 || s < 0 || t < 0) {
        fail(r, "cannot open the dataset '%s' (the file is damaged)", full);
    } else if (H5Tequal(t, H5T_IEEE_F32LE) <= 0) {
        fail(r, "the dataset '%s' is not float32 (little-endian)", full);
    } else if (!same) {
        char shape[64], expect[64];
        shape_text(shape, sizeof shape, got, dims);
        shape_text(expect, sizeof expect, rank, want);
        fail(r, "the dataset '%s' is [%s] where its attributes give [%s]", full, shape, expect);
    } else if (n * sizeof(float) > r->file_size) {
        fail(r, "the dataset '%s' needs %llu bytes, more than the whole file (%llu)", full,
             (unsigned long long)(n * sizeof(float)), (unsigned long long)r->file_size);
    } else if ((why = storage_problem(r, d, s, rank, want, n * sizeof(float)))) {
        fail(r, "the dataset '%s' is not stored as dml writes it: %s", full, why);
    } else if (!(out = malloc(n * sizeof(float)))) {
        r->st = dml_error_set(r->err, DML_ERR_NOMEM, r->path, 0, 0, "out of memory for '%s'", full);
    } else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
        fail(r, "cannot read the dataset '%s' (damaged: its checksum does not match)", full);
    } else {
        for (size_t i = 0; i < n && r->st == DML_OK; i++)
            if (!isfinite(out[i]))
                fail(r, "the dataset '%s' holds a non-finite value at flat index %zu", full, i);
    }
    if (t >= 0)
        H5Tclose(t);
    if (s >= 0)
        H5Sclose(s);
    if (d >= 0)
        H5Dclose(d);
    if (r->st != DML_OK) {
        free(out);
        out = NULL;
    }
    return out;
}

static int activation_of(const char *s, dml_activation *a)
{
    static const dml_activation all[] = {DML_ACT_NONE, DML_ACT_RELU, DML_ACT_LEAKY_RELU,
                                         DML_ACT_TANH, DML_ACT_GELU, DML_ACT_SIGMOID};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, dml_activation_name(all[i]))) {
            *a = all[i];
            return 1;
        }
    return 0;
}

static double get_f64(reader *r, hid_t loc, const char *where, const char *name, int required)
{
    double v = NAN;
    hid_t a = open_attr(r, loc, where, name, H5T_FLOAT, required);
    if (a >= 0 && H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0)
        fail(r, "%s: cannot read the attribute '%s'", where, name);
    if (a >= 0)
        H5Aclose(a);
    return v;
}

/* 1 when s is one of names[n]. */
static int one_of(const char *s, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i]))
            return 1;
    return 0;
}

/* The input scale the tower was trained on (data/scale.h): optional, files before it have none
 * (mode "" then). */
static void get_scale(reader *r, hid_t g, const char *gwhere, dml_input_scale *s)
{
    static const char *const modes[] = {"none", "unit", "standardize"};
    static const char *const types[] = {"uint8", "int32", "float32", "float64", "text"};
    memset(s, 0, sizeof *s);
    s->min = s->max = NAN;
    char *mode = get_str(r, g, gwhere, "mode", 0);
    char *type = mode ? get_str(r, g, gwhere, "source_type", 0) : NULL;
    if (mode && !one_of(mode, modes, 3))
        fail(r, "%s: mode '%s' is unknown (expected none, unit or standardize)", gwhere, mode);
    else if (type && !one_of(type, types, 5))
        fail(r, "%s: source_type '%s' is unknown (expected uint8, int32, float32, float64 or "
                "text)", gwhere, type);
    double lo = mode ? get_f64(r, g, gwhere, "source_min", 0) : NAN;
    double hi = !isnan(lo) ? get_f64(r, g, gwhere, "source_max", 1) : NAN;
    if (r->st == DML_OK && !isnan(lo) && !(lo <= hi && isfinite(lo) && isfinite(hi)))
        fail(r, "%s: source_min %g and source_max %g are not a range", gwhere, lo, hi);
    if (r->st == DML_OK && mode) {
        snprintf(s->mode, sizeof s->mode, "%s", mode);
        snprintf(s->type, sizeof s->type, "%s", type ? type : "");
        s->min = lo;
        s->max = hi;
    }
    free(mode);
    free(type);
}

static void get_norm(reader *r, hid_t tower, const char *where, int dim_in, dml_input_norm *norm,
                     dml_input_scale *scale)
{
    char gwhere[64];
    snprintf(gwhere, sizeof gwhere, "%s/input_norm", where);
    hid_t g = open_group(r, tower, where, "input_norm", 0);
    char *kind = g >= 0 ? get_str(r, g, gwhere, "kind", 1) : NULL;
    if (kind && !strcmp(kind, "standardize")) {
        hsize_t dims[1] = {(hsize_t)dim_in};
        norm->mean = get_f32(r, g, gwhere, "mean", 1, dims);
        norm->std = get_f32(r, g, gwhere, "std", 1, dims);
        for (int j = 0; r->st == DML_OK && j < dim_in; j++)
            if (!(norm->std[j] > 0.0f))
                fail(r, "%s/std[%d] = %g: a standard deviation must be positive", gwhere, j,
                     norm->std[j]);
        norm->d = dim_in;
    } else if (kind && strcmp(kind, "none") != 0) {
        fail(r, "%s: kind '%s' is unknown (expected none or standardize)", gwhere,
             DML_SHOWN(kind));
    }
    free(kind);
    if (g >= 0 && scale)
        get_scale(r, g, gwhere, scale);
    if (g >= 0)
        H5Gclose(g);
}

/* The activation after layer i: one shared by every hidden layer (dml's MLP), none after the
 * last. */
static void check_activation(reader *r, hid_t g, const char *where, int i, dml_mlp *m)
{
    char *s = get_str(r, g, where, "activation", 1);
    dml_activation a = DML_ACT_NONE;
    if (s && !activation_of(s, &a))
        fail(r, "%s: activation '%s' is unknown (expected relu, leaky_relu, tanh, gelu, sigmoid "
                "or none)", where, DML_SHOWN(s));
    else if (s && i + 1 == m->n_layers && a != DML_ACT_NONE)
        fail(r, "%s: the last layer's activation must be none, not '%s' (output_norm applies "
                "after it)", where, s);
    else if (s && i > 0 && i + 1 < m->n_layers && a != m->act)
        fail(r, "%s: activation '%s' differs from the first layer's '%s' (every hidden layer "
                "shares one)", where, s, dml_activation_name(m->act));
    else if (s && i == 0 && m->n_layers > 1)
        m->act = a;
    free(s);
    hid_t at = a == DML_ACT_LEAKY_RELU ? open_attr(r, g, where, "negative_slope", H5T_FLOAT, 0)
                                       : -1;
    if (at >= 0) {
        float slope = 0.0f;
        if (H5Aread(at, H5T_NATIVE_FLOAT, &slope) < 0)
            fail(r, "%s: cannot read the attribute 'negative_slope'", where);
        else if (slope != DML_LEAKY_SLOPE)
            fail(r, "%s: negative_slope %g is not supported (dml's leaky_relu uses %g)", where,
                 slope, DML_LEAKY_SLOPE);
        H5Aclose(at);
    }
}

static void get_layer(reader *r, hid_t tower, const char *where, int i, int in_expect,
                      dml_mlp *m)
{
    char name[32], lwhere[64];
    snprintf(name, sizeof name, "layer_%03d", i);
    snprintf(lwhere, sizeof lwhere, "%s/%s", where, name);
    hid_t g = open_group(r, tower, where, name, 1);
    if (g < 0)
        return;
    int in = get_size(r, g, lwhere, "in_features", MAX_WIDTH);
    int out = get_size(r, g, lwhere, "out_features", MAX_WIDTH);
    if (r->st == DML_OK && in != in_expect)
        fail(r, "%s: in_features = %d, but the layer before outputs %d", lwhere, in, in_expect);
    check_activation(r, g, lwhere, i, m);
    dml_linear *l = &m->layers[i];
    hsize_t wd[2] = {(hsize_t)out, (hsize_t)in}, bd[1] = {(hsize_t)out};
    l->w.data = get_f32(r, g, lwhere, "weight", 2, wd);
    l->b.data = get_f32(r, g, lwhere, "bias", 1, bd);
    l->w.rows = out;
    l->w.cols = in;
    l->b.rows = 1;
    l->b.cols = out;
    H5Gclose(g);
}

static void get_output_norm(reader *r, hid_t tower, const char *where, dml_mlp *m)
{
    char gwhere[64];
    snprintf(gwhere, sizeof gwhere, "%s/output_norm", where);
    hid_t g = open_group(r, tower, where, "output_norm", 1);
    char *kind = g >= 0 ? get_str(r, g, gwhere, "kind", 1) : NULL;
    if (kind && !strcmp(kind, "l2"))
        m->output = DML_OUTPUT_L2;
    else if (kind && !strcmp(kind, "tanh"))
        m->output = DML_OUTPUT_TANH;
    else if (kind && strcmp(kind, "none") != 0)
        fail(r, "%s: kind '%s' is unknown (expected none, l2 or tanh)", gwhere,
             DML_SHOWN(kind));
    free(kind);
    if (g >= 0)
        H5Gclose(g);
}

/* One tower (/encoder, /decoder or /encoder_b) into m and, when norm is given, its input
 * normalisation. Parameters get no gradient buffers: they are frozen, an inference net. */
static void get_tower(reader *r, hid_t file, const char *name, dml_mlp *m, dml_input_norm *norm,
                      dml_input_scale *scale)
{
    char where[32];
    snprintf(where, sizeof where, "/%s", name);
    hid_t t = open_group(r, file, "/", name, 1);
    if (t < 0)
        return;
    char *arch = get_str(r, t, where, "architecture", 1);
    if (arch && strcmp(arch, "mlp") != 0)
        fail(r, "%s: architecture '%s' is unknown (expected mlp)", where, DML_SHOWN(arch));
    free(arch);
    int dim_in = get_size(r, t, where, "input_dim", MAX_WIDTH);
    int dim_out = get_size(r, t, where, "output_dim", MAX_WIDTH);
    int n_layers = get_size(r, t, where, "num_layers", DML_MODEL_MAX_LAYERS);
    if (r->st == DML_OK && !(m->layers = calloc((size_t)n_layers, sizeof *m->layers)))
        r->st = dml_error_set(r->err, DML_ERR_NOMEM, r->path, 0, 0, "out of memory for %s", where);
    if (r->st == DML_OK)
        m->n_layers = m->n_frozen = n_layers;
    for (int i = 0; r->st == DML_OK && i < n_layers; i++)
        get_layer(r, t, where, i, i ? m->layers[i - 1].w.rows : dim_in, m);
    if (r->st == DML_OK && dml_mlp_dim_out(m) != dim_out)
        fail(r, "%s: output_dim = %d, but the last layer outputs %d", where, dim_out,
             dml_mlp_dim_out(m));
    get_output_norm(r, t, where, m);
    if (norm)
        get_norm(r, t, where, dim_in, norm, scale);
    H5Gclose(t);
}

static void get_pq(reader *r, hid_t file, int dim, dml_pq *pq)
{
    hid_t g = open_group(r, file, "/", "pq", 0);
    if (g < 0)
        return;
    int d = get_size(r, g, "/pq", "d", MAX_WIDTH), m = get_size(r, g, "/pq", "M", MAX_WIDTH);
    int nbits = get_size(r, g, "/pq", "nbits", 16);
    int ksub = get_size(r, g, "/pq", "ksub", 1 << 16), dsub = get_size(r, g, "/pq", "dsub", MAX_WIDTH);
    if (r->st == DML_OK && d != dim)
        fail(r, "/pq: d = %d, but the encoder outputs %d", d, dim);
    else if (r->st == DML_OK && d % m != 0)
        fail(r, "/pq: d = %d is not divisible by M = %d", d, m);
    else if (r->st == DML_OK && (ksub != 1 << nbits || dsub != d / m))
        fail(r, "/pq: ksub = %d and dsub = %d, but nbits = %d and d / M give %d and %d", ksub,
             dsub, nbits, 1 << nbits, d / m);
    /* The centroids first: their storage is checked against the file before dml_pq_init
     * allocates d * ksub floats. */
    hsize_t dims[3] = {(hsize_t)m, (hsize_t)ksub, (hsize_t)dsub};
    float *c = get_f32(r, g, "/pq", "centroids", 3, dims);
    if (r->st == DML_OK)
        r->st = dml_pq_init(pq, d, m, nbits, r->err);
    if (r->st == DML_OK) {
        free(pq->centroids);
        pq->centroids = c;
    } else {
        free(c);
    }
    H5Gclose(g);
}

static void get_training(reader *r, hid_t file, dml_model_file *mf)
{
    hid_t g = open_group(r, file, "/", "training", 0);
    if (g < 0)
        return;
    mf->seed = get_i64(r, g, "/training", "seed", 0);
    mf->steps = get_i64(r, g, "/training", "steps", 0);
    mf->config_yaml = get_str(r, g, "/training", "config", 0);
    mf->metrics_json = get_str(r, g, "/training", "final_metrics", 0);
    H5Gclose(g);
}

/* The root: format, version, model type (which towers exist) and metric. */
static void get_root(reader *r, hid_t f, dml_model_file *mf, int upgrade)
{
    /* The superblock first: without its checksum (a file of an earlier dml, or not of dml) the
     * object headers have none either, so nothing more is parsed, not even format_version. */
    H5F_info2_t info;
    if (H5Fget_info2(f, &info) < 0)
        fail(r, "cannot read the HDF5 superblock (the file is damaged)");
    else if (info.super.version < 2 && !upgrade)
        fail(r, "not a dml model file of format_version %d (its HDF5 superblock is version %u, "
                "without a checksum): a model.h5 of an earlier dml is rewritten by `dml upgrade "
                "%s`", DML_MODEL_FORMAT_VERSION, info.super.version, r->path);
    /* The version (an integer, safe to read) comes next: it decides how strings are read. */
    int64_t version = get_i64(r, f, "/", "format_version", 0);
    /* Models of format_version 1 have no superblock checksum (refused above, pointing to dml
     * upgrade); checkpoints written before their format became a fixed-length string do. */
    if (r->st == DML_OK && version == 1 && !upgrade)
        fail(r, "not a dml model file: format_version 1 with a superblock checksum, which no "
                "model.h5 has; a run's checkpoint.h5 has both, and `dml train CONFIG --resume` "
                "reads it");
    r->version = (int)(version == 1 ? 1 : DML_MODEL_FORMAT_VERSION);
    char *format = get_str(r, f, "/", "format", 0);
    if (r->st == DML_OK && (!format || strcmp(format, DML_MODEL_FORMAT) != 0))
        fail(r, "not a dml model file: format is '%s', expected '%s'",
             format ? DML_SHOWN(format) : "(none)", DML_MODEL_FORMAT);
    free(format);
    if (r->st == DML_OK && version != 1 && version != DML_MODEL_FORMAT_VERSION)
        fail(r, "format_version %lld is not supported (this dml reads %d, and 1 through dml "
                "upgrade)", (long long)version, DML_MODEL_FORMAT_VERSION);
    int has_dec = has_link(r, f, "/", "decoder");
    int has_b = has_link(r, f, "/", "encoder_b");
    mf->net.type = has_b ? DML_NET_DUAL : has_dec ? DML_NET_AUTOENCODER : DML_NET_MLP;
    char *type = get_str(r, f, "/", "model_type", 0);
    if (has_dec && has_b)
        fail(r, "the file has both /decoder and /encoder_b: a model is an autoencoder or a dual "
                "encoder, not both");
    else if (type && strcmp(type, dml_model_file_type_name(mf->net.type)) != 0)
        fail(r, "model_type is '%s', but the groups present make it '%s'", DML_SHOWN(type),
             dml_model_file_type_name(mf->net.type));
    free(type);
    char *metric = get_str(r, f, "/", "metric", 0);
    if (metric && strcmp(metric, "l2") != 0 && strcmp(metric, "inner_product") != 0)
        fail(r, "metric '%s' is unknown (expected l2 or inner_product)", DML_SHOWN(metric));
    snprintf(mf->metric, sizeof mf->metric, "%s", metric && r->st == DML_OK ? metric : "l2");
    free(metric);
}

static void get_all(reader *r, hid_t f, dml_model_file *mf, int upgrade)
{
    dml_net *net = &mf->net;
    get_root(r, f, mf, upgrade);
    get_tower(r, f, "encoder", &net->encoder, &mf->norm, &mf->scale);
    if (net->type == DML_NET_AUTOENCODER) {
        dml_input_norm none = {0};
        get_tower(r, f, "decoder", &net->decoder, &none, NULL);
        if (r->st == DML_OK && none.d)
            fail(r, "/decoder/input_norm: a decoder takes embeddings, not normalised inputs");
        dml_input_norm_free(&none);
        if (r->st == DML_OK && (dml_mlp_dim_in(&net->decoder) != dml_mlp_dim_out(&net->encoder) ||
                                dml_mlp_dim_out(&net->decoder) != dml_mlp_dim_in(&net->encoder)))
            fail(r, "/decoder maps %d -> %d, but the encoder maps %d -> %d",
                 dml_mlp_dim_in(&net->decoder), dml_mlp_dim_out(&net->decoder),
                 dml_mlp_dim_in(&net->encoder), dml_mlp_dim_out(&net->encoder));
    } else if (net->type == DML_NET_DUAL) {
        get_tower(r, f, "encoder_b", &net->encoder_b, &mf->norm_b, &mf->scale_b);
        if (r->st == DML_OK && dml_mlp_dim_out(&net->encoder_b) != dml_mlp_dim_out(&net->encoder))
            fail(r, "/encoder_b outputs %d, but /encoder outputs %d",
                 dml_mlp_dim_out(&net->encoder_b), dml_mlp_dim_out(&net->encoder));
    }
    if (r->st == DML_OK)
        get_pq(r, f, dml_mlp_dim_out(&net->encoder), &mf->pq);
    get_training(r, f, mf);
}

/* upgrade: also read format_version 1 (dml upgrade's reader). */
static dml_status read_model(const char *path, dml_model_file *mf, int upgrade, dml_error *err)
{
    memset(mf, 0, sizeof *mf);
    reader r = {path, err, DML_OK, 0, 0};
    struct stat sb;
    if (stat(path, &sb) != 0)
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "no such file");
    if (!S_ISREG(sb.st_mode))
        return dml_error_set(err, DML_ERR_DATA, path, 0, 0, "not a regular file");
    H5E_BEGIN_TRY { /* our messages, not the HDF5 error stack */
        /* Closing the file closes whatever a failed call left open inside HDF5. */
        hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
        hid_t f = fapl >= 0 && H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) >= 0
                      ? H5Fopen(path, H5F_ACC_RDONLY, fapl)
                      : -1;
        if (fapl >= 0)
            H5Pclose(fapl);
        if (f < 0) {
            r.st = dml_error_set(err, DML_ERR_DATA, path, 0, 0,
                                 H5Fis_hdf5(path) > 0 ? "cannot open the model: a damaged HDF5 file"
                                                      : "cannot open the model: not an HDF5 file");
        } else if (H5Fget_filesize(f, &r.file_size) < 0) { /* of the file opened, not path now */
            r.st = dml_error_set(err, DML_ERR_DATA, path, 0, 0, "cannot read the file's size");
            H5Fclose(f);
        } else {
            get_all(&r, f, mf, upgrade);
            H5Fclose(f);
        }
    } H5E_END_TRY;
    if (r.st != DML_OK)
        dml_model_file_free(mf);
    return r.st;
}

dml_status dml_model_file_read(const char *path, dml_model_file *mf, dml_error *err)
{
    return read_model(path, mf, 0, err);
}

dml_status dml_model_file_upgrade(const char *path, const char *out, dml_error *err)
{
    dml_model_file mf;
    dml_status st = read_model(path, &mf, 1, err);
    if (st == DML_OK)
        st = dml_model_file_write(out, &mf, err);
    dml_model_file_free(&mf);
    return st;
}
