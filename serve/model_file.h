/* model.h5: a trained encoder, its input and output normalisation, its PQ codebooks and how it
 * was trained, as one HDF5 file that h5py (and dml_model_open) can read.
 *
 * Layout (format "dml-model", format_version 2; shared/design/formats.md §2.3 plus its §0 extras):
 *   /                    attrs format="dml-model", format_version=2 (int64),
 *                              producer="dml <version>", created (ISO-8601 UTC),
 *                              model_type="mlp"|"autoencoder"|"dual",
 *                              metric="l2"|"inner_product" (how the embeddings are searched)
 *   /encoder             attrs architecture="mlp", input_dim, output_dim, num_layers (int64)
 *   /encoder/input_norm  attrs kind="none"|"standardize"; datasets mean[input_dim], std[input_dim]
 *                              f32 (standardize only): x' = (x - mean) / std
 *                        optional attrs, the input scale the tower was trained on (data/scale.h;
 *                              files written before it lack them, and read as unknown):
 *                              mode = data.normalize as configured, "none"|"unit"|"standardize";
 *                              source_type = the training values as stored, "uint8"|"int32"|
 *                              "float32"|"float64"|"text"; source_min, source_max (f64, both or
 *                              neither) = their range before normalisation
 *   /encoder/layer_000.. attrs type="linear", activation="relu"|"leaky_relu"|"tanh"|"gelu"|
 *                              "sigmoid"|"none" (after this layer; the last layer's is "none"),
 *                              negative_slope (f32, leaky_relu only), in_features, out_features;
 *                              datasets weight [out, in] f32 (y = W x + b), bias [out] f32
 *   /encoder/output_norm attrs kind="none"|"l2"|"tanh", eps (f32): l2 is y / max(|y|_2, eps),
 *                              tanh is tanh(y) element-wise (an addition to formats.md)
 *   /decoder             autoencoders only: the same layout as /encoder (input_norm kind "none")
 *   /encoder_b           dual encoders only: the positive tower, the same layout as /encoder
 *   /pq                  optional: attrs d, M, nbits, ksub, dsub (int64);
 *                              dataset centroids [M, ksub, dsub] f32 (FAISS's pq.centroids order)
 *   /training            attrs seed, steps (int64); config (the effective config, YAML text) and
 *                              final_metrics (JSON text) when known
 * How it is stored, so that a damaged file is an error and never a crash inside libhdf5:
 * HDF5 1.10's format (superblock 3, version-2 object headers: HDF5 verifies their checksums
 * before parsing them); every link hard and kept in its group's header; every string a scalar
 * fixed-length NUL-terminated UTF-8 attribute (h5py returns bytes), never a variable-length one
 * (those live in the global heap, whose parser crashes on damaged files); every dataset
 * little-endian float32 in one chunk with HDF5's Fletcher-32 checksum. The reader refuses an
 * older superblock before it parses anything else; before any dataset is read, it checks its
 * type, shape (against the attributes), layout, filter, chunk size and that the chunk lies
 * inside the file. format_version 1 (dml 0.1.0's first builds: the same
 * groups, variable-length strings, contiguous datasets) is read by dml upgrade only.
 * data.normalize "unit" is stored as standardize with mean 0 and std 255 on byte rows (the
 * identity, kind "none", on float rows), with mode "unit" saying which. Writing is in
 * model_file.c, reading and validation in model_read.c, the encode path in api.c (and a range
 * of rows at a time, with the embeddings file, in encode.c). */
#ifndef DML_SERVE_MODEL_FILE_H
#define DML_SERVE_MODEL_FILE_H

#include <stdint.h>
#include <stdio.h>

#include "data/data.h"
#include "nn/nn.h"

#define DML_MODEL_FORMAT "dml-model"
#define DML_MODEL_FORMAT_VERSION 2
#define DML_MODEL_MAX_LAYERS 64 /* per tower */

