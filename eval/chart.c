/* Inline SVG charts for the report: a frame with a grid, ticks at 1, 2 or 5 x 10^k and axis
 * labels; lines, points and a legend drawn in data coordinates. */
#include <math.h>
#include <string.h>

#include "eval/eval.h"

const char *const dml_chart_palette[DML_CHART_COLORS] = {
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

/* A step of 1, 2 or 5 x 10^k giving about target intervals over span. */
static double nice_step(double span, int target)
{
    double raw = span / target, mag = pow(10.0, floor(log10(raw)));
    double r = raw / mag;
    return (r < 1.5 ? 1.0 : r < 3.5 ? 2.0 : r < 7.5 ? 5.0 : 10.0) * mag;
}

/* [lo, hi] widened by pad of its span, then to whole ticks (and to a non-empty span). */
static void nice_range(double *lo, double *hi, int target, double pad)
{
    if (!isfinite(*lo) || !isfinite(*hi)) {
        *lo = 0.0;
        *hi = 1.0;
    }
    if (*hi - *lo <= 1e-12 * fmax(1.0, fabs(*hi))) {
        double pad = fabs(*hi) > 0.0 ? 0.1 * fabs(*hi) : 1.0;
        *lo -= pad;
        *hi += pad;
    }
    double margin = pad * (*hi - *lo);
    *lo -= margin;
    *hi += margin;
    double step = nice_step(*hi - *lo, target);
    *lo = floor(*lo / step + 1e-9) * step;
    *hi = ceil(*hi / step - 1e-9) * step;
}

/* A tick label with as many decimals as the step needs; 12000 as 12k. */
static void tick_label(char *buf, size_t n, double v, double step)
{
    if (fabs(v) < 1e-12 * step)
        v = 0.0;
    if (step >= 1000.0 && fmod(fabs(v), 1000.0) < 1e-9)
        snprintf(buf, n, "%.0fk", v / 1000.0);
    else if (step >= 1.0)
        snprintf(buf, n, "%.0f", v);
    else
        snprintf(buf, n, "%.*f", (int)ceil(-log10(step) - 1e-9), v);
}

double dml_chart_x(const dml_chart *c, double x)
{
    return c->left + (x - c->x0) / (c->x1 - c->x0) * (c->width - c->left - c->right);
}

double dml_chart_y(const dml_chart *c, double y)
{
    return c->height - c->bottom - (y - c->y0) / (c->y1 - c->y0) * (c->height - c->top - c->bottom);
}

void dml_html_text(FILE *f, const char *s)
{
    for (; *s; s++)
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

void dml_chart_begin(FILE *f, dml_chart *c, const char *title, const char *xlabel,
                     const char *ylabel)
{
    nice_range(&c->x0, &c->x1, 6, 0.0); /* steps start at the frame */
    nice_range(&c->y0, &c->y1, 5, 0.03); /* values stay off it */
    double px0 = c->left, px1 = c->width - c->right, py0 = c->top, py1 = c->height - c->bottom;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Liberation Sans, Arial, "
               "sans-serif\" font-size=\"12\" role=\"img\">\n",
            c->width, c->height, c->width, c->height);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>\n", c->width, c->height);
    fprintf(f, "<text x=\"%.1f\" y=\"18\" font-size=\"15\" font-weight=\"bold\" "
               "text-anchor=\"middle\" fill=\"#222\">", (px0 + px1) / 2);
    dml_html_text(f, title);
    fputs("</text>\n", f);
    char label[32];
    double sx = nice_step(c->x1 - c->x0, 6), sy = nice_step(c->y1 - c->y0, 5);
    for (double t = c->x0; t <= c->x1 + 1e-9 * sx; t += sx) {
        double x = dml_chart_x(c, t);
        tick_label(label, sizeof label, t, sx);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>"
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#333\">%s</text>\n",
                x, py0, x, py1, x, py1, x, py1 + 5, x, py1 + 19, label);
    }
    for (double t = c->y0; t <= c->y1 + 1e-9 * sy; t += sy) {
        double y = dml_chart_y(c, t);
        tick_label(label, sizeof label, t, sy);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e6e6e6\"/>"
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#444\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#333\">%s</text>\n",
                px0, y, px1, y, px0 - 5, y, px0, y, px0 - 8, y + 4, label);
    }
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
               "stroke=\"#444\"/>\n", px0, py0, px1 - px0, py1 - py0);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\" fill=\"#222\">",
            (px0 + px1) / 2, c->height - 8);
    dml_html_text(f, xlabel);
    fprintf(f, "</text>\n<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"13\" "
               "fill=\"#222\" transform=\"rotate(-90 16 %.1f)\">", (py0 + py1) / 2, (py0 + py1) / 2);
    dml_html_text(f, ylabel);
    fputs("</text>\n", f);
}

void dml_chart_line(FILE *f, const dml_chart *c, const double *x, const double *y, int n,
                    const char *color, double width)
{
    int open = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) { /* a gap (a diverged or missing value) */
            if (open)
                fputs("\"/>\n", f);
            open = 0;
            continue;
        }
        if (!open)
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" "
                       "stroke-linejoin=\"round\" points=\"", color, width);
        open = 1;
        fprintf(f, "%.1f,%.1f ", dml_chart_x(c, x[i]), dml_chart_y(c, y[i]));
    }
    if (open)
        fputs("\"/>\n", f);
}

void dml_chart_points(FILE *f, const dml_chart *c, const double *x, const double *y, int n,
                      const char *color, double radius)
{
    for (int i = 0; i < n; i++)
        if (isfinite(x[i]) && isfinite(y[i]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\"/>\n",
                    dml_chart_x(c, x[i]), dml_chart_y(c, y[i]), radius, color);
}

void dml_chart_legend(FILE *f, double x, double y, const char *const *names,
                      const char *const *colors, int n)
{
    double w = 0.0;
    for (int i = 0; i < n; i++)
        w = fmax(w, 7.2 * (double)strlen(names[i]));
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"#fff\" "
               "fill-opacity=\"0.85\" stroke=\"#bbb\" rx=\"3\"/>\n", x, y, w + 34, 8 + 18 * n);
    for (int i = 0; i < n; i++) {
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\" fill=\"#222\">", x + 8, y + 7 + 18 * i, colors[i],
                x + 26, y + 17.5 + 18 * i);
        dml_html_text(f, names[i]);
        fputs("</text>\n", f);
    }
}

void dml_chart_end(FILE *f)
{
    fputs("</svg>\n", f);
}
