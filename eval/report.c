/* report.html: one self-contained page (inline SVG and CSS; no scripts, fonts or links) with the
 * training loss, the validation metrics, the final metrics table (float and PQ), a PCA scatter of
 * test embeddings coloured by label, and the run's config. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

#define LOSS_POINTS 800 /* the loss curve is averaged into at most this many buckets */
#define LEGEND_MAX 20   /* classes named in the scatter's legend */
#define CHART_W 550
#define CHART_H 340

static const char STYLE[] =
    "body{font-family:'DejaVu Sans','Liberation Sans',Arial,sans-serif;color:#222;"
    "margin:20px auto;max-width:1160px;padding:0 10px;background:#fafafa}"
    "h1{font-size:26px;margin:0 0 4px}h2{font-size:18px;margin:22px 0 8px}"
    ".sub{color:#555;margin:0 0 14px}.row{display:flex;gap:16px;flex-wrap:wrap;"
    "align-items:flex-start}.card{background:#fff;border:1px solid #ddd;border-radius:6px;"
    "padding:8px}table{border-collapse:collapse;font-size:14px}"
    "th,td{padding:5px 14px;border-bottom:1px solid #e3e3e3;text-align:right}"
    "th{background:#f0f0f0}td:first-child,th:first-child{text-align:left;font-family:monospace}"
    ".note{color:#555;font-size:13px;max-width:380px}.empty{color:#777;padding:40px 20px}"
    "pre{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px;font-size:13px;"
    "overflow:auto}";

static void range_of(const double *v, int n, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) {
            *lo = fmin(*lo, v[i]);
            *hi = fmax(*hi, v[i]);
        }
}

static void empty_card(FILE *f, const char *what)
{
    fprintf(f, "<div class=\"card\" style=\"width:%dpx\"><p class=\"empty\">%s</p></div>\n",
            CHART_W, what);
}

/* What the charts draw, computed before a byte of the page is written: running out of memory
 * fails the report (DML_ERR_NOMEM, nothing written) instead of leaving a chart out. */
typedef struct page {
    const dml_report *r;
    const char *path;      /* report.html, named by the errors */
    int m_loss;            /* loss buckets: min(n_steps, LOSS_POINTS) */
    double *loss;          /* [3, m_loss] each bucket's mean step, mean loss, moving average */
    double *val;           /* [1 + n_val_metrics, n_val] the steps, then each metric's values */
    int n_pts, n_classes;  /* scatter points (an even sample of the embeddings), their labels */
    double *pts;           /* [2, n_pts] the sample on PC 1, then on PC 2 */
    int32_t *lab, *classes; /* [n_pts] each point's label, [n_classes] the distinct ones */
    double explained[2];   /* the variance along PC 1 and PC 2 */
} page;

/* The loss averaged into buckets (x: their mean step), and a moving average of that. */
static void loss_data(const dml_report *r, int m, double *x)
{
    long n = r->n_steps;
    double *y = x + m, *smooth = y + m;
    for (int b = 0; b < m; b++) {
        long i0 = n * b / m, i1 = n * (b + 1) / m;
        double sx = 0.0, sy = 0.0;
        int finite = 0;
        for (long i = i0; i < i1; i++) {
            sx += r->steps ? (double)r->steps[i] : (double)(i + 1);
            if (isfinite(r->loss[i])) {
                sy += r->loss[i];
                finite++;
            }
        }
        x[b] = sx / (double)(i1 - i0);
        y[b] = finite ? sy / finite : NAN;
    }
    int half = m / 40;
    for (int b = 0; b < m; b++) {
        double s = 0.0;
        int k = 0;
        for (int j = b - half; j <= b + half; j++)
            if (j >= 0 && j < m && isfinite(y[j])) {
                s += y[j];
                k++;
            }
        smooth[b] = k ? s / k : NAN;
    }
}

