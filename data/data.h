/* data/: the bottom layer. The shared basics every layer uses (error record, RNG,
 * atomic files) and the datasets: readers, normalisation, splits, samplers. */
#ifndef DML_DATA_H
#define DML_DATA_H

#include "data/error.h"
#include "data/fileio.h"
#include "data/rng.h"
#include "data/dataset.h"
#include "data/rows.h"
#include "data/rows_cache.h"
#include "data/normalize.h"
#include "data/scale.h"
#include "data/split.h"
#include "data/sampler.h"
#include "data/neighbors.h"
#include "data/augment.h"

#endif
