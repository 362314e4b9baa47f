#include "data/rng.h"

#include <math.h>
#include <pthread.h>

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

/* A uniform double in (0, 1], a logarithm's argument. */
static double unit_open(dml_rng *r)
{
    return 1.0 - (double)(dml_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Normals by the Ziggurat method (Marsaglia and Tsang 2000): 128 layers of equal area under
 * the density, so most draws cost one 64-bit number, a table lookup and a compare, about a
 * tenth of Box-Muller's logarithm and cosine (data.augment's noise draws one per value).
 * Layer i spans x in [0, x_i] and y in [f(x_i), f(x_{i-1})], x_0 = 0 and x_127 = R; layer 0
 * is the base strip with the tail beyond R. k[i] / 2^31 is the share of layer i that lies
 * wholly under the curve. */
#define ZIG_R 3.442619855899      /* where the tail starts */
#define ZIG_AREA 9.91256303526217e-3 /* each layer's area */

static struct {
    uint32_t k[128];
    float w[128], f[128];
} zig;
static pthread_once_t zig_once = PTHREAD_ONCE_INIT;

static void zig_build(void)
{
    const double scale = 2147483648.0; /* 2^31: draws are signed 32-bit */
    double x = ZIG_R, outer = x, base = ZIG_AREA / exp(-0.5 * x * x);
    zig.k[0] = (uint32_t)(x / base * scale);
    zig.k[1] = 0;
    zig.w[0] = (float)(base / scale);
    zig.w[127] = (float)(x / scale);
    zig.f[0] = 1.0f;
    zig.f[127] = (float)exp(-0.5 * x * x);
    for (int i = 126; i >= 1; i--) {
        x = sqrt(-2.0 * log(ZIG_AREA / x + exp(-0.5 * x * x)));
        zig.k[i + 1] = (uint32_t)(x / outer * scale);
        outer = x;
        zig.f[i] = (float)exp(-0.5 * x * x);
        zig.w[i] = (float)(x / scale);
    }
}

/* The rare part of a draw (about 1 in 100): layer i's value x = h * w[i] lay outside the layer's
 * box wholly under the curve. Sets *out and returns 1 when it is accepted after all. Kept out of
 * line so that the common path inlines into the callers' loops. */
__attribute__((noinline)) static int zig_edge(dml_rng *r, int i, int32_t h, float x, float *out)
{
    if (i == 0) { /* the tail beyond R, by Marsaglia's exponential method */
        double t, y;
        do {
            t = -log(unit_open(r)) / ZIG_R;
            y = -log(unit_open(r));
        } while (y + y < t * t);
        *out = (float)(h > 0 ? ZIG_R + t : -ZIG_R - t);
        return 1;
    }
    *out = x; /* in the wedge under the curve; otherwise draw again */
    return zig.f[i] + dml_rng_uniform(r) * (zig.f[i - 1] - zig.f[i]) < expf(-0.5f * x * x);
}

static float zig_draw(dml_rng *r)
{
    for (;;) {
        /* The layer from the low 7 bits, the value from the high 32: separate bits (the
         * original shared them, a flaw Doornik 2005 pointed out). */
        uint64_t u = dml_rng_u64(r);
        int i = (int)(u & 127);
        int32_t h = (int32_t)(uint32_t)(u >> 32);
        uint32_t mag = h < 0 ? 0u - (uint32_t)h : (uint32_t)h;
        float x = (float)h * zig.w[i], out;
        if (mag < zig.k[i])
            return x;
        if (zig_edge(r, i, h, x, &out))
            return out;
    }
}

float dml_rng_normal(dml_rng *r)
{
    pthread_once(&zig_once, zig_build);
    return zig_draw(r);
}

void dml_rng_normals(dml_rng *r, float *out, int n)
{
    pthread_once(&zig_once, zig_build);
    for (int i = 0; i < n; i++)
        out[i] = zig_draw(r);
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
