"""The FAISS side of `make bench`: product-quantizer training, encoding and ADC search on the
data bench_dml's pq case reads. Prints one JSON object. Run with Debian's /usr/bin/python3
(python3-faiss 1.7.3); bench/run.py sets OPENBLAS_NUM_THREADS before starting it.

    faiss_peer.py pq fashion-mnist:train --m 8 --nbits 8 --iters 25 --threads 2
    faiss_peer.py pq train_emb.npy --queries test_emb.npy --k 100 --threads 2
"""
import argparse
import json
import os
import sys
import time

import faiss
import numpy as np

import peer_data


def pq_case(args):
    probe = peer_data.machine_probe()  # before any thread count is set, as bench_dml's
    faiss.omp_set_num_threads(args.threads)
    x, _ = peer_data.load_spec(args.data)
    n, d = x.shape
    ksub = 1 << args.nbits
    pq = faiss.ProductQuantizer(d, args.m, args.nbits)
    pq.cp.niter = args.iters
    # FAISS subsamples to max_points_per_centroid * K rows (256 * 256 = 65,536 by default);
    # raised when needed so it trains on every row, as dml does.
    pq.cp.max_points_per_centroid = max(pq.cp.max_points_per_centroid, -(-n // ksub))
    t0 = time.perf_counter()
    pq.train(x)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    codes = pq.compute_codes(x)
    encode_s = time.perf_counter() - t0
    mse = float(((x - pq.decode(codes)) ** 2).sum(1).mean())
    out = {"case": args.name, "side": "faiss", "n": n, "d": d, "m": args.m, "nbits": args.nbits,
           "iters": args.iters, "init": "random", "threads": args.threads, "train_points": n,
           "blas_threads": int(os.environ.get("OPENBLAS_NUM_THREADS", "0")),
           "probe_gflops": round(probe, 1), "train_s": train_s, "mse": mse, "encode_s": encode_s,
           "encode_rows_per_s": n / encode_s}
    if args.queries:
        q, _ = peer_data.load_spec(args.queries)
        index = faiss.IndexPQ(d, args.m, args.nbits)
        index.pq = pq
        index.is_trained = True
        index.add(x)
        t0 = time.perf_counter()
        dist, _ = index.search(q, args.k)
        adc_s = time.perf_counter() - t0
        n_1 = min(args.single_queries, len(q))
        faiss.omp_set_num_threads(1)
        t0 = time.perf_counter()
        index.search(q[:n_1], args.k)
        adc1_s = time.perf_counter() - t0
        faiss.omp_set_num_threads(args.threads)
        out.update({"queries": len(q), "k": args.k, "adc_s": adc_s, "adc_1thread_queries": n_1,
                    "adc_1thread_s": adc1_s,
                    "adc_kth_dist_mean": float(dist[:, -1].mean())})
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("pq")
    q.add_argument("data")
    q.add_argument("--queries")
    q.add_argument("--name", default="pq")
    q.add_argument("--m", type=int, default=8)
    q.add_argument("--nbits", type=int, default=8)
    q.add_argument("--iters", type=int, default=25)
    q.add_argument("--k", type=int, default=100)
    q.add_argument("--single-queries", type=int, default=2000, help="queries of the 1-thread search")
    q.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    {"pq": pq_case}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
