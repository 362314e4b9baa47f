/* serve/: what a search service needs from a trained model, without the trainer: model.h5
 * written and read (and validated), the inference API behind include/dml.h (serve/api.c), and
 * the bulk encode path (serve/encode.c), and the exports for search libraries and runtimes
 * (FAISS index files, ONNX). It depends on nn/ and data/, and on eval/ to hand a model to
 * dml_eval_model_run (eval/ sits below: it reaches the model through a function), so libdml's
 * inference part reads, tests and links without train/; train/ writes its model.h5 through it. */
#ifndef DML_SERVE_H
#define DML_SERVE_H

#include "serve/encode.h"
#include "serve/export.h"
#include "serve/model_file.h"

/* A public handle (include/dml.h) over a model in memory, a trainer's: *model takes over mf's
 * buffers and mf is left empty. DML_ERR_NOMEM leaves mf as it was and *model NULL. */
dml_status dml_model_adopt(dml_model_file *mf, dml_model **model);
/* The model file behind a public handle (read-only, as long as the handle lives). */
const dml_model_file *dml_model_file_of(const dml_model *model);

#endif
