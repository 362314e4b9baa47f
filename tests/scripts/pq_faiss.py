"""FAISS's side of test_nn_pq's cross-check (FAISS 1.7.3, Debian's /usr/bin/python3).

usage: pq_faiss.py DIR
DIR holds what the C test wrote: meta.txt ("d M nbits n iters seeds"), x.f32 [n, d] and
centroids.f32 [M, 2^nbits, d/M] (dml's trained codebooks). Writes into DIR:
  codes.u8  faiss.ProductQuantizer(d, M, nbits) with dml's centroids copied in:
            pq.compute_codes(x), [n, code_size]
  mse.txt   the mean over rows of |x - decode(encode(x))|^2 for a ProductQuantizer that FAISS
            trains itself on x with the same number of k-means iterations, on every row
            (max_points_per_centroid raised: by default FAISS subsamples to 256 rows a centroid),
            averaged over `seeds` trainings (k-means seeds 1, 2, ...).
Exit status 0 when all went well."""
import os
import sys

import faiss
import numpy as np


def main():
    d_ = sys.argv[1]
    path = lambda name: os.path.join(d_, name)
    d, m, nbits, n, iters, seeds = map(int, open(path("meta.txt")).read().split())
    x = np.fromfile(path("x.f32"), dtype=np.float32).reshape(n, d)
    c = np.fromfile(path("centroids.f32"), dtype=np.float32)
    if c.size != d << nbits:
        sys.exit("pq_faiss: centroids.f32 holds %d floats, expected %d" % (c.size, d << nbits))

    pq = faiss.ProductQuantizer(d, m, nbits)
    faiss.copy_array_to_vector(c.ravel(), pq.centroids)
    pq.compute_codes(x).tofile(path("codes.u8"))

    mse = 0.0
    for seed in range(1, seeds + 1):
        own = faiss.ProductQuantizer(d, m, nbits)
        own.cp.niter = iters
        own.cp.seed = seed
        own.cp.max_points_per_centroid = n
        own.train(x)
        rec = own.decode(own.compute_codes(x)).astype(np.float64)
        mse += np.mean(np.sum((x.astype(np.float64) - rec) ** 2, axis=1)) / seeds
    with open(path("mse.txt"), "w") as f:
        f.write("%.9g\n" % mse)


main()
