/* report.html (self-contained, well formed enough, rendered by headless Chromium into a
 * non-blank PNG), the PCA behind its scatter, and the Embedding Projector files. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "eval/eval.h"
#include "testutil.h"

#define CHROMIUM "/usr/bin/chromium"

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = strstr(s, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* A run that looks like one: a decaying noisy loss, two validation metrics rising, a final
 * result with PQ twins, and 3000 embeddings in 6 labelled clusters. */
typedef struct run {
    float loss[500];
    long val_steps[10];
    double val[10 * 2];
    dml_eval_result final;
    float emb[3000 * 16];
    int32_t labels[3000];
} run;

static void make_run(run *r, dml_report *rep)
{
    memset(r, 0, sizeof *r);
    float noise[500];
    tu_fill_normal(noise, 500, 0.05f, 61);
    for (int i = 0; i < 500; i++)
        r->loss[i] = 0.2f + expf(-(float)i / 120.0f) + noise[i];
    for (int v = 0; v < 10; v++) {
        r->val_steps[v] = 50 * (v + 1);
        r->val[v * 2] = 0.3 + 0.05 * v;     /* map_at_r */
        r->val[v * 2 + 1] = 0.5 + 0.04 * v; /* precision_at_1 */
    }
    const char *names[] = {"precision_at_1", "map_at_r", "nmi", "quantization_mse",
                           "pq_recall_at_r", "pq_precision_at_1", "pq_map_at_r"};
    const double values[] = {0.87, 0.61, 0.72, 0.0042, 0.93, 0.84, 0.57};
    for (int i = 0; i < 7; i++) {
        snprintf(r->final.values[i].name, sizeof r->final.values[i].name, "%s", names[i]);
        r->final.values[i].value = values[i];
    }
    r->final.n_values = 7;
    r->final.n_queries = r->final.n_db = 3000;
    r->final.seconds = 1.25;
    tu_fill_normal(r->emb, 3000 * 16, 1.0f, 62);
    for (int i = 0; i < 3000; i++) {
        r->labels[i] = i / 500; /* sorted by label, as many datasets are */
        r->emb[i * 16 + r->labels[i]] += 6.0f;
    }
    static const char *const val_names[] = {"map_at_r", "precision_at_1"};
    *rep = (dml_report){.title = "demo <run>",
                        .config_text = "name: demo\nmodel:\n  hidden: [256, 128]  # <not a tag>\n",
                        .loss = r->loss,
                        .n_steps = 500,
                        .val_steps = r->val_steps,
                        .val_values = r->val,
                        .val_names = val_names,
                        .n_val = 10,
                        .n_val_metrics = 2,
                        .final = &r->final,
                        .emb = r->emb,
                        .labels = r->labels,
                        .n_emb = 3000,
                        .d = 16};
}

static void write_report(char *dir, size_t n, char *path, size_t np)
{
    tu_mkdtemp(dir, n);
    snprintf(path, np, "%s/report.html", dir);
    run *r = malloc(sizeof *r);
    dml_report rep;
    make_run(r, &rep);
    dml_error err;
    assert_int_equal(dml_report_write(path, &rep, &err), DML_OK);
    free(r);
}

