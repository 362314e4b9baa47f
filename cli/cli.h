/* cli/: the dml command line, a thin layer over train/, eval/ and serve/: one file per command
 * (cli/<command>.c: its options, help text and output), main's dispatch in cli/main.c. Nothing
 * here is what a library user would also need; that lives in the layers below. Each command
 * returns its process exit code. */
#ifndef DML_CLI_H
#define DML_CLI_H

#include "data/error.h"
#include "serve/model_file.h"
#include "train/comm.h"

int dml_cli_train(int argc, char **argv);
int dml_cli_eval(int argc, char **argv);
int dml_cli_encode(int argc, char **argv);
int dml_cli_export(int argc, char **argv);
int dml_cli_info(int argc, char **argv);
int dml_cli_upgrade(int argc, char **argv);

/* cli/mpi.c: MPI_Init when mpirun launched this process; the world as a communicator when it
 * has more than one rank, else NULL (one process). dml_cli_mpi_close finalises. */
const dml_comm *dml_cli_mpi_open(int *argc, char ***argv);
void dml_cli_mpi_close(void);
/* The lowest rank whose failed is nonzero, or -1; collective over c, so that every rank goes on
 * or stops together. */
int dml_cli_mpi_first_failure(const dml_comm *c, int failed);
/* dml_eval_request.share_rows over MPI (ctx: the dml_comm): every rank gets every rank's rows. */
void dml_cli_mpi_share_rows(void *ctx, void *buf, size_t row_bytes, const int *row_begin);
/* Rank 0 receives each rank k's part, bytes[k] from its mine, into all + offset[k] (offsets and
 * sizes the same on every rank), in messages of at most 64 MB; rank 0's own part is already in
 * place. Collective over c. */
void dml_cli_mpi_collect(const dml_comm *c, void *all, const void *mine, const size_t *offset,
                         const size_t *bytes);

/* "dml <command>: file:line:col: message" on stderr. */
void dml_cli_report_error(const char *command, dml_status st, const dml_error *err);

#endif
