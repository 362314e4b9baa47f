#!/usr/bin/env python3
"""`make bench-onednn`: dml's dense layers against oneDNN's inner products (bench/onednn_layers.c)
at the bench's training shapes, each side a fresh process, alternated round by round; prints
each side's median over the rounds and the ratios. A question for issue #30, not part of make
bench: nothing in dml links oneDNN."""
import argparse
import json
import os
import statistics
import subprocess

# The encoders of bench/run.py's training cases (configs/fmnist-*.yaml): batch, widths.
SHAPES = [("triplet, contrastive, joint_pq", 256, [784, 512, 256, 128]),
          ("mnr (anchors and positives)", 512, [784, 512, 256, 128]),
          ("autoencoder", 256, [784, 512, 256, 128, 256, 512, 784])]
SIDES = ["dml", "onednn", "onednn-gemm"]


def one(binary, side, threads, batch, widths):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [binary, side, "--threads", str(threads), str(batch)] + [str(w) for w in widths]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median_us"]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bench", default="build/bench_onednn")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    print(f"{a.threads} threads, {a.rounds} rounds; microseconds of one forward and backward, "
          "median over the rounds (each round's own median of 50 passes)\n")
    print("| layers of | batch | dml | oneDNN, bias and relu fused | oneDNN, GEMMs alone | "
          "dml / oneDNN fused | dml / oneDNN GEMMs |")
    print("|---|---|---|---|---|---|---|")
    for name, batch, widths in SHAPES:
        times = {s: [] for s in SIDES}
        for _ in range(a.rounds):
            for s in SIDES:
                times[s].append(one(a.bench, s, a.threads, batch, widths))
        d, f, g = (statistics.median(times[s]) for s in SIDES)
        print(f"| {name} | {batch} | {d:.0f} | {f:.0f} | {g:.0f} | {d / f:.2f}x | {d / g:.2f}x |")


if __name__ == "__main__":
    main()
