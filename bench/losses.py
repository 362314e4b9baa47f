"""Each loss's shipped config on Fashion-MNIST against the same recipe in PyTorch, over seeds.

    losses.py [--dml build/dml] [--losses contrastive,supcon,...] [--settings full,few]
              [--seeds 1,2,3] [--jobs 2] [--few-steps 200] [--work DIR] [--out FILE] [--json FILE]

For each loss L, setting and seed S, `dml train configs/fmnist-L.yaml --set seed=S` trains with
every training row of the setting (no validation split, evaluation only at the end: the final
model is measured, none is picked by the test set), and bench/torch_recipe.py trains the same
recipe in PyTorch, read from the effective config dml stored in that run's model.h5. Both report
map_at_r over the 10,000 test images (metrics.md, protocol 1).

Settings:
  full  the config as shipped, on all 60,000 labelled training images
  few   20 labelled images per class (one fixed draw of 200 rows, the same for every run), from
        scratch: batch 200 (m_per_class takes m = 20), --few-steps steps, the rest as shipped

One thread per side and --jobs runs at a time. A run whose result is in the work folder is
read, not trained again, so an interrupted measurement resumes. Prints a markdown table: mean
and standard deviation over the seeds, dml's margin over PyTorch's mean minus two standard
errors (the issue's target: >= 0), and dml's difference from the contrastive loss.
Run with Debian's /usr/bin/python3.
"""
import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy and torch load OpenBLAS: one thread a side

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

import peer_data  # noqa: E402
import torch_peer  # noqa: E402
import torch_recipe  # noqa: E402

LOSSES = ["contrastive", "multi_similarity", "circle", "supcon", "proxy_anchor", "arcface", "cosface"]
FEW_PER_CLASS = 20
COMMON = ["data.val_fraction=0", "train.eval_every=never", "train.checkpoint_every=never",
          "eval.pq=false", "eval.metrics=[map_at_r]", "train.threads=1"]


def config_path(loss):
    return os.path.join("configs", f"fmnist-{loss.replace('_', '-')}.yaml")


def write_few(work):
    """20 training images per class (fixed draw) and the test set, as .npy rows scaled to [0, 1]."""
    train, test = os.path.join(work, "few-train.npy"), os.path.join(work, "test.npy")
    if not os.path.exists(test):
        x, y = peer_data.load_spec("fashion-mnist:train", "unit")
        rng = np.random.default_rng(0)
        rows = np.sort(np.concatenate([rng.choice(np.flatnonzero(y == c), FEW_PER_CLASS, replace=False)
                                       for c in np.unique(y)]))
        np.save(train, x[rows])
        np.save(train[:-4] + ".labels.npy", y[rows])
        xt, yt = peer_data.load_spec("fashion-mnist:test", "unit")
        np.save(test[:-4] + ".labels.npy", yt)
        np.save(test, xt)
    return train, test


def overrides(loss, setting, seed, work, few_steps):
    sets = [f"seed={seed}"] + COMMON
    if setting == "few":
        train, test = os.path.join(work, "few-train.npy"), os.path.join(work, "test.npy")
        sets += [f"data.train={train}", f"data.test={test}", "data.normalize=none",
                 f"train.batch_size={FEW_PER_CLASS * 10}", f"train.steps={few_steps}",
                 "pq.k=16"]  # the codebooks are trained (not measured) and need k <= rows
        with open(config_path(loss)) as f:
            if yaml.safe_load(f).get("sampler", {}).get("type") == "m_per_class":
                sets.append(f"sampler.m={FEW_PER_CLASS}")  # 10 classes of 20: the whole set
    return sets


def final_map(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if '"final"' in line][-1]["final"]["map_at_r"]


