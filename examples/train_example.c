/* train_example: training from memory through include/dml.h only, as a program (or a Python
 * package over ctypes) holding its rows as arrays does. It makes four Gaussian blobs, trains
 * an encoder on them with a config given as text and one override, prints the progress from
 * the callback, stops cleanly on Ctrl-C, evaluates the model on the rows and saves it.
 *
 * Build against the installed library and run:
 *     cc examples/train_example.c $(pkg-config --cflags --libs dml) -lm -o train_example
 *     ./train_example model.h5
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <dml.h>

#define N 800
#define D 16
#define CLASSES 4

static volatile int stop; /* set by Ctrl-C; dml_train stops at the next step */

static void on_sigint(int sig)
{
    (void)sig;
    stop = 1;
}

/* A standard normal value (Box-Muller over a small LCG: the example needs no library). */
static float normal(unsigned long long *s)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        *s = *s * 6364136223846793005ull + 1442695040888963407ull;
        u[i] = ((*s >> 11) + 1.0) / 9007199254740994.0;
    }
    return (float)(sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]));
}

static int on_progress(void *ctx, const dml_train_progress *p)
{
    (void)ctx;
    if (p->n_metrics > 0) {
        printf("step %ld of %ld: validation", p->step, p->total_steps);
        for (int i = 0; i < p->n_metrics; i++)
            printf(" %s %.4f", p->metric_names[i], p->metric_values[i]);
        printf("\n");
    } else if (p->step % 20 == 0) {
        printf("step %ld of %ld: loss %.4f, lr %.2g\n", p->step, p->total_steps, p->loss, p->lr);
    }
    return 0; /* nonzero would stop the run */
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "model.h5";
    float *x = malloc(sizeof(float) * N * D), centers[CLASSES * D];
    int64_t *y = malloc(sizeof(int64_t) * N);
    if (!x || !y)
        return 1;
    unsigned long long seed = 42;
    for (int i = 0; i < CLASSES * D; i++)
        centers[i] = normal(&seed);
    for (int i = 0; i < N; i++) {
        y[i] = i % CLASSES;
        for (int j = 0; j < D; j++)
            x[i * D + j] = centers[y[i] * D + j] + normal(&seed);
    }

    /* The config file's schema as text; the override as dml train --set takes it. */
    const char *config = "model: {hidden: [32], dim: 8}\n"
                         "train: {batch_size: 64, steps: 100, eval_every: 50}\n"
                         "sampler: {m: 16}\n"
                         "pq: {m: 2, k: 16}\n";
    const char *const sets[] = {"data.normalize=standardize"};
    dml_train_data data = {.x = x, .n = N, .d = D, .y = y};
    dml_train_options opts = {.callback = on_progress, .stop = &stop};
    signal(SIGINT, on_sigint);

    char msg[512];
    dml_model *m;
    dml_status st = dml_train(config, sets, 1, &data, &opts, &m, msg, sizeof msg);
    if (st != DML_OK) {
        fprintf(stderr, "%s: %s\n", dml_status_name(st), msg); /* DML_ERR_INTERRUPTED on Ctrl-C */
        return 1;
    }
    dml_metrics *mt;
    dml_eval_data rows = {.x = x, .n = N, .d = D, .y = y};
    if (dml_evaluate(m, &rows, 1, NULL, &mt, msg, sizeof msg) == DML_OK) {
        for (int i = 0; i < dml_metrics_count(mt); i++)
            printf("%-20s %.4f\n", dml_metrics_name(mt, i), dml_metrics_value(mt, i));
        dml_metrics_free(mt);
    }
    st = dml_model_save(m, path, msg, sizeof msg);
    if (st == DML_OK)
        printf("saved %s: %d features -> %d-dim embeddings\n", path, dml_model_dim_in(m),
               dml_model_dim_out(m));
    else
        fprintf(stderr, "%s\n", msg);
    dml_model_free(m);
    free(x);
    free(y);
    return st == DML_OK ? 0 : 1;
}
