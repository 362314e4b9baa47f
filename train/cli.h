/* The dml commands (train/cli_<command>.c), each returning its process exit code. */
#ifndef DML_TRAIN_CLI_H
#define DML_TRAIN_CLI_H

#include "data/error.h"

int dml_cli_train(int argc, char **argv);
int dml_cli_eval(int argc, char **argv);
int dml_cli_encode(int argc, char **argv);
int dml_cli_export(int argc, char **argv);
int dml_cli_info(int argc, char **argv);

/* "dml <command>: file:line:col: message" on stderr. */
void dml_cli_report_error(const char *command, dml_status st, const dml_error *err);

#endif