def one_run(job):
    """Trains one (loss, setting, seed) on both sides; returns (and keeps) the result."""
    dml, loss, setting, seed, work, few_steps = job
    name = f"{loss}-{setting}-seed{seed}"
    result_path = os.path.join(work, name + ".json")
    if os.path.exists(result_path):
        with open(result_path) as f:
            return json.load(f)
    torch.set_num_threads(1)
    run_dir = os.path.join(work, name)
    cmd = [dml, "train", config_path(loss), "--out", run_dir]
    for s in overrides(loss, setting, seed, work, few_steps):
        cmd += ["--set", s]
    t0 = time.perf_counter()
    with open(run_dir + ".log", "w") as log:
        if subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode != 0:
            raise RuntimeError(f"losses.py: {' '.join(cmd)} failed, see {run_dir}.log")
    dml_s = time.perf_counter() - t0
    cfg = torch_recipe.effective_config(os.path.join(run_dir, "model.h5"))
    x, y = (torch.from_numpy(a) for a in peer_data.load_spec(cfg["data"]["train"], cfg["data"]["normalize"]))
    xt, yt = (torch.from_numpy(a) for a in peer_data.load_spec(cfg["data"]["test"], cfg["data"]["normalize"]))
    t0 = time.perf_counter()
    net = torch_recipe.train(cfg, x, y, seed)
    with torch.no_grad():
        torch_map = torch_peer.map_at_r(net(xt), yt)
    result = {"loss": loss, "setting": setting, "seed": seed, "dml": final_map(run_dir), "torch": torch_map,
              "dml_s": round(dml_s, 1), "torch_s": round(time.perf_counter() - t0, 1),
              "command": " ".join(cmd)}
    with open(result_path + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(result_path + ".tmp", result_path)
    print(f"{name}: dml {result['dml']:.4f}  PyTorch {torch_map:.4f}", file=sys.stderr, flush=True)
    return result


def mean_sd(values):
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(results, losses, settings, seeds):
    by = {(r["loss"], r["setting"], r["seed"]): r for r in results}
    head = ["loss"]
    for s in settings:
        head += [f"{s}: PyTorch", f"{s}: dml", f"{s}: dml - (PyTorch - 2 SE)", f"{s}: dml vs contrastive"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for loss in losses:
        row = [f"`{loss}`"]
        for s in settings:
            runs = [by.get((loss, s, seed)) for seed in seeds]
            if any(r is None for r in runs):
                row += ["", "", "", ""]
                continue
            tm, tsd = mean_sd([r["torch"] for r in runs])
            dm, dsd = mean_sd([r["dml"] for r in runs])
            margin = dm - (tm - 2 * tsd / len(runs) ** 0.5)
            base = [by.get(("contrastive", s, seed)) for seed in seeds]
            versus = "" if loss == "contrastive" or any(r is None for r in base) else \
                f"{dm - mean_sd([r['dml'] for r in base])[0]:+.3f}"
            row += [f"{tm:.3f} ± {tsd:.3f}", f"**{dm:.3f}** ± {dsd:.3f}", f"{margin:+.3f}", versus]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dml", default="build/dml")
    p.add_argument("--losses", default=",".join(LOSSES))
    p.add_argument("--settings", default="full,few")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--few-steps", type=int, default=200)
    p.add_argument("--work", default="runs/losses")
    p.add_argument("--out", default="", help="also write the table (markdown) here")
    p.add_argument("--json", default="", help="also write every run's result here")
    a = p.parse_args()
    losses, settings = a.losses.split(","), a.settings.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    os.makedirs(a.work, exist_ok=True)
    if "few" in settings:
        write_few(a.work)
    jobs = [(a.dml, loss, s, seed, a.work, a.few_steps) for s in settings for loss in losses for seed in seeds]
    with multiprocessing.get_context("fork").Pool(a.jobs) as pool:
        results = pool.map(one_run, jobs, chunksize=1)
    note = (f"map_at_r on the Fashion-MNIST test set, mean ± standard deviation over seeds "
            f"{','.join(map(str, seeds))}; few: {FEW_PER_CLASS} labels per class, {a.few_steps} steps")
    text = f"{note}\n\n{table(results, losses, settings, seeds)}\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
