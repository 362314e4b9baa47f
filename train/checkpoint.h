/* checkpoint.h5: everything a run needs to continue exactly where it stopped, as a flat list
 * of named arrays. The trainer decides what goes in; this file only moves bytes, atomically. */
#ifndef DML_TRAIN_CHECKPOINT_H
#define DML_TRAIN_CHECKPOINT_H

#include <stddef.h>
#include "data/data.h"

#define DML_CHECKPOINT_FORMAT "dml-checkpoint"
/* 2: adds "run", the run's record (train/run_resume.c); 1 had none and still loads */
#define DML_CHECKPOINT_VERSION 2

typedef enum dml_ckpt_type { DML_CKPT_F32, DML_CKPT_F64, DML_CKPT_I64, DML_CKPT_U8 } dml_ckpt_type;

typedef struct dml_ckpt_entry {
    char name[64];      /* dataset name, unique in the file */
    dml_ckpt_type type;
    void *data;         /* [n] elements of type */
    size_t n;
    /* The file may hold another count (loss_curve, when --resume changes train.steps): the
     * first min(n, stored) values are read, the rest of data left as it is. */
    int any_length;
} dml_ckpt_entry;

/* Writes every entry to path (temporary name, fsync, rename). */
dml_status dml_checkpoint_write(const char *path, const dml_ckpt_entry *entries, int n_entries,
                                dml_error *err);
/* Reads every entry into its buffer; a missing dataset or a size other than n (unless
 * any_length) is an error that names the file and the entry (the run's config no longer
 * matches the checkpoint). */
dml_status dml_checkpoint_read(const char *path, const dml_ckpt_entry *entries, int n_entries,
                               dml_error *err);
/* Reads the U8 entry name whole as a malloc'ed NUL-terminated string in *text; *text is NULL
 * when the checkpoint has no such entry (an older one). */
dml_status dml_checkpoint_read_text(const char *path, const char *name, char **text,
                                    dml_error *err);

/* What dml info says of a checkpoint. */
typedef struct dml_checkpoint_summary {
    long long version;        /* its format_version; -1 when unreadable */
    long long n_arrays;       /* the named arrays it holds */
    unsigned long long bytes; /* the file's size */
} dml_checkpoint_summary;

/* 1 when path is a checkpoint (its format attribute a fixed-length "dml-checkpoint", as
 * dml_checkpoint_write writes it), with s filled in; 0 for anything else, which the caller
 * then reads as what it expects. */
int dml_checkpoint_probe(const char *path, dml_checkpoint_summary *s);

#endif