static void test_report_is_self_contained(void **state)
{
    (void)state;
    char dir[256], path[300];
    write_report(dir, sizeof dir, path, sizeof path);
    size_t len;
    char *html = tu_read_file(path, &len);
    assert_true(len > 10000);
    assert_memory_equal(html, "<!DOCTYPE html>", 15);
    assert_string_equal(html + len - 15, "</body></html>\n");
    /* three charts, each closed; no scripts, links, remote images or fonts */
    assert_int_equal(count(html, "<svg"), 3);
    assert_int_equal(count(html, "</svg>"), 3);
    assert_int_equal(count(html, "<script"), 0);
    assert_int_equal(count(html, "src="), 0);
    assert_int_equal(count(html, "href="), 0);
    assert_int_equal(count(html, "url("), 0);
    assert_int_equal(count(html, "@import"), 0);
    assert_int_equal(count(html, "http"), count(html, "xmlns=\"http://www.w3.org/2000/svg\""));
    assert_int_equal(count(html, "<div"), count(html, "</div>"));
    assert_int_equal(count(html, "<table"), count(html, "</table>"));
    assert_int_equal(count(html, "<tr>"), count(html, "</tr>"));
    assert_int_equal(count(html, "<pre>"), count(html, "</pre>"));
    /* text is escaped */
    assert_non_null(strstr(html, "<title>demo &lt;run&gt; &ndash; dml report</title>"));
    assert_non_null(strstr(html, "# &lt;not a tag&gt;"));
    assert_null(strstr(html, "<not a tag>"));
    /* the pieces: curves, the table with PQ beside float, a 2000-point scatter with a legend */
    assert_non_null(strstr(html, ">Training loss</text>"));
    assert_non_null(strstr(html, ">Validation</text>"));
    assert_non_null(strstr(html, "<td>map_at_r</td><td>0.6100</td><td>0.5700</td>"));
    assert_non_null(strstr(html, "<td>quantization_mse</td><td>&ndash;</td><td>4.200e-03</td>"));
    assert_non_null(strstr(html, "PCA (2000 of 3000 points)"));
    assert_int_equal(count(html, "r=\"2.4\""), 2000);
    for (int l = 0; l < 6; l++) {
        char legend[32];
        snprintf(legend, sizeof legend, ">label %d</text>", l);
        assert_non_null(strstr(html, legend));
    }
    free(html);
    /* nothing but the page is left in the folder (the temporary file was renamed) */
    assert_int_equal(tu_system("test $(ls -A '%s' | wc -l) -eq 1", dir), 0);
    tu_system("rm -rf '%s'", dir);
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c)
{
    int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Decodes an 8-bit RGB or RGBA PNG into rgb[w * h * 3] (malloc'ed). */
static unsigned char *read_png(const char *path, uint32_t *w, uint32_t *h)
{
    size_t len;
    unsigned char *png = (unsigned char *)tu_read_file(path, &len), *idat = malloc(len);
    size_t n_idat = 0, at = 8;
    int bpp = 0;
    assert_memory_equal(png, "\x89PNG\r\n\x1a\n", 8);
    while (at + 8 <= len) {
        uint32_t n = be32(png + at);
        const unsigned char *type = png + at + 4, *data = png + at + 8;
        if (!memcmp(type, "IHDR", 4)) {
            *w = be32(data);
            *h = be32(data + 4);
            assert_int_equal(data[8], 8); /* bit depth */
            assert_true(data[9] == 2 || data[9] == 6);
            assert_int_equal(data[12], 0); /* not interlaced */
            bpp = data[9] == 2 ? 3 : 4;
        } else if (!memcmp(type, "IDAT", 4)) {
            memcpy(idat + n_idat, data, n);
            n_idat += n;
        }
        at += 12 + (size_t)n;
    }
    assert_true(bpp > 0);
    size_t stride = (size_t)*w * bpp;
    uLongf raw_len = (uLongf)((stride + 1) * *h);
    unsigned char *raw = malloc(raw_len), *px = malloc(stride * *h);
    assert_int_equal(uncompress(raw, &raw_len, idat, (uLong)n_idat), Z_OK);
    assert_int_equal(raw_len, (stride + 1) * *h);
    for (uint32_t y = 0; y < *h; y++) { /* undo the per-row filters */
        const unsigned char *in = raw + y * (stride + 1) + 1;
        unsigned char *out = px + y * stride, *up = y ? out - stride : NULL;
        int filter = in[-1];
        for (size_t i = 0; i < stride; i++) {
            int a = i >= (size_t)bpp ? out[i - bpp] : 0, b = up ? up[i] : 0;
            int c = up && i >= (size_t)bpp ? up[i - bpp] : 0;
            int pred = filter == 0 ? 0 : filter == 1 ? a : filter == 2 ? b
                     : filter == 3 ? (a + b) / 2 : paeth(a, b, c);
            out[i] = (unsigned char)(in[i] + pred);
        }
    }
    unsigned char *rgb = malloc((size_t)*w * *h * 3);
    for (size_t p = 0; p < (size_t)*w * *h; p++)
        memcpy(rgb + p * 3, px + p * bpp, 3);
    free(png);
    free(idat);
    free(raw);
    free(px);
    return rgb;
}

static void test_report_renders_in_chromium(void **state)
{
    (void)state;
    if (access(CHROMIUM, X_OK) != 0)
        TU_SKIP(CHROMIUM " is not installed");
    char dir[256], path[300], png[300];
    write_report(dir, sizeof dir, path, sizeof path);
    snprintf(png, sizeof png, "%s/out.png", dir);
    int rc = tu_system("cd '%s' && timeout 120 " CHROMIUM " --headless --no-sandbox --disable-gpu "
                       "--disable-quic --no-first-run --disable-background-networking "
                       "--disable-component-update --disable-sync --user-data-dir='%s/profile' "
                       "--screenshot='%s' --window-size=1200,1600 'file://%s' >/dev/null 2>&1",
                       dir, dir, png, path);
    if (access(png, R_OK) != 0)
        fail_msg("chromium (exit %d) wrote no %s", rc, png);
    uint32_t w = 0, h = 0;
    unsigned char *rgb = read_png(png, &w, &h);
    assert_int_equal(w, 1200);
    assert_int_equal(h, 1600);
    /* not blank: plenty of pixels unlike the page background, in many colours */
    size_t differ = 0, n = (size_t)w * h;
    int colours = 0;
    static unsigned char seen[1 << 15]; /* 5 bits per channel */
    memset(seen, 0, sizeof seen);
    for (size_t p = 0; p < n; p++) {
        const unsigned char *c = rgb + p * 3;
        differ += memcmp(c, rgb, 3) != 0;
        int key = (c[0] >> 3) << 10 | (c[1] >> 3) << 5 | c[2] >> 3;
        colours += !seen[key];
        seen[key] = 1;
    }
    free(rgb);
    print_message("report render: %.1f%% non-background pixels, %d colours\n",
                  100.0 * (double)differ / (double)n, colours);
    assert_true(differ > n / 10);
    assert_true(colours > 50);
    tu_system("rm -rf '%s'", dir);
}

/* Points spread along u (sd 5) and v (sd 1), orthonormal in 5-D, with a little noise: the
 * first component follows u, the second v. */
static void test_pca_finds_the_spread(void **state)
{
    (void)state;
    enum { N = 400, D = 5 };
    float x[N * D], noise[N * D], t[N], s[N], out[N * 2];
    const float u[D] = {0.6f, 0.8f, 0, 0, 0}, v[D] = {0, 0, 0, 0.6f, -0.8f};
    tu_fill_normal(t, N, 5.0f, 71);
    tu_fill_normal(s, N, 1.0f, 72);
    tu_fill_normal(noise, N * D, 0.01f, 73);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++)
            x[i * D + j] = 3.0f + t[i] * u[j] + s[i] * v[j] + noise[i * D + j];
    double explained[2];
    assert_int_equal(dml_pca2(x, N, D, out, explained, NULL), DML_OK);
    double c0 = 0, c1 = 0, n0 = 0, n1 = 0, nt = 0, ns = 0, mt = 0, ms = 0;
    for (int i = 0; i < N; i++) {
        mt += t[i] / N;
        ms += s[i] / N;
    }
    for (int i = 0; i < N; i++) {
        c0 += out[2 * i] * (t[i] - mt);
        c1 += out[2 * i + 1] * (s[i] - ms);
        n0 += out[2 * i] * out[2 * i];
        n1 += out[2 * i + 1] * out[2 * i + 1];
        nt += (t[i] - mt) * (t[i] - mt);
        ns += (s[i] - ms) * (s[i] - ms);
    }
    /* the largest entry of each direction is positive: u's 0.8 and v's -0.8 flipped */
    assert_true(c0 / sqrt(n0 * nt) > 0.999);
    assert_true(c1 / sqrt(n1 * ns) < -0.999);
    assert_true(explained[0] > 0.9 && explained[0] < 0.97);
    assert_true(explained[1] > 0.03 && explained[0] + explained[1] > 0.999);
    assert_int_equal(dml_pca2(x, 0, D, out, NULL, NULL), DML_ERR_USAGE);
}

static void test_projector_files(void **state)
{
    (void)state;
    char dir[256], path[300];
    tu_mkdtemp(dir, sizeof dir);
    const float x[3 * 2] = {0.5f, -1.25f, 3.0e-7f, 2.0f, 123456.7f, 0.0f};
    const int32_t y[3] = {4, 0, 17};
    assert_int_equal(dml_projector_write(dir, x, y, 3, 2, NULL), DML_OK);
    snprintf(path, sizeof path, "%s/vectors.tsv", dir);
    char *v = tu_read_file(path, NULL);
    assert_string_equal(v, "0.5\t-1.25\n3e-07\t2\n123456.7\t0\n");
    free(v);
    snprintf(path, sizeof path, "%s/metadata.tsv", dir);
    char *m = tu_read_file(path, NULL);
    assert_string_equal(m, "4\n0\n17\n");
    free(m);
    /* without labels, only the vectors */
    tu_system("rm -f '%s'/*.tsv", dir);
    assert_int_equal(dml_projector_write(dir, x, NULL, 3, 2, NULL), DML_OK);
    assert_int_equal(access(path, F_OK), -1);
    tu_system("rm -rf '%s'", dir);
}

static void test_write_errors(void **state)
{
    (void)state;
    dml_report rep = {.title = "x"};
    dml_error err;
    assert_int_equal(dml_report_write("/nonexistent-dir/report.html", &rep, &err), DML_ERR_IO);
    assert_string_equal(err.file, "/nonexistent-dir/report.html");
    rep.n_steps = 3; /* and no loss array */
    assert_int_equal(dml_report_write("/tmp/never.html", &rep, &err), DML_ERR_USAGE);
    const float x[2] = {1, 2};
    assert_int_equal(dml_projector_write("/nonexistent-dir", x, NULL, 1, 2, &err), DML_ERR_IO);
    assert_string_equal(err.file, "/nonexistent-dir/vectors.tsv");
}

/* An empty run still makes a page: no curves, no scatter, a note instead. */
static void test_report_without_data(void **state)
{
    (void)state;
    char dir[256], path[300];
    tu_mkdtemp(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/report.html", dir);
    dml_report rep = {.title = "empty"};
    assert_int_equal(dml_report_write(path, &rep, NULL), DML_OK);
    char *html = tu_read_file(path, NULL);
    assert_non_null(strstr(html, "No training steps were recorded."));
    assert_non_null(strstr(html, "No validation metrics were recorded."));
    assert_int_equal(count(html, "<svg"), 0);
    free(html);
    tu_system("rm -rf '%s'", dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_is_self_contained),
        cmocka_unit_test(test_report_renders_in_chromium),
        cmocka_unit_test(test_pca_finds_the_spread),
        cmocka_unit_test(test_projector_files),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_report_without_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
