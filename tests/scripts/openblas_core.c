/* Prints the OpenBLAS kernel this process runs (OPENBLAS_CORETYPE, or the CPU's own), for
 * tests/scripts/test_kernels.sh. */
#include <stdio.h>

char *openblas_get_corename(void); /* OpenBLAS's own, not in Debian's cblas.h */

int main(void)
{
    printf("%s\n", openblas_get_corename());
    return 0;
}
