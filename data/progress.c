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
    p->is_tty = isatty(fileno(out));
    p->total = total;
    p->start_step = start_step;
    p->t_start = p->t_last_draw = dml_now();
    p->line_every = total >= 20 ? total / 20 : 1;
    p->bar_drawn = 0;
}

static void format_duration(char *buf, size_t n, double seconds)
{
    long s = seconds > 0 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else
        snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

void dml_progress_update(dml_progress *p, long step, float loss, float lr)
{
    double now = dml_now();
    long done = step - p->start_step;
    double rate = done > 0 ? (double)done / (now - p->t_start + 1e-9) : 0.0;
    char eta[32];
    format_duration(eta, sizeof eta, rate > 0 ? (double)(p->total - step) / rate : 0.0);
    if (p->is_tty) {
        if (now - p->t_last_draw < 0.1 && step < p->total)
            return;
        int filled = p->total > 0 ? (int)((double)BAR_WIDTH * (double)step / (double)p->total) : 0;
        char bar[BAR_WIDTH + 1];
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
        fprintf(p->out, "\r[%s] %ld/%ld  %.1f steps/s  loss %.4f  ETA %s \033[K", bar, step,
                p->total, rate, loss, eta);
        p->bar_drawn = 1;
    } else {
        if (step % p->line_every != 0 && step < p->total)
            return;
        fprintf(p->out, "step %ld/%ld  loss %.5f  lr %.3g  %.1f steps/s  ETA %s\n", step, p->total,
                loss, lr, rate, eta);
    }
    fflush(p->out);
    p->t_last_draw = now;
}

void dml_progress_note(dml_progress *p, const char *fmt, ...)
{
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
