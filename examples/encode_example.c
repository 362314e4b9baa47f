/* encode_example: what a search service does with a model dml trained, through include/dml.h
 * only. It opens a model.h5, embeds a few vectors, encodes the embeddings with the model's PQ
 * codebooks and finds each vector's nearest codes by ADC.
 *
 * Build against the installed library and run:
 *     cc examples/encode_example.c $(pkg-config --cflags --libs dml) -o encode_example
 *     ./encode_example runs/demo/model.h5
 */
#include <stdio.h>
#include <stdlib.h>

#include <dml.h>

#define N_ROWS 8
#define K 3

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "model.h5";
    char msg[512];
    dml_model *model;
    dml_status st = dml_model_open(path, &model, msg, sizeof msg);
    if (st != DML_OK) {
        fprintf(stderr, "encode_example: %s\n", msg);
        return 1;
    }
    int d_in = dml_model_dim_in(model), dim = dml_model_dim_out(model);
    printf("%s: %d features -> %d-dim embeddings (%s)\n", path, d_in, dim,
           dml_model_metric(model));

    /* A few made-up input rows; a service would pass its own. */
    float *x = malloc((size_t)N_ROWS * d_in * sizeof(float));
    float *emb = malloc((size_t)N_ROWS * dim * sizeof(float));
    for (int i = 0; i < N_ROWS; i++)
        for (int j = 0; j < d_in; j++)
            x[i * d_in + j] = (float)((i * 31 + j * 17) % 13) / 6.0f - 1.0f;
    st = dml_model_encode(model, x, N_ROWS, emb);
    if (st != DML_OK) {
        fprintf(stderr, "encode_example: encode failed (%s)\n", dml_status_name(st));
        return 1;
    }
    printf("row 0 embedding starts %.4f %.4f\n", emb[0], dim > 1 ? emb[1] : 0.0f);

    const dml_pq *pq = dml_model_pq(model);
    if (!pq) {
        printf("the model has no PQ codebooks: nothing to search\n");
    } else {
        size_t cs = dml_pq_code_size(pq);
        unsigned char *codes = malloc(N_ROWS * cs);
        float dist[N_ROWS * K];
        int64_t ids[N_ROWS * K];
        dml_pq_encode(pq, emb, N_ROWS, codes);
        st = dml_pq_search(pq, codes, N_ROWS, emb, N_ROWS, K, dist, ids);
        if (st != DML_OK) {
            fprintf(stderr, "encode_example: search failed (%s)\n", dml_status_name(st));
            return 1;
        }
        printf("%zu-byte PQ codes; the %d nearest codes of each row (ADC squared L2):\n", cs, K);
        for (int i = 0; i < N_ROWS; i++) {
            printf("  row %d:", i);
            for (int k = 0; k < K; k++)
                printf(" %lld (%.4f)", (long long)ids[i * K + k], dist[i * K + k]);
            printf("\n");
        }
        free(codes);
    }
    free(x);
    free(emb);
    dml_model_free(model);
    return 0;
}