static void loss_chart(FILE *f, const page *pg)
{
    int m = pg->m_loss;
    if (m == 0) {
        empty_card(f, "No training steps were recorded.");
        return;
    }
    const double *x = pg->loss, *y = x + m, *smooth = y + m;
    int half = m / 40;
    dml_chart c = {CHART_W, CHART_H, 64, 16, 30, 46, 0, 0, 0, 0};
    range_of(x, m, &c.x0, &c.x1);
    range_of(y, m, &c.y0, &c.y1);
    c.x0 = fmin(c.x0, 0.0);
    fputs("<div class=\"card\">", f);
    dml_chart_begin(f, &c, "Training loss", "step", "loss");
    int smoothed = half > 0;
    dml_chart_line(f, &c, x, y, m, smoothed ? "#9ecae1" : dml_chart_palette[0], 1.2);
    if (smoothed)
        dml_chart_line(f, &c, x, smooth, m, dml_chart_palette[0], 2.2);
    const char *names[2] = {"loss", "moving average"};
    const char *colors[2] = {smoothed ? "#9ecae1" : dml_chart_palette[0], dml_chart_palette[0]};
    dml_chart_legend(f, c.width - c.right - 150, c.top + 8, names, colors, 1 + smoothed);
    dml_chart_end(f);
    fputs("</div>\n", f);
}

static void validation_chart(FILE *f, const page *pg)
{
    const dml_report *r = pg->r;
    int n = r->n_val, k = r->n_val_metrics;
    if (!pg->val) {
        empty_card(f, "No validation metrics were recorded.");
        return;
    }
    const double *x = pg->val, *y = x + n;
    dml_chart c = {CHART_W, CHART_H, 64, 16, 30, 46, 0, 0, 0, 0};
    range_of(x, n, &c.x0, &c.x1);
    range_of(y, n * k, &c.y0, &c.y1);
    c.x0 = fmin(c.x0, 0.0);
    fputs("<div class=\"card\">", f);
    dml_chart_begin(f, &c, "Validation", "step", "metric");
    const char *colors[DML_CHART_COLORS];
    int shown = k < DML_CHART_COLORS ? k : DML_CHART_COLORS;
    for (int m = 0; m < shown; m++) {
        colors[m] = dml_chart_palette[m];
        dml_chart_line(f, &c, x, y + (size_t)m * n, n, colors[m], 2.0);
        dml_chart_points(f, &c, x, y + (size_t)m * n, n, colors[m], 3.0);
    }
    /* bottom right: metrics mostly rise, so that corner is usually empty */
    double longest = 0.0;
    for (int m = 0; m < shown; m++)
        longest = fmax(longest, 7.2 * (double)strlen(r->val_names[m]));
    dml_chart_legend(f, c.width - c.right - longest - 44, c.height - c.bottom - 16 - 18 * shown,
                     r->val_names, colors, shown);
    dml_chart_end(f);
    fputs("</div>\n", f);
}

static void value_cell(FILE *f, int present, double v)
{
    if (!present)
        fputs("<td>&ndash;</td>", f);
    else if (isnan(v))
        fputs("<td>n/a</td>", f);
    else if (v != 0.0 && fabs(v) < 0.01)
        fprintf(f, "<td>%.3e</td>", v);
    else
        fprintf(f, "<td>%.4f</td>", v);
}

static void metrics_table(FILE *f, const dml_eval_result *res)
{
    fputs("<div class=\"card\"><table>\n<tr><th>metric</th><th>float</th><th>PQ (ADC)</th></tr>\n",
          f);
    dml_eval_row rows[DML_EVAL_MAX_METRICS];
    int n = dml_eval_table_rows(res, rows);
    for (int i = 0; i < n; i++) {
        fputs("<tr><td>", f);
        dml_html_text(f, rows[i].name);
        fputs("</td>", f);
        value_cell(f, rows[i].has_float, rows[i].value_float);
        value_cell(f, rows[i].has_pq, rows[i].value_pq);
        fputs("</tr>\n", f);
    }
    fprintf(f, "</table>\n<p class=\"note\">%d queries against %d references; %d skipped (no "
               "relevant reference, R = 0); %.2f s. PQ: the queries stay float, the references are "
               "their codes (asymmetric distance).</p></div>\n",
            res->n_queries, res->n_db, res->skipped_queries, res->seconds);
}

