/*
 * dml.h: the public C API of dml, a deep metric learning framework.
 *
 * It loads a trained encoder (model.h5), embeds vectors and serves its product-quantization
 * codebooks; it also trains an encoder on rows held in memory (dml_train) and evaluates one
 * (dml_evaluate), as dml train and dml eval do on files. The trainer's internals stay in the
 * library's module headers, never here.
 *
 * Example: embed a few vectors, encode them with the model's codebooks and search.
 *
 *     #include <dml.h>
 *
 *     char msg[512];
 *     dml_model *m;
 *     if (dml_model_open("runs/demo/model.h5", &m, msg, sizeof msg) != DML_OK) {
 *         fprintf(stderr, "%s\n", msg);          // "runs/demo/model.h5: no such file"
 *         return 1;
 *     }
 *     int d_in = dml_model_dim_in(m), dim = dml_model_dim_out(m);
 *     float *emb = malloc(n * dim * sizeof(float));
 *     dml_model_encode(m, x, n, emb);             // x is [n, d_in], row-major
 *
 *     const dml_pq *pq = dml_model_pq(m);         // NULL when the model has no codebooks
 *     if (pq) {
 *         uint8_t *codes = malloc(n * dml_pq_code_size(pq));
 *         dml_pq_encode(pq, emb, n, codes);       // FAISS IndexPQ's packing
 *         float dist[5];
 *         int64_t ids[5];
 *         dml_pq_search(pq, codes, n, emb, 1, 5, dist, ids);   // 5 nearest of row 0
 *     }
 *     dml_model_free(m);
 *
 * Example: train on rows in memory (x [n, d] float32, y [n] int64 labels, both the caller's),
 * then evaluate and save (examples/train_example.c is the whole program).
 *
 *     const char *config = "model: {hidden: [256], dim: 64}\ntrain: {epochs: 5}\n";
 *     const char *const sets[] = {"data.normalize=standardize"};   // as dml train --set
 *     dml_train_data data = {.x = x, .n = n, .d = d, .y = y};
 *     dml_train_options opts = {.callback = on_progress, .stop = &stop_flag};
 *     dml_model *m;
 *     if (dml_train(config, sets, 1, &data, &opts, &m, msg, sizeof msg) != DML_OK)
 *         fprintf(stderr, "%s\n", msg);      // "<config>:LINE:COL: train.epochs: ..."
 *     dml_metrics *mt;
 *     dml_eval_data rows = {.x = x, .n = n, .d = d, .y = y};
 *     dml_evaluate(m, &rows, 1, NULL, &mt, msg, sizeof msg);   // as dml eval --pq
 *     double map = dml_metrics_get(mt, "map_at_r");
 *     dml_metrics_free(mt);
 *     dml_model_save(m, "model.h5", msg, sizeof msg);
 *     dml_model_free(m);
 *
 * Build: cc app.c $(pkg-config --cflags --libs dml)
 *
 * Conventions. Every fallible call returns a dml_status (DML_OK is 0) and never exits or aborts
 * on bad input. Arrays are row-major float32 ([n, d]: row i at x + i * d), owned by the caller:
 * dml reads inputs and writes outputs, and keeps no pointer to either after the call returns.
 * Handles (dml_model, dml_metrics) are owned by the caller from open (dml_train, dml_evaluate)
 * until free; functions other than dml_model_encode* and dml_model_free require a handle
 * dml_model_open or dml_train returned. What a getter returns (the codebooks, the metric name)
 * belongs to the handle and lives as long as it.
 *
 * Model files. A model.h5 is data, never trusted further than that: dml_model_open reads the
 * file alone (soft or external links and external raw data are refused), and a damaged file
 * gives DML_ERR_DATA with a message naming it, not a crash. It reads format_version 2 only, a
 * format chosen to keep what libhdf5 parses small and checked: checksummed superblock and
 * object headers (HDF5 1.10's format, verified before parsing), fixed-length string attributes
 * (no variable-length strings), every tensor a float32 dataset in one chunk with a Fletcher-32
 * checksum. It refuses a superblock without a checksum before parsing anything else. Before it
 * reads a tensor it checks the format name and version, every attribute's type and range, the
 * tensor's type, its shape against the attributes (layer widths chain, the codebooks fit the
 * embedding width), its layout, filter and chunk size, and that the chunk lies inside the
 * file; then every value must be finite. A file that opens is a well-formed model, not proof of
 * who wrote it, and a file crafted (with valid checksums) to hit a bug of libhdf5 is not ruled
 * out. Older files (format_version 1) are refused: `dml upgrade FILE` rewrites them.
 *
 * Threads. After dml_model_open returns, a model is read-only: any number of threads may call
 * dml_model_encode and the getters on one model at once (each call works in its own memory).
 * dml_model_open and dml_model_free read HDF5, which Debian builds without thread-safety: do
 * not run them concurrently with each other or with other HDF5 use in the process.
 */
