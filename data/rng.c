#include "data/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void dml_rng_seed(dml_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

dml_rng dml_rng_split(dml_rng *parent)
{
    dml_rng child;
    dml_rng_seed(&child, dml_rng_u64(parent));
    return child;
}

uint64_t dml_rng_u64(dml_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t dml_rng_below(dml_rng *r, uint32_t n)
{
    uint64_t m = (uint64_t)(uint32_t)(dml_rng_u64(r) >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = -n % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(dml_rng_u64(r) >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float dml_rng_uniform(dml_rng *r)
{
    return (float)(dml_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

float dml_rng_normal(dml_rng *r)
{
    /* 1 - u keeps the logarithm's argument in (0, 1]. */
    double u1 = 1.0 - (double)(dml_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    double u2 = (double)(dml_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

void dml_rng_shuffle(dml_rng *r, int *v, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)dml_rng_below(r, (uint32_t)i + 1);
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}
