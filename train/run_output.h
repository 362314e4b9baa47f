/* What a run reads besides its data and writes besides its checkpoint (train/ only). */
#ifndef DML_TRAIN_RUN_OUTPUT_H
#define DML_TRAIN_RUN_OUTPUT_H

#include "eval/eval.h"
#include "train/run.h"

/* model.init: the encoder (and decoder, when both are autoencoders) of a pretrained model.h5;
 * a shape that does not match is a config error naming model.init. */
dml_status dml_run_load_init(dml_run *r, dml_error *err);

/* Every non-validation training row, labelled or set aside by labels_per_class (malloc'ed;
 * *n rows): what codebooks are fitted on and what protocol 2 searches. */
int32_t *dml_run_all_train_rows(const dml_run *r, int *n);

/* The joint loss's codebooks from the embeddings of the training rows: a fresh k-means++ fit
 * (fresh) or pq.iters more k-means iterations from the current codebooks. */
dml_status dml_run_fit_codebooks(dml_run *r, int fresh, dml_error *err);
/* The same k-means over the ranks of r->comm (train/run_kmeans.c) on n rows, of which this
 * rank holds rows [lo, lo + nl) (dml_run_shard_rows), their embeddings in z[nl, d]. */
dml_status dml_run_pq_fit_ranks(dml_run *r, const float *z, int n, int lo, int nl, int fresh,
                                dml_error *err);
/* The rows [*lo, *hi) of n that rank of size embeds for the codebooks: whole
 * DML_RUN_EMBED_BLOCKs, split as evenly as they go (none when there are fewer blocks). */
void dml_run_shard_rows(int n, int rank, int size, int *lo, int *hi);

/* map_at_r and precision_at_1 of the validation rows (the test set when there are none). */
dml_status dml_run_validate(dml_run *r, dml_validation *v, dml_error *err);

/* metrics.jsonl, rewritten whole (atomically): the loss every 10 steps, each validation, and
 * the final metrics as JSON text when given. */
dml_status dml_run_write_metrics(dml_run *r, const char *final_json, dml_error *err);

/* model.h5 of the run (train/run_model.c). */
dml_status dml_run_write_model(dml_run *r, const char *metrics_json, dml_error *err);

/* report.html of the run (train/run_report.c). */
dml_status dml_run_write_report(dml_run *r, const dml_eval_result *final, dml_error *err);

/* After the loop: codebooks fitted on the final embeddings unless learned jointly, the final
 * evaluation on data.test (printed and stored), model.h5, metrics.jsonl and report.html. */
dml_status dml_run_finish(dml_run *r, dml_error *err);

#endif
