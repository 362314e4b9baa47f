/* A seeded, splittable random number generator (xoshiro256**), owned by whoever
 * needs randomness: never global, so a run is reproducible from its seed. */
#ifndef DML_DATA_RNG_H
#define DML_DATA_RNG_H

#include <stdint.h>

typedef struct dml_rng {
    uint64_t s[4];
} dml_rng;

/* Seed from a 64-bit value (expanded by splitmix64; any seed, 0 included, is fine). */
void dml_rng_seed(dml_rng *r, uint64_t seed);
/* A new generator whose stream is independent of the parent's; advances the parent. */
dml_rng dml_rng_split(dml_rng *parent);

uint64_t dml_rng_u64(dml_rng *r);
/* Uniform in [0, n), unbiased (Lemire's multiply-and-reject). n > 0. */
uint32_t dml_rng_below(dml_rng *r, uint32_t n);
/* Uniform float in [0, 1). */
float dml_rng_uniform(dml_rng *r);
/* Standard normal (the Ziggurat method). */
float dml_rng_normal(dml_rng *r);
/* n standard normals into out: the same stream as n calls of dml_rng_normal, faster. */
void dml_rng_normals(dml_rng *r, float *out, int n);
/* Fisher-Yates shuffle of n ints. */
void dml_rng_shuffle(dml_rng *r, int *v, int n);

#endif
