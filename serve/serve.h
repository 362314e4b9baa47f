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

#endif