/* The scatter's points: an even sample of the embeddings on their first two principal
 * components, and its labels. */
static dml_status scatter_data(const dml_report *r, page *pg, dml_error *err)
{
    int m = r->n_emb < DML_REPORT_MAX_POINTS ? r->n_emb : DML_REPORT_MAX_POINTS, d = r->d;
    float *sample = malloc((size_t)m * d * sizeof(float)), *p = malloc((size_t)m * 2 * sizeof(float));
    pg->lab = malloc((size_t)m * sizeof(int32_t));
    pg->pts = malloc((size_t)m * 2 * sizeof(double));
    dml_status st = DML_OK;
    if (!sample || !p || !pg->lab || !pg->pts)
        st = dml_error_set(err, DML_ERR_NOMEM, pg->path, 0, 0, "out of memory for the scatter");
    for (int i = 0; st == DML_OK && i < m; i++) {
        long row = (long)i * r->n_emb / m;
        memcpy(sample + (size_t)i * d, r->emb + (size_t)row * d, (size_t)d * sizeof(float));
        pg->lab[i] = r->labels ? r->labels[row] : 0;
    }
    if (st == DML_OK)
        st = dml_pca2(sample, m, d, p, pg->explained, err);
    if (st == DML_OK && (pg->n_classes = dml_labels_distinct(pg->lab, m, &pg->classes)) < 0)
        st = dml_error_set(err, DML_ERR_NOMEM, pg->path, 0, 0, "out of memory for the scatter");
    for (int i = 0; st == DML_OK && i < m; i++) {
        pg->pts[i] = p[2 * i];
        pg->pts[m + i] = p[2 * i + 1];
    }
    pg->n_pts = st == DML_OK ? m : 0;
    free(sample);
    free(p);
    return st;
}

static void scatter(FILE *f, const page *pg)
{
    const dml_report *r = pg->r;
    int m = pg->n_pts, n_classes = pg->n_classes;
    const double *xy = pg->pts;
    const int32_t *lab = pg->lab, *classes = pg->classes;
    dml_chart c = {620, 540, 60, r->labels ? 140 : 16, 30, 46, 0, 0, 0, 0};
    range_of(xy, m, &c.x0, &c.x1);
    range_of(xy + m, m, &c.y0, &c.y1);
    double pad = 0.03 * (c.x1 - c.x0);
    c.x0 -= pad;
    c.x1 += pad;
    char xl[64], yl[64], title[96];
    snprintf(xl, sizeof xl, "PC 1 (%.1f%% of variance)", 100.0 * pg->explained[0]);
    snprintf(yl, sizeof yl, "PC 2 (%.1f%% of variance)", 100.0 * pg->explained[1]);
    snprintf(title, sizeof title, "Test embeddings, PCA (%d of %d points)", m, r->n_emb);
    fputs("<div class=\"card\">", f);
    dml_chart_begin(f, &c, title, xl, yl);
    /* A stride coprime to m interleaves the classes, so no class is drawn entirely on top. */
    int stride = 7919;
    while (m > 1 && stride % m == 0)
        stride++;
    for (long t = 0; t < m; t++) {
        int i = (int)(t * stride % m), k = dml_labels_find(classes, n_classes, lab[i]);
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.4\" fill=\"%s\" fill-opacity=\"0.75\"/>\n",
                dml_chart_x(&c, xy[i]), dml_chart_y(&c, xy[m + i]),
                dml_chart_palette[k % DML_CHART_COLORS]);
    }
    if (r->labels) {
        int shown = n_classes < LEGEND_MAX ? n_classes : LEGEND_MAX;
        char names[LEGEND_MAX][24];
        const char *name_p[LEGEND_MAX], *colors[LEGEND_MAX];
        for (int k = 0; k < shown; k++) {
            snprintf(names[k], sizeof names[k], "label %d", (int)classes[k]);
            name_p[k] = names[k];
            colors[k] = dml_chart_palette[k % DML_CHART_COLORS];
        }
        dml_chart_legend(f, c.width - c.right + 12, c.top, name_p, colors, shown);
        if (n_classes > shown)
            fprintf(f, "<text x=\"%d\" y=\"%d\" fill=\"#555\">+ %d more</text>\n",
                    c.width - c.right + 14, c.top + 26 + 18 * shown, n_classes - shown);
    }
    dml_chart_end(f);
    fputs("</div>\n", f);
}

