#!/usr/bin/python3
"""`make cluster`: the trainer's communication on a cluster made on this machine (docs/scale.md).

For each rank count N, bench/cluster.sh makes N network namespaces (nodes) joined by veth links
limited to --rate each way (tc tbf) through a bridge, and runs build/bench_scale (bench/
scale_mpi.c: the trainer's data-parallel step) under mpirun over TCP between them, twice: with
--short and with --long timed steps after the same warm-up. Reports, per rank and step:

- bytes sent: each node's veth tx counter over the long run minus the short run, over the steps
  between (the launch, data checks and set-up traffic are the same in both and cancel); "payload"
  takes off 66 bytes a frame (Ethernet 14, IP 20, TCP 32 with timestamps), ACKs included;
- communication time: per call, from the last rank's entry to the last rank's exit (the ranks
  share one clock; no rank's compute or wait is in it), median over the long run's calls;

against docs/scale.md's cost model: a ring allreduce sends 2 (N-1)/N of the P gradient floats a
rank, the embedding allgather (N-1) b D floats (b = B/N rows a rank), and the sharded loss's
reduce-scatter of the gathered rows' gradient (the gather's backward, timed with it as "ag") as
many again, each taking bytes / rate.
Compute on 2 shared cores is no cluster: the time of a step is not reported, only its traffic.

    /usr/bin/python3 bench/cluster.py [--ranks 2 4 8] [--rate 100mbit] [--smoke]

--smoke: 2 ranks, few steps; exits 1 when the bytes are more than 10% off the model.
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIG = "configs/fmnist-triplet.yaml"
SETS = ["loss.miner=hard", "train.threads=1"]
DIM = 128  # the config's model.dim: the width of the gathered embeddings
FRAME_HEADER = 66


def rate_bits(rate):
    """tc's rate in bit/s ("100mbit"), or None when it is not one."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(k|m|g)?bit", rate)
    return float(m.group(1)) * {None: 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] if m else None


def run(n, steps, warmup, rate, mpi_args, bench, work):
    """One cluster run: bench_scale's JSON line, the nodes' counters, the call times."""
    out = os.path.join(work, f"n{n}_s{steps}")
    os.makedirs(out)
    cmd = ["sh", os.path.join(HERE, "cluster.sh"), "-n", str(n), "-r", rate, "-o", out, "--"]
    cmd += mpi_args + [bench, CONFIG, "--steps", str(steps), "--warmup", str(warmup),
                       "--times", os.path.join(out, "times")]
    for s in SETS:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        sys.stderr.write(f"cluster: {' '.join(cmd)} failed (exit {p.returncode})\n{p.stderr[-3000:]}")
        raise SystemExit(1)
    counters = {}
    for ln in open(os.path.join(out, "counters")):
        when, rank, *v = ln.split()
        counters.setdefault(int(rank), {})[when] = [int(x) for x in v]
    sent = {r: [a - b for a, b in zip(c["after"], c["before"])] for r, c in counters.items()}
    calls = []
    for path in sorted(glob.glob(os.path.join(out, "times.*")), key=lambda q: int(q.rsplit(".", 1)[1])):
        calls.append([ln.split() for ln in open(path) if ln.strip()])
    return json.loads(lines[-1]), sent, calls


def comm_ms(calls, kind):
    """Median over the calls of kind: last entry to last exit over the ranks, in ms."""
    per_rank = [[c for c in rank_calls if c[0] == kind] for rank_calls in calls]
    spans = [max(float(c[2]) for c in same) - max(float(c[1]) for c in same)
             for same in zip(*per_rank)]
    return 1e3 * statistics.median(spans) if spans else float("nan")


def measure(n, args, work):
    res_s, sent_s, _ = run(n, args.short, args.warmup, args.rate, args.mpi_args, args.bench, work)
    res_l, sent_l, calls = run(n, args.long, args.warmup, args.rate, args.mpi_args, args.bench, work)
    k = args.long - args.short
    wire = [(sent_l[r][0] - sent_s[r][0]) / k for r in range(n)]
    frames = [(sent_l[r][1] - sent_s[r][1]) / k for r in range(n)]
    floats, batch = res_l["param_floats"], res_l["batch"]
    model_ar = 2 * (n - 1) / n * 4 * floats
    model_ag = (n - 1) * (batch // n) * DIM * 4  # one allgather, or one reduce-scatter
    bits = rate_bits(args.rate)
    return {
        "ranks": n, "floats": floats, "batch": batch,
        "wire": statistics.mean(wire), "wire_min": min(wire), "wire_max": max(wire),
        "payload": statistics.mean(w - FRAME_HEADER * f for w, f in zip(wire, frames)),
        "model": model_ar + 2 * model_ag,  # the triplet loss is sharded: both
        "ar_ms": comm_ms(calls, "ar"), "ag_ms": comm_ms(calls, "ag"),
        "ar_model_ms": 1e3 * 8 * model_ar / bits, "ag_model_ms": 1e3 * 8 * model_ag / bits,
    }


def table(rows):
    out = ["| ranks | sent a rank a step (veth) | payload | model | payload / model | "
           "allreduce ms | model | allgather ms | model |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| {r['ranks']} | {r['wire'] / 1e6:.3f} MB ({r['wire_min'] / 1e6:.3f}-"
            f"{r['wire_max'] / 1e6:.3f}) | {r['payload'] / 1e6:.3f} MB | {r['model'] / 1e6:.3f} MB | "
            f"{r['payload'] / r['model']:.3f} | {r['ar_ms']:.1f} | {r['ar_model_ms']:.1f} | "
            f"{r['ag_ms']:.1f} | {r['ag_model_ms']:.1f} |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default=os.path.join(ROOT, "build", "bench_scale"))
    p.add_argument("--ranks", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument("--rate", default="100mbit")
    p.add_argument("--short", type=int, default=5)
    p.add_argument("--long", type=int, default=15)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mpi-args", default="", help="more mpirun options, e.g. '--mca btl_tcp_flags send'")
    p.add_argument("--smoke", action="store_true", help="2 ranks, 2 and 6 steps; exit 1 if off by >10%%")
    args = p.parse_args()
    args.mpi_args = args.mpi_args.split()
    args.bench = os.path.abspath(args.bench)
    if args.smoke:
        args.ranks, args.short, args.long, args.warmup, args.rate = [2], 2, 6, 1, "1gbit"
    if args.long <= args.short or args.short < 1:
        p.error(f"--short {args.short} --long {args.long}: expected 1 <= short < long")
    if not rate_bits(args.rate):
        p.error(f"--rate {args.rate}: expected a tc rate in bit/s such as 100mbit or 1gbit")
    if min(args.ranks) < 2:
        p.error(f"--ranks {' '.join(map(str, args.ranks))}: expected 2 or more (one rank sends nothing)")
    if not os.access(args.bench, os.X_OK):
        p.error(f"--bench {args.bench}: no such program (make build/bench_scale builds it)")
    if os.geteuid() != 0:
        print("cluster: skipped: needs root (ip netns, tc)")
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="dml-cluster-") as work:
        for n in args.ranks:
            sys.stderr.write(f"cluster: {n} ranks at {args.rate}\n")
            rows.append(measure(n, args, work))
    print(f"{CONFIG} with {', '.join(SETS)}; links {args.rate} each way; "
          f"{args.long} - {args.short} steps; mpirun {' '.join(args.mpi_args) or '(defaults)'}")
    print(table(rows))
    off = [r for r in rows if abs(r["payload"] / r["model"] - 1) > 0.10]
    return 1 if args.smoke and off else 0


if __name__ == "__main__":
    sys.exit(main())
