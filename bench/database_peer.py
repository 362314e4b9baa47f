"""The database case of `make bench` (bench/database.py): a SIFT-like file and FAISS's side.

    /usr/bin/python3 bench/database_peer.py make OUT.hdf5 --rows 1000000 --queries 10000
        A seeded SIFT-like mixture written in the ann-benchmarks layout: train [rows, 128] and
        test [queries, 128] float32, neighbors int32 and distances float32 [queries, 100] (exact
        L2, by faiss.IndexFlatL2), attribute distance = "euclidean".
    /usr/bin/python3 bench/database_peer.py pq FILE.hdf5 --m 16 [--train-rows N]
        FAISS IndexPQ(128, m, 8) on the raw vectors: trained on the first N rows, every row
        added, the queries searched; prints one JSON line: seconds, rows/s, recall@1/10/100.

Run with /usr/bin/python3 (numpy, h5py, faiss)."""
import argparse
import json
import os
import resource
import sys
import time

import faiss
import h5py
import numpy as np

DIM = 128
CENTRES = 256
RANK = 16
TRUTH_K = 100


def sift_like(rng, centres, basis, n):
    """Rows of a mixture: a centre, a move within its cluster's low-rank subspace, and a little
    noise, rounded and clipped to 0..255 as SIFT's gradient histograms are. The low rank gives
    the rows structure that a learned encoder can find (isotropic noise would leave none)."""
    which = rng.integers(0, len(centres), n)
    z = rng.normal(0.0, 1.0, (n, RANK)).astype(np.float32)
    x = centres[which] + np.einsum("nr,nrd->nd", z, basis[which])
    x += rng.normal(0.0, 2.0, (n, DIM)).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.float32)


def make(args):
    rng = np.random.default_rng(args.seed)
    centres = (np.abs(rng.normal(0.0, 1.0, (CENTRES, DIM))) ** 2 * 18.0).astype(np.float32)
    basis = (rng.normal(0.0, 1.0, (CENTRES, RANK, DIM)) * 3.0).astype(np.float32)
    tmp = args.out + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.attrs["distance"] = "euclidean"
        train = f.create_dataset("train", (args.rows, DIM), np.float32)
        for lo in range(0, args.rows, 100_000):
            hi = min(lo + 100_000, args.rows)
            train[lo:hi] = sift_like(rng, centres, basis, hi - lo)
        q = sift_like(rng, centres, basis, args.queries)
        f["test"] = q
        index = faiss.IndexFlatL2(DIM)
        for lo in range(0, args.rows, 100_000):
            index.add(train[lo:min(lo + 100_000, args.rows)])
        dist, idx = index.search(q, TRUTH_K)
        f["neighbors"] = idx.astype(np.int32)
        f["distances"] = np.sqrt(np.maximum(dist, 0)).astype(np.float32)
    os.replace(tmp, args.out)


def recall(found, truth, k):
    """ann-benchmarks' k-nn recall: the share of the k true neighbours among the first k found."""
    hits = sum(len(np.intersect1d(f[:k], t[:k], assume_unique=True)) for f, t in zip(found, truth))
    return hits / (k * len(truth))


def pq(args):
    with h5py.File(args.file, "r") as f:
        xb = f["train"][:]
        xq = f["test"][:]
        truth = f["neighbors"][:]
    index = faiss.IndexPQ(DIM, args.m, 8)
    index.pq.cp.niter = 25
    t0 = time.perf_counter()
    index.train(xb[:args.train_rows])
    t1 = time.perf_counter()
    index.add(xb)
    t2 = time.perf_counter()
    _, found = index.search(xq, TRUTH_K)
    t3 = time.perf_counter()
    out = {"train_s": t1 - t0, "encode_rows_per_s": len(xb) / (t2 - t1), "search_s": t3 - t2,
           "queries_per_s": len(xq) / (t3 - t2),
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
    for k in (1, 10, 100):
        out[f"nn_recall_at_{k}"] = recall(found, truth, k)
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("out")
    m.add_argument("--rows", type=int, default=1_000_000)
    m.add_argument("--queries", type=int, default=10_000)
    m.add_argument("--seed", type=int, default=0)
    q = sub.add_parser("pq")
    q.add_argument("file")
    q.add_argument("--m", type=int, default=16)
    q.add_argument("--train-rows", type=int, default=100_000)
    args = p.parse_args()
    make(args) if args.cmd == "make" else pq(args)


if __name__ == "__main__":
    sys.exit(main())
