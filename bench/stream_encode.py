#!/usr/bin/python3
"""dml encode streamed: peak RSS and throughput of `dml encode --pq` on a generated float32 HDF5
file larger than its memory use (10M x 128, 5.1 GB, by default), and rows/s beside an
in-memory build (a dml before streaming, built from an older commit) on a smaller file. The
files are seeded gaussian clusters written in chunks, under a temporary folder deleted at the
end. Writes bench/streaming.md.

The model: bench/database.yaml (a linear 128 -> 128 encoder, 16-byte PQ codes) trained for one
epoch on 20,000 rows of the same mixture; what is measured is the encode, not the model.

    /usr/bin/python3 bench/stream_encode.py --dml build/dml [--rows 10000000]
        [--old /tmp/old/build/dml --compare-rows 1000000 --rounds 3]

To build the in-memory dml of an older commit without touching the checkout:
    git worktree add /tmp/old <commit> && make -C /tmp/old -j2 build/dml
"""
import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
D = 128
CLASSES = 100
CHUNK = 1 << 18  # rows generated at a time: 128 MB of float32


def write_file(path, rows, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(CLASSES, D)).astype(np.float32)
    with h5py.File(path, "w") as f:
        x = f.create_dataset("X", (rows, D), dtype="f4")
        for lo in range(0, rows, CHUNK):
            n = min(CHUNK, rows - lo)
            c = rng.integers(0, CLASSES, size=n)
            x[lo:lo + n] = centers[c] + rng.normal(size=(n, D)).astype(np.float32)


def run(cmd, env=None):
    """Runs cmd under /usr/bin/time -v: (wall seconds, peak RSS MiB)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True,
                       env=dict(os.environ, **(env or {})))
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(f"stream_encode: {' '.join(cmd)} failed (exit {p.returncode})\n"
                         f"{p.stdout[-2000:]}{p.stderr[-3000:]}")
        raise SystemExit(1)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return wall, (int(m.group(1)) / 1024.0 if m else float("nan"))


def same_output(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return all(np.array_equal(fa[k][:], fb[k][:]) for k in ("X", "codes"))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dml", default="build/dml")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--old", help="an in-memory dml to compare rows/s with")
    p.add_argument("--compare-rows", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=os.path.join(HERE, "streaming.md"))
    p.add_argument("--tmp", default=None, help="folder for the generated files (default $TMPDIR)")
    args = p.parse_args()
    dml = os.path.abspath(args.dml)
    work = tempfile.mkdtemp(prefix="dml-stream-", dir=args.tmp)
    load_before = os.getloadavg()[0]
    lines = []
    try:
        small = os.path.join(work, "train.h5")
        write_file(small, 20_000, 1)
        run_dir = os.path.join(work, "run")
        sys.stderr.write("stream_encode: training the model on 20,000 rows\n")
        run([dml, "train", os.path.join(HERE, "database.yaml"), "--set", f"data.train={small}",
             "--out", run_dir])
        model = os.path.join(run_dir, "model.h5")

        big = os.path.join(work, "big.h5")
        sys.stderr.write(f"stream_encode: writing {args.rows:,} x {D} rows\n")
        write_file(big, args.rows, 2)
        size_gb = os.path.getsize(big) / 1e9
        out = os.path.join(work, "big_out.h5")
        sys.stderr.write("stream_encode: dml encode --pq of every row\n")
        wall, rss = run([dml, "encode", model, big, out, "--pq"])
        out_gb = os.path.getsize(out) / 1e9
        os.remove(out)
        os.remove(big)
        lines += [
            "| rows | input | output | wall s | rows/s | peak RSS MiB |",
            "|---|---|---|---|---|---|",
            f"| {args.rows:,} x {D} float32 | {size_gb:.2f} GB | {out_gb:.2f} GB (X and codes) | "
            f"{wall:.1f} | {args.rows / wall:,.0f} | {rss:,.0f} |",
        ]

        if args.old:
            mid = os.path.join(work, "mid.h5")
            write_file(mid, args.compare_rows, 3)
            outs = {"streamed": os.path.join(work, "s.h5"), "in memory": os.path.join(work, "m.h5")}
            bins = {"streamed": dml, "in memory": os.path.abspath(args.old)}
            walls = {k: [] for k in bins}
            rsss = {k: [] for k in bins}
            for r in range(args.rounds):  # alternating, one fresh process each
                for k in bins:
                    sys.stderr.write(f"stream_encode: round {r + 1}, {k}\n")
                    w, m = run([bins[k], "encode", model, mid, outs[k], "--pq"])
                    walls[k].append(w)
                    rsss[k].append(m)
            equal = same_output(outs["streamed"], outs["in memory"])
            med = {k: statistics.median(walls[k]) for k in bins}
            lines += [
                "",
                f"Against the in-memory path ({args.old}, the same model), {args.compare_rows:,} "
                f"rows, median of {args.rounds} alternating rounds; X and codes "
                f"{'identical' if equal else 'DIFFERENT'}:",
                "",
                "| | wall s (each round) | rows/s (median) | peak RSS MiB |",
                "|---|---|---|---|",
            ]
            for k in bins:
                lines.append(f"| {k} | {' / '.join(f'{w:.2f}' for w in walls[k])} | "
                             f"{args.compare_rows / med[k]:,.0f} | {max(rsss[k]):,.0f} |")
            lines.append(f"| streamed / in memory, time | {med['streamed'] / med['in memory']:.3f} | | |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    head = [
        f"# dml encode, streamed: {args.rows:,} rows",
        "",
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores, {platform.platform()}. "
        f"`/usr/bin/python3 bench/stream_encode.py` (seeded gaussian clusters, {D}-d float32 "
        f"HDF5, written in chunks and deleted afterwards; `bench/database.yaml`'s model: a "
        f"linear {D} -> {D} encoder and 16-byte PQ codes). Load average (1 min) "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after: other work shared the "
        "machine, so the times are indicative.",
        "",
    ]
    text = "\n".join(head + lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
