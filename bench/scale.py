#!/usr/bin/python3
"""The scaling row of `make bench`: the trainer's data-parallel step on 1 and 2 ranks.

Runs build/bench_scale (bench/scale_mpi.c) on the triplet case of bench/run.py (fmnist-triplet,
hard miner, global batch 256), one OpenBLAS thread a rank: once as a plain process (the
single-process path) and once under `mpirun -np 2`, alternately, --rounds times; reports the
median samples/s of each and the share of the 2-rank step spent in the gradient allreduce and
the embedding allgather. Writes bench/scaling.md.

    /usr/bin/python3 bench/scale.py --bench build/bench_scale [--rounds 3] [--steps 200]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = "configs/fmnist-triplet.yaml"
SETS = ["loss.miner=hard", "train.threads=1"]
MPIRUN = ["mpirun", "--oversubscribe", "--allow-run-as-root", "--bind-to", "core"]


def run(cmd, root):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        sys.stderr.write(f"scale: {' '.join(cmd)} failed (exit {p.returncode})\n{p.stderr[-3000:]}")
        raise SystemExit(1)
    return json.loads(lines[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default="build/bench_scale")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--out", default=os.path.join(HERE, "scaling.md"))
    p.add_argument("--root", default=os.path.dirname(HERE))
    args = p.parse_args()
    bench = os.path.abspath(args.bench)
    base = [bench, CONFIG, "--steps", str(args.steps), "--warmup", str(args.warmup)]
    for s in SETS:
        base += ["--set", s]
    load_before = os.getloadavg()[0]
    res = {1: [], 2: []}
    for rnd in range(args.rounds):
        sys.stderr.write(f"scale: round {rnd + 1}/{args.rounds}\n")
        res[1].append(run(base, args.root))
        res[2].append(run(MPIRUN + ["-np", "2"] + base, args.root))
    load_after = os.getloadavg()[0]
    med = {n: statistics.median(x["samples_per_s"] for x in res[n]) for n in res}
    ar = statistics.median(x["allreduce_share"] for x in res[2])
    ag = statistics.median(x["allgather_share"] for x in res[2])
    floats = res[2][0]["param_floats"]
    rows = [
        "| ranks (1 OpenBLAS thread each) | samples/s | speed-up | allreduce share | allgather share |",
        "|---|---|---|---|---|",
        f"| 1 (plain process) | {med[1]:,.0f} | 1.00x | - | - |",
        f"| 2 (mpirun, loopback) | {med[2]:,.0f} | {med[2] / med[1]:.2f}x | {100 * ar:.1f}% | "
        f"{100 * ag:.1f}% |",
    ]
    table = "\n".join(rows)
    print(table)
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    with open(args.out, "w") as f:
        f.write(f"# make bench: scaling over MPI\n\n{date}. `{CONFIG}` with "
                f"{', '.join(SETS)}: global batch {res[2][0]['batch']}, {floats:,} parameters "
                f"(one {4 * floats / 1e6:.2f} MB allreduce a step); {args.steps} timed steps after "
                f"{args.warmup}, median of {args.rounds} rounds; {os.cpu_count()} cores, "
                f"{platform.platform()}. The shares are rank 0's wall time inside each call over "
                f"the step's (waits for the other rank included). Measured on a machine shared with "
                f"other work: load average (1 min) {load_before:.1f} before the run and "
                f"{load_after:.1f} after it; a synchronous step waits for its slowest rank, so "
                f"the figures move with that load.\n\n{table}\n")
    sys.stderr.write(f"wrote {args.out}\n")


if __name__ == "__main__":
    sys.exit(main())
