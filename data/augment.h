/* Augmentations of training rows, drawn afresh for every row of every batch: for rows that are
 * images (height x width, one channel, row-major) a random affine map (shift, rotation, scale,
 * horizontal flip) sampled bilinearly with zeros outside, and cutout; for any row, brightness
 * and contrast jitter (SimCLR's colour distortion, one channel), gaussian noise and feature
 * dropout. Seeded (the caller's generator) and allocation-free: the caller
 * gives one row of scratch. */
#ifndef DML_DATA_AUGMENT_H
#define DML_DATA_AUGMENT_H

#include "data/rng.h"

typedef struct dml_augment {
    int height, width; /* a row's image shape; 0 x 0 for rows that are not images */
    int shift;         /* translation: up to this many pixels each way (a crop with padding) */
    float rotate;      /* rotation: up to this many degrees either way */
    float scale;       /* zoom: a factor in [1 - scale, 1 + scale] */
    float flip;        /* probability of a horizontal flip */
    int cutout;        /* side of a square of pixels set to 0 at a random place; 0 = off */
    float noise;       /* standard deviation of gaussian noise added to every value */
    float brightness;  /* the row times a factor in [1 - brightness, 1 + brightness] */
    float contrast;    /* each value's distance from the row's mean times a factor in
                        * [1 - contrast, 1 + contrast] */
    float dropout;     /* probability of setting each value to 0 */
} dml_augment;

/* Whether any augmentation is on, and whether one needs the image shape. */
int dml_augment_on(const dml_augment *a);
int dml_augment_geometric(const dml_augment *a);

/* Augments rows x[n, d] in place (d = height * width when geometric); scratch holds d floats.
 * x holds rows [first, first + n) of a batch whose augmentation is seeded with `seed` (one draw
 * of the caller's generator per batch), and row i draws from its own generator seeded with
 * seed + i (splitmix64 spreads consecutive seeds apart): the result does not depend on which
 * rows a call covers, so each rank of a data-parallel run augments only its own rows. */
void dml_augment_rows(const dml_augment *a, uint64_t seed, int first, float *x, int n, int d,
                      float *scratch);

#endif
