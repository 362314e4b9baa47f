/* Sizes as people write them, read the same way by the config (data.memory_limit) and the
 * command line (dml eval --memory-limit). */
#ifndef DML_DATA_SIZE_H
#define DML_DATA_SIZE_H

/* "512MB", "4GB", "1.5 GiB", "64k", "100B": a number >= 0 and a unit (K, M, G, T: powers of
 * 1024, an "i" and a "B" optional; B alone: bytes; any case; spaces between). A bare number is
 * MB, as data.memory_limit has always read it. 1 and *bytes set when s is such a size, else 0. */
int dml_size_parse(const char *s, double *bytes);

#endif