#ifndef DML_H
#define DML_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DML_VERSION_MAJOR 0
#define DML_VERSION_MINOR 1
#define DML_VERSION_PATCH 0

#if defined(__GNUC__)
#define DML_API __attribute__((visibility("default")))
#else
#define DML_API
#endif

/* Every fallible call returns one of these; DML_OK is 0. */
typedef enum dml_status {
    DML_OK = 0,
    DML_ERR_USAGE,    /* a bad argument or command line */
    DML_ERR_CONFIG,   /* a config file that does not validate */
    DML_ERR_DATA,     /* an input file that is missing, malformed or inconsistent */
    DML_ERR_IO,       /* reading or writing failed for a reason outside the input */
    DML_ERR_NOMEM,    /* an allocation failed, or an arena is too small */
    DML_ERR_DIVERGED, /* training produced NaN or Inf */
    DML_ERR_INTERNAL, /* a broken invariant: a bug in dml */
    DML_ERR_INTERRUPTED /* training stopped on request (a signal, dml_train's callback or stop
                         * flag) at a step boundary, its checkpoint written when it has a run
                         * folder */
} dml_status;

/* A short constant name for a status ("DML_ERR_DATA"). */
DML_API const char *dml_status_name(dml_status s);

/* ---- product quantizers: codes as FAISS's IndexPQ packs them ---- */
typedef struct dml_pq dml_pq;

/* Bytes per code: (M * nbits + 7) / 8. */
DML_API size_t dml_pq_code_size(const dml_pq *pq);
/* The quantizer's shape and codebooks, for a caller building its own index (the Python
 * package's to_faiss): M sub-quantizers of 2^nbits centroids each over dim_out / M wide
 * sub-vectors, centroids[M][2^nbits][dim_out / M] row-major (FAISS ProductQuantizer's layout),
 * owned by the model like every getter's result. */
DML_API int dml_pq_m(const dml_pq *pq);
DML_API int dml_pq_nbits(const dml_pq *pq);
DML_API const float *dml_pq_centroids(const dml_pq *pq);
/* Encode n vectors x[n, d] into codes[n, code_size]: the nearest centroid (squared L2) of
 * each sub-vector, ties to the lowest index. Thread-safe. DML_ERR_USAGE for NULL arguments,
 * DML_ERR_NOMEM when its scratch (a few MB) cannot be allocated. */
DML_API dml_status dml_pq_encode(const dml_pq *pq, const float *x, size_t n, uint8_t *codes);
/* Decode n codes into x[n, d]: each sub-vector is its centroid. Allocates nothing. */
DML_API void dml_pq_decode(const dml_pq *pq, const uint8_t *codes, size_t n, float *x);
/* ADC search: for each of n_q float queries, the k codes (of n_db) nearest in squared L2,
 * nearest first. distances[n_q, k] and labels[n_q, k] (row numbers; -1 and +inf past n_db). */
DML_API dml_status dml_pq_search(const dml_pq *pq, const uint8_t *codes, size_t n_db,
                                 const float *queries, size_t n_q, int k, float *distances,
                                 int64_t *labels);

/* ---- models: a trained encoder read from model.h5 ---- */
typedef struct dml_model dml_model;

/* Reads and validates the model file at path (format_version 2; see "Model files" above). On
 * success *model is a new handle (free it with dml_model_free). On failure *model is NULL, the
 * status says why (DML_ERR_DATA: missing, damaged, malformed or inconsistent file, or one of an
 * older format; DML_ERR_USAGE: NULL arguments; DML_ERR_NOMEM) and errbuf (may
 * be NULL) gets a message naming the file, truncated to errlen bytes including the NUL. */
DML_API dml_status dml_model_open(const char *path, dml_model **model, char *errbuf,
                                  size_t errlen);
/* Releases the model and everything its getters returned. NULL is harmless. */
DML_API void dml_model_free(dml_model *model);

/* The encoder's input width (features per row) and embedding width. */
DML_API int dml_model_dim_in(const dml_model *model);
DML_API int dml_model_dim_out(const dml_model *model);

