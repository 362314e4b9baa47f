#include "data/progress.h"

#include <stdarg.h>
#include <time.h>
#include <unistd.h>

#define BAR_WIDTH 30

double dml_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dml_progress_init(dml_progress *p, FILE *out, long total, long start_step)
{
    p->out = out;
    p->units = NULL;
    p->is_tty = out && isatty(fileno(out));
    p->total = total;
    p->start_step = start_step;
    p->t_start = p->t_last_draw = dml_now();
    p->line_every = total >= 20 ? total / 20 : 1;
    p->bar_drawn = 0;
    p->last_at = 0;
}

static void format_duration(char *buf, size_t n, double seconds)
{
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

void dml_progress_init_units(dml_progress *p, FILE *out, long total, const char *units)
{
    dml_progress_init(p, out, total, 0);
    p->units = units;
}

/* The bar (terminal) or a line (every line_every), with the rate and the time left; detail
 * adds the training step's loss. */
static void draw(dml_progress *p, long at, const char *detail, const char *line_detail)
{
    if (!p->out)
        return;
    double now = dml_now();
    long done = at - p->start_step;
    double rate = done > 0 ? (double)done / (now - p->t_start + 1e-9) : 0.0;
    const char *units = p->units ? p->units : "steps";
    char eta[32];
    format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - at) / rate : 0.0);
    if (p->is_tty) {
        if (now - p->t_last_draw < 0.1 && at < p->total)
            return;
        int filled = p->total > 0 ? (int)((double)BAR_WIDTH * (double)at / (double)p->total) : 0;
        char bar[BAR_WIDTH + 1];
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
        fprintf(p->out, "\r[%s] %ld/%ld  %.1f %s/s%s  ETA %s \033[K", bar, at, p->total, rate,
                units, detail, eta);
        p->bar_drawn = 1;
    } else {
        int due = p->units ? at / p->line_every > p->last_at / p->line_every
                           : at % p->line_every == 0;
        if (!due && at < p->total)
            return;
        p->last_at = at;
        fprintf(p->out, "%s %ld/%ld%s  %.1f %s/s  ETA %s\n", p->units ? p->units : "step", at,
                p->total, line_detail, rate, units, eta);
    }
    fflush(p->out);
    p->t_last_draw = now;
}

void dml_progress_update(dml_progress *p, long step, float loss, float lr)
{
    char detail[48], line_detail[64];
    snprintf(detail, sizeof detail, "  loss %.4f", loss);
    snprintf(line_detail, sizeof line_detail, "  loss %.5f  lr %.3g", loss, lr);
    draw(p, step, detail, line_detail);
}

void dml_progress_count(dml_progress *p, long done)
{
    draw(p, done, "", "");
    if (done >= p->total && p->bar_drawn) {
        fputc('\n', p->out);
        p->bar_drawn = 0;
    }
}

void dml_progress_note(dml_progress *p, const char *fmt, ...)
{
    if (!p->out)
        return;
    if (p->bar_drawn) {
        fputs("\r\033[K", p->out);
        p->bar_drawn = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->out, fmt, ap);
    va_end(ap);
    fflush(p->out);
}

void dml_progress_finish(dml_progress *p, long step)
{
    char took[32];
    format_duration(took, sizeof took, dml_now() - p->t_start);
    dml_progress_note(p, "%ld steps in %s\n", step - p->start_step, took);
}
