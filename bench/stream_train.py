#!/usr/bin/env python3
"""Training on a file larger than its memory budget: peak RSS of `dml train` with
data.memory_limit, on a generated HDF5 file (a seeded mixture of labelled gaussian clusters,
written in chunks so this script itself stays small), deleted afterwards.

    /usr/bin/python3 bench/stream_train.py --dml build/dml --rows 8000000 --limit 512MB

Prints one markdown table row: rows, file size, limit, steps, seconds, peak RSS of dml train.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

D = 128
CLASSES = 100
CHUNK = 1 << 18


def write_file(path, rows, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(CLASSES, D)).astype(np.float32)
    with h5py.File(path, "w") as f:
        x = f.create_dataset("X", (rows, D), dtype="f4")
        y = f.create_dataset("y", (rows,), dtype="i4")
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            labels = rng.integers(0, CLASSES, size=n)
            x[lo:lo + n] = centers[labels] + rng.normal(size=(n, D)).astype(np.float32)
            y[lo:lo + n] = labels


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dml", default="build/dml")
    ap.add_argument("--rows", type=int, default=8_000_000)
    ap.add_argument("--limit", default="512MB")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--dir", default=None, help="where the file goes (default: a temporary folder)")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(dir=args.dir)
    path = os.path.join(folder, "big.h5")
    try:
        t = time.time()
        write_file(path, args.rows, 7)
        size = os.path.getsize(path)
        print(f"# wrote {path}: {size / 2**30:.2f} GiB in {time.time() - t:.0f} s", file=sys.stderr)
        cmd = ["/usr/bin/time", "-v", args.dml, "train", "configs/demo.yaml",
               "--out", os.path.join(folder, "run"),
               "--set", f"data.train={path}", "--set", "data.test=",
               "--set", f"data.memory_limit={args.limit}", "--set", "sampler.type=random",
               "--set", "data.normalize=standardize", "--set", "model.hidden=[256]",
               "--set", "model.dim=32", "--set", "loss.type=contrastive",
               "--set", f"train.steps={args.steps}", "--set", "train.eval_every=never",
               "--set", "train.checkpoint_every=never", "--set", "data.val_fraction=0.001"]
        t = time.time()
        run = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.time() - t
        if run.returncode != 0:
            sys.exit(f"dml train failed ({run.returncode}):\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
        rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
        streamed = "read in blocks" in run.stdout + run.stderr
        print("| rows | file | data.memory_limit | read | steps | seconds | peak RSS |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {args.rows:,} x {D} | {size / 2**30:.2f} GiB | {args.limit} | "
              f"{'in blocks' if streamed else 'whole'} | {args.steps} | {seconds:.0f} | "
              f"{rss_kb / 1024:.0f} MB |")
    finally:
        subprocess.run(["rm", "-rf", folder])


if __name__ == "__main__":
    main()
