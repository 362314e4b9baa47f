/* Class labels as dense ids: any int32 values, so a label's count and its relevance test are
 * array lookups rather than searches. */
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int dml_labels_distinct(const int32_t *v, int n, int32_t **values)
{
    int32_t *u = malloc((size_t)(n > 0 ? n : 1) * sizeof *u);
    *values = u;
    if (!u)
        return -1;
    memcpy(u, v, (size_t)(n > 0 ? n : 0) * sizeof *u);
    qsort(u, (size_t)(n > 0 ? n : 0), sizeof *u, cmp_i32);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (k == 0 || u[i] != u[k - 1])
            u[k++] = u[i];
    return k;
}

int dml_labels_find(const int32_t *values, int k, int32_t label)
{
    const int32_t *p = bsearch(&label, values, (size_t)k, sizeof *values, cmp_i32);
    return p ? (int)(p - values) : -1;
}
