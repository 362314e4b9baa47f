/* Progress of a long run: a bar redrawn in place on a terminal, plain lines otherwise. */
#ifndef DML_DATA_PROGRESS_H
#define DML_DATA_PROGRESS_H

#include <stdio.h>

typedef struct dml_progress {
    FILE *out;           /* NULL: nothing is drawn */
    const char *units;   /* NULL: training steps (loss and lr shown); else what is counted */
    int is_tty;
    long total;          /* steps in the run */
    long start_step;     /* the step the run (or resume) began at */
    double t_start;      /* monotonic seconds */
    double t_last_draw;
    long line_every;     /* plain mode: one line per this many steps */
    int bar_drawn;       /* a bar is on the current terminal line */
    long last_at;        /* units: the count at the last line drawn (counts jump by chunks) */
} dml_progress;

void dml_progress_init(dml_progress *p, FILE *out, long total, long start_step);
/* Work counted in other units (rows encoded, database rows searched): the same bar on a
 * terminal, a line per 5% otherwise; out NULL draws nothing (a rank that is not rank 0). */
void dml_progress_init_units(dml_progress *p, FILE *out, long total, const char *units);
/* done of total units so far; the last call (done == total) ends the bar's line. */
void dml_progress_count(dml_progress *p, long done);
/* Called after every step; draws at most ~10 times a second (tty) or every line_every steps. */
void dml_progress_update(dml_progress *p, long step, float loss, float lr);
/* A message that must not be overwritten by the bar (validation results, warnings). */
void dml_progress_note(dml_progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dml_progress_finish(dml_progress *p, long step);
/* Monotonic seconds. */
double dml_now(void);

#endif