typedef struct dml_model_file {
    dml_net net;            /* encoder; decoder (autoencoder) or encoder_b (dual) by net.type */
    dml_input_norm norm;    /* before net.encoder; d == 0 is the identity */
    dml_input_norm norm_b;  /* before net.encoder_b (dual only); d == 0 is the identity */
    dml_input_scale scale;  /* what the encoder's input was in training; mode "": not recorded */
    dml_input_scale scale_b; /* the same for encoder_b */
    char metric[16];        /* "l2" or "inner_product": how the embeddings are searched */
    dml_pq pq;              /* pq.d == 0: no codebooks */
    int64_t seed, steps;    /* /training; 0 when absent */
    char *config_yaml;      /* NUL-terminated YAML text, or NULL */
    char *metrics_json;     /* the final metrics as JSON text, or NULL */
} dml_model_file;

/* Writes mf to path atomically (temporary name, fsync, rename): a failure leaves an existing
 * file as it was. mf's buffers are only read, so it may borrow a trainer's net, norms and
 * codebooks (and must then not be passed to dml_model_file_free). Inconsistent shapes (a
 * codebook width other than the encoder's output) are DML_ERR_USAGE; write failures DML_ERR_IO. */
dml_status dml_model_file_write(const char *path, const dml_model_file *mf, dml_error *err);

/* Reads and validates path into *mf, which then owns every buffer (parameters have no gradient
 * buffers: an inference net). Everything wrong with the file is DML_ERR_DATA naming it: not
 * HDF5, another format name or version, a missing group or dataset, layer widths that do not
 * chain, a codebook whose d is not the embedding width or not divisible by M, non-finite
 * weights. On error *mf is empty (freeing it is harmless). */
dml_status dml_model_file_read(const char *path, dml_model_file *mf, dml_error *err);
/* Rewrites the model at path, format_version 1 or 2, as version 2 at out (which may be path:
 * the write is atomic). Version 1 is read only here, by a deliberate `dml upgrade` of a file the
 * user's own dml wrote: its variable-length strings go through libhdf5's global heap parser,
 * which a damaged file can crash (dml upgrade calls this in a child process). */
dml_status dml_model_file_upgrade(const char *path, const char *out, dml_error *err);
void dml_model_file_free(dml_model_file *mf);

/* Copies the weights of src (read from path; what names it, "encoder") into dst, which must
 * have the same layer shapes (a trainer's freshly built net, before fine-tuning). A mismatch is
 * DML_ERR_DATA naming path and the first layer that differs; dst is then unchanged. */
dml_status dml_model_file_copy_mlp(dml_mlp *dst, const dml_mlp *src, const char *path,
                                   const char *what, dml_error *err);

/* "mlp", "autoencoder" or "dual" (the root's model_type). */
const char *dml_model_file_type_name(dml_net_type t);
/* "none", "l2" or "tanh" (output_norm's kind). */
const char *dml_model_file_output_name(dml_output_norm o);

/* The inference path (serve/api.c): tower 0 (encoder) or 1 (encoder_b, dual only) applied to
 * x[n, d_in] with its input and output normalisation, into out[n, dim]. Reentrant: each call
 * builds its own graph, so concurrent calls on one mf are safe. DML_ERR_USAGE for a tower the
 * model lacks, DML_ERR_NOMEM when memory runs out. */
dml_status dml_model_file_encode(const dml_model_file *mf, int tower, const float *x, size_t n,
                                 float *out);
/* Rows per forward pass of dml_model_file_encode: bounds each call's memory whatever n is. Rows
 * split at multiples of it (dml encode's ranks) go through the very same passes, and so give the
 * same bytes as one call over all of them. */
#define DML_ENCODE_BLOCK 256
/* The MLP and input normalisation of a tower (NULL for a tower the model lacks). */
const dml_mlp *dml_model_file_tower(const dml_model_file *mf, int tower);
const dml_input_norm *dml_model_file_tower_norm(const dml_model_file *mf, int tower);

#endif