/* Embeds n rows x[n, dim_in] into out[n, dim_out]: the model's input normalisation, its MLP,
 * then its output normalisation (l2, tanh or none). Thread-safe on one model. DML_ERR_USAGE when
 * x or out is NULL (and n > 0), DML_ERR_NOMEM when memory runs out. */
DML_API dml_status dml_model_encode(const dml_model *model, const float *x, size_t n, float *out);

/* Dual encoders only: the second (positive-side) tower's input width, 0 for other models, and
 * the same encoding through that tower (DML_ERR_USAGE for a model with one tower). */
DML_API int dml_model_dim_in_b(const dml_model *model);
DML_API dml_status dml_model_encode_b(const dml_model *model, const float *x, size_t n,
                                      float *out);

/* The product quantizer stored with the model, over dim_out-wide embeddings; NULL when none. */
DML_API const dml_pq *dml_model_pq(const dml_model *model);
/* How the embeddings are meant to be searched: "l2" or "inner_product". */
DML_API const char *dml_model_metric(const dml_model *model);

/* Writes the model to path as model.h5 (format_version 2), atomically: a temporary name, then
 * a rename, so a failure leaves an existing file as it was. dml_model_open reads it back to a
 * model that encodes the same, bit for bit. DML_ERR_IO (or DML_ERR_USAGE for NULL arguments)
 * with a message naming the file in errbuf (may be NULL; truncated to errlen bytes). */
DML_API dml_status dml_model_save(const dml_model *model, const char *path, char *errbuf,
                                  size_t errlen);

/* ---- training from memory ---- */

/* The data to train on, all arrays owned by the caller and never written. The rows are read
 * where they are, without a copy, unless the run normalises them (data.normalize standardize:
 * it then copies them once, as it normalises in place) or x_val is given (the validation rows
 * are appended to the training rows: both copied once); labels are copied (as int32). The
 * arrays must stay unchanged until dml_train returns, and may be freed or reused after it.
 * x NULL: the config's data.train is read instead, and likewise x_test NULL: data.test when
 * the config names one (with x given, data.test's default, Fashion-MNIST's test set, is
 * dropped: no final metrics). */
typedef struct dml_train_data {
    const float *x;     /* [n, d] training rows, or NULL */
    int64_t n;
    int d;
    const int64_t *y;   /* [n] labels in 0..1000000, or NULL (unlabelled) */
    const float *x_b;   /* [n, d_b] a second view of each row (data.pairs: file; the positive
                         * of x's anchor, through model.type dual's second tower), or NULL */
    int d_b;
    /* [n_val, d] validation rows (with y_val [n_val] and x_val_b [n_val, d_b] as x has y and
     * x_b), or NULL: they pick the model and stop early in place of the data.val_fraction
     * share of x, which must then be left unset (it is taken as 0) */
    const float *x_val;
    int64_t n_val;
    const int64_t *y_val;
    const float *x_val_b;
    const float *x_test;     /* [n_test, d] rows for the final metrics, or NULL */
    int64_t n_test;
    const int64_t *y_test;   /* [n_test] or NULL */
    const float *x_test_b;   /* [n_test, d_b] or NULL */
} dml_train_data;

/* What the progress callback is told after every step, and again after every validation. */
typedef struct dml_train_progress {
    long step, total_steps; /* step counts from 1 to total_steps */
    float loss, lr;         /* the step's loss and the learning rate it used */
    /* 0 after a step; after a validation, its metrics (a value is NaN when nothing labelled
     * was there to validate on): names[i] ("map_at_r", "precision_at_1") and values[i]. */
    int n_metrics;
    const char *const *metric_names;
    const double *metric_values;
} dml_train_progress;

/* Called on the training thread; a nonzero return stops the run at the next step boundary
 * (dml_train then returns DML_ERR_INTERRUPTED). p and what it points to last for the call. */
typedef int (*dml_train_callback)(void *ctx, const dml_train_progress *p);

typedef struct dml_train_options {
    /* The run folder (checkpoint.h5, metrics.jsonl, report.html and model.h5, as dml train
     * writes it, locked while the run writes it), or NULL: nothing is written. */
    const char *out_dir;
    int resume;               /* continue out_dir/checkpoint.h5, as dml train --resume */
    dml_train_callback callback; /* NULL, or the progress callback */
    void *callback_ctx;
    /* NULL, or a flag the caller sets nonzero (from another thread or a signal handler: an
     * int is sig_atomic_t on Linux) to stop at the next step boundary, as the callback's
     * nonzero return does. */
    volatile int *stop;
    int verbose;              /* nonzero: the progress lines dml train prints, on stderr */
} dml_train_options;

