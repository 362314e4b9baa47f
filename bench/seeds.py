"""One config over several seeds: each final test metric's value per seed, mean and spread.

    seeds.py CONFIG [--dml build/dml] [--seeds 42,1,2] [--set key=value]... [--out DIR]

Seed S runs `dml train CONFIG --out DIR/seed-S --set seed=S` plus the --set overrides, in
which `{seed}` becomes S: a fine-tuning config then starts from the same seed's pretraining,
e.g. `--set model.init=runs/fmnist-simclr-seeds/seed-{seed}/model.h5`. DIR defaults to
runs/<config file's name>-seeds. A seed whose run folder already holds a finished
metrics.jsonl is read, not trained again. Prints a markdown table (docs/results.md's
three-seed rows come from it); the spread is the largest minus the smallest value, the
standard deviation the sample's (n - 1).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

METRICS = ["map_at_r", "precision_at_1", "knn_accuracy", "map_all", "pq_map_at_r"]


def final_metrics(run_dir):
    """The `final` record of a finished run's metrics.jsonl, or None."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in reversed(f.read().splitlines()):
            record = json.loads(line)
            if "final" in record:
                return record["final"]
    return None


def train(dml, config, run_dir, seed, overrides):
    cmd = [dml, "train", config, "--out", run_dir, "--set", f"seed={seed}"]
    for o in overrides:
        cmd += ["--set", o.replace("{seed}", str(seed))]
    print("$", " ".join(cmd), file=sys.stderr, flush=True)
    with open(run_dir + ".log", "w") as log:
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
            sys.exit(f"seeds.py: {' '.join(cmd)} failed, see {run_dir}.log")


def table(seeds, finals):
    head = "| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | std | spread |"
    rows = [head, "|" + "---|" * (len(seeds) + 4)]
    for m in METRICS:
        values = [f.get(m) for f in finals]
        if any(v is None for v in values):
            continue
        spread = max(values) - min(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        cells = " | ".join(f"{v:.3f}" for v in values)
        rows.append(f"| {m} | {cells} | **{statistics.mean(values):.3f}** | {std:.3f} | {spread:.3f} |")
    return "\n".join(rows)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("--dml", default="build/dml")
    p.add_argument("--seeds", default="42,1,2", help="comma-separated (42 is the configs' own seed)")
    p.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    p.add_argument("--out", help="the folder of the seeds' runs")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    out = a.out or os.path.join("runs", os.path.splitext(os.path.basename(a.config))[0] + "-seeds")
    os.makedirs(out, exist_ok=True)
    finals = []
    for s in seeds:
        run_dir = os.path.join(out, f"seed-{s}")
        if final_metrics(run_dir) is None:
            train(a.dml, a.config, run_dir, s, a.overrides)
        finals.append(final_metrics(run_dir))
        if finals[-1] is None:
            sys.exit(f"seeds.py: {run_dir}/metrics.jsonl has no final metrics (was data.test set?)")
    print(table(seeds, finals))


if __name__ == "__main__":
    main()