/* Every chart's data (pg->r and path set, the rest zero). */
static dml_status page_prepare(page *pg, dml_error *err)
{
    const dml_report *r = pg->r;
    int n = r->n_val, k = r->n_val_metrics;
    pg->m_loss = r->n_steps < LOSS_POINTS ? (int)r->n_steps : LOSS_POINTS;
    if (pg->m_loss > 0 && !(pg->loss = malloc((size_t)pg->m_loss * 3 * sizeof(double))))
        return dml_error_set(err, DML_ERR_NOMEM, pg->path, 0, 0,
                             "out of memory for the loss chart");
    if (pg->m_loss > 0)
        loss_data(r, pg->m_loss, pg->loss);
    if (n > 0 && k > 0) {
        if (!(pg->val = malloc((size_t)n * (1 + (size_t)k) * sizeof(double))))
            return dml_error_set(err, DML_ERR_NOMEM, pg->path, 0, 0,
                                 "out of memory for the validation chart");
        for (int i = 0; i < n; i++)
            pg->val[i] = (double)r->val_steps[i];
        for (int m = 0; m < k; m++)
            for (int i = 0; i < n; i++)
                pg->val[(size_t)(m + 1) * n + i] = r->val_values[(size_t)i * k + m];
    }
    return r->emb && r->n_emb > 0 && r->d > 0 ? scatter_data(r, pg, err) : DML_OK;
}

static void page_free(page *pg)
{
    free(pg->loss);
    free(pg->val);
    free(pg->pts);
    free(pg->lab);
    free(pg->classes);
}

static void write_page(FILE *f, const void *ctx)
{
    const page *pg = ctx;
    const dml_report *r = pg->r;
    const char *title = r->title && *r->title ? r->title : "dml run";
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>", f);
    dml_html_text(f, title);
    fprintf(f, " &ndash; dml report</title>\n<style>%s</style></head>\n<body>\n<h1>", STYLE);
    dml_html_text(f, title);
    fprintf(f, "</h1>\n<p class=\"sub\">dml %s training report: %ld steps", DML_VERSION_STRING,
            r->n_steps);
    if (r->n_steps > 0 && isfinite(r->loss[r->n_steps - 1]))
        fprintf(f, ", final loss %.4g", r->loss[r->n_steps - 1]);
    fprintf(f, ", %d validations.</p>\n<div class=\"row\">\n", r->n_val);
    loss_chart(f, pg);
    validation_chart(f, pg);
    fputs("</div>\n<h2>Final metrics and embeddings</h2>\n<div class=\"row\">\n", f);
    if (r->final)
        metrics_table(f, r->final);
    if (pg->n_pts > 0)
        scatter(f, pg);
    fputs("</div>\n", f);
    if (r->config_text) {
        fputs("<h2>Config</h2>\n<pre>", f);
        dml_html_text(f, r->config_text);
        fputs("</pre>\n", f);
    }
    fputs("</body></html>\n", f);
}

dml_status dml_report_write(const char *path, const dml_report *report, dml_error *err)
{
    if (report->n_steps < 0 || (report->n_steps > 0 && !report->loss) ||
        (report->n_val > 0 && report->n_val_metrics > 0 &&
         (!report->val_steps || !report->val_values || !report->val_names)))
        return dml_error_set(err, DML_ERR_USAGE, path, 0, 0,
                             "report: expected the loss and validation arrays their counts name");
    page pg = {.r = report, .path = path};
    dml_status st = page_prepare(&pg, err);
    if (st == DML_OK)
        st = dml_file_write_stdio(path, "report", write_page, &pg, err);
    page_free(&pg);
    return st;
}