/* Trains the encoder a config describes, on data in memory.
 * config: YAML text with a config file's schema, defaults and checks (docs/config.md; NULL
 * or "" keeps every default); its errors are DML_ERR_CONFIG as "<config>:LINE:COL: key:
 * expected ...". sets[n_sets]: overrides "key.path=value" (the value YAML), exactly as
 * dml train --set takes them, applied in order after the text. data: see dml_train_data (NULL:
 * the config's files). opts: NULL for no run folder, no callback, quiet.
 * On success *model is the trained model (dml_model_free): encode with it, save it with
 * dml_model_save. On failure *model is NULL and errbuf (may be NULL) says why, truncated to
 * errlen bytes: DML_ERR_USAGE (NULL or inconsistent arguments), DML_ERR_CONFIG, DML_ERR_DATA
 * (a label outside 0..1000000, a NaN row, ...), DML_ERR_NOMEM, DML_ERR_IO (the run folder),
 * DML_ERR_DIVERGED, or DML_ERR_INTERRUPTED when a stop was asked: with a run folder its
 * checkpoint.h5 is written at that step, which resume (or dml train --resume) continues.
 * Not thread-safe with other dml_train or HDF5 calls (it may read and write HDF5). Like dml
 * train, it sets the whole process's threads to train.threads (0: one per core) and leaves them
 * so: dml's own threads for products and passes, OpenBLAS on one thread. */
DML_API dml_status dml_train(const char *config, const char *const *sets, int n_sets,
                             const dml_train_data *data, const dml_train_options *opts,
                             dml_model **model, char *errbuf, size_t errlen);

/* ---- evaluation from memory ---- */
typedef struct dml_metrics dml_metrics;

/* The rows to score, all arrays owned by the caller and only read during the call. */
typedef struct dml_eval_data {
    const float *x;   /* [n, d] the queries: d is the model's dim_in (a dual encoder without
                       * x_b: dim_in + dim_in_b, each row split into its halves as dml eval
                       * splits a one-view file) */
    int64_t n;
    int d;
    const int64_t *y; /* [n] labels in 0..1000000, or NULL */
    /* Dual encoders: [n, d_b] each query's own positive, embedded by the second tower as its
     * reference (recall_at_k, mrr_at_10), or NULL (x's halves). NULL for other models. */
    const float *x_b;
    int d_b;
    /* [n_db, d] a database the queries search, with y_db [n_db] or NULL; x_db NULL: every
     * query searches the other queries, itself left out. Not with a dual encoder. */
    const float *x_db;
    int64_t n_db;
    const int64_t *y_db;
    /* [n, truth_k] (with a database; NULL: none): each query's true nearest database rows,
     * nearest first, for nn_recall_at_k. */
    const int64_t *truth;
    int truth_k;
} dml_eval_data;

/* Scores the model's embeddings of data as dml eval does on files, through the same code, into
 * *out (dml_metrics_free). pq nonzero: every retrieval metric again on the model's PQ codes
 * (pq_ names), as dml eval --pq. metrics: comma-separated metric keys as dml eval --metrics
 * takes them ("map_at_r,recall_at_k"), or NULL for every one the data allow. The values equal
 * dml eval --json's on the same rows. dml eval's refusals are its: DML_ERR_USAGE (bad
 * arguments, a metric the data cannot give, an unknown or repeated key, pq without codebooks),
 * DML_ERR_DATA (a label or neighbour id out of range, a NaN row, rows of another width than
 * the model's, label metrics that measure nothing: no row sharing its label with another, or
 * references of one label), DML_ERR_NOMEM; *out is NULL on failure and errbuf (may be NULL)
 * says why, naming the array at fault ("<x>", "<x_db>", "<truth>"). */
DML_API dml_status dml_evaluate(const dml_model *model, const dml_eval_data *data, int pq,
                                const char *metrics, dml_metrics **out, char *errbuf,
                                size_t errlen);
/* How many metrics, and metric i's name ("map_at_r", "pq_recall_at_1", ...) and value (NaN
 * where dml eval --json says null). NULL / NaN for i out of range. */
DML_API int dml_metrics_count(const dml_metrics *metrics);
DML_API const char *dml_metrics_name(const dml_metrics *metrics, int i);
DML_API double dml_metrics_value(const dml_metrics *metrics, int i);
/* A metric's value by name; NaN when it was not computed. */
DML_API double dml_metrics_get(const dml_metrics *metrics, const char *name);
/* NULL is harmless. */
DML_API void dml_metrics_free(dml_metrics *metrics);

#ifdef __cplusplus
}
#endif
#endif /* DML_H */
