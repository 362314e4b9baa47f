"""`make parity`: does a PyTorch recipe give the same retrieval quality in dml as in PyTorch?

For each data set and loss, the same recipe (an MLP d-128-32 with l2 output, Adam, batch 64,
random batches, N epochs) is trained by `dml train` with dml's defaults and by a plain PyTorch
script with PyTorch's defaults (nn.Linear's init, a constant learning rate, a DataLoader that
keeps the last partial batch), over several seeds; map_at_r on the test rows is compared.

    parity.py --dml build/dml --bench build/bench_dml [--seeds 1,2,3] [--quick]
              [--dml-variant NAME=key=value,key=value]... [--same-init] [--out FILE] [--json FILE]

--same-init adds a third side: the PyTorch script started from dml's initial weights (written
by `bench_dml train --dump`), which separates "the same maths" from "different defaults".
--dml-variant adds a dml column trained with extra --set overrides (e.g.
`constant=train.schedule=constant`). Models, losses and map_at_r come from bench/torch_peer.py,
the data layout from bench/peer_data.py. Run with Debian's /usr/bin/python3.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import torch

import peer_data
import torch_peer
import torch_recipe

HIDDEN, DIM, BATCH, LR, EPOCHS = 128, 32, 64, 3e-3, 30
LOSSES = {  # dml's --set values; PyTorch trains the loss section of the effective config dml ran
    "cosine_pair": ["loss.type=cosine_pair"],
    "triplet_hard": ["loss.type=triplet", "loss.miner=hard", "loss.margin=0.2"],
    "contrastive": ["loss.type=contrastive"],
    "multi_similarity": ["loss.type=multi_similarity"],
    "circle": ["loss.type=circle"],
    "supcon": ["loss.type=supcon"],
    "proxy_anchor": ["loss.type=proxy_anchor"],
    "arcface": ["loss.type=arcface"],
    "cosface": ["loss.type=cosface"],
}


# ---- data sets: written once as .npy (float32 rows, int64 labels) for both sides ----
def stratified(y, n_test, rng):
    """Row indices (train, test) with about n_test test rows, the classes in proportion."""
    test = []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        test.extend(rows[:round(n_test * len(rows) / len(y))])
    test = np.sort(np.array(test))
    return np.setdiff1d(np.arange(len(y)), test), test


def standardized(x, train):
    mean, std = x[train].mean(0), x[train].std(0)
    return (x - mean) / np.where(std > 0, std, 1.0)


def fmnist_subset(n_train, n_test, rng):
    xs, ys = [], []
    for part, n in (("fashion-mnist:train", n_train), ("fashion-mnist:test", n_test)):
        x, y = peer_data.load_spec(part, "unit")
        rows = np.sort(rng.choice(len(x), n, replace=False))
        xs.append(x[rows])
        ys.append(y[rows])
    x, y = np.concatenate(xs), np.concatenate(ys)
    return x, y, np.arange(n_train), np.arange(n_train, n_train + n_test)


def data_sets(quick):
    """(name, x, y, train rows, test rows). Tabular sets are standardised with the training rows'
    statistics, as a recipe for them would; digits keeps its raw 0..16 counts (the issue's set)."""
    from sklearn import datasets
    rng = np.random.default_rng(0)  # one fixed split per set: the seeds vary the training only
    out = []
    d = datasets.load_digits()
    tr, te = stratified(d.target, 597, rng)
    out.append(("digits", d.data, d.target, tr, te))
    for name, loader in (("iris", datasets.load_iris), ("wine", datasets.load_wine),
                         ("breast_cancer", datasets.load_breast_cancer)):
        t = loader()
        tr, te = stratified(t.target, len(t.target) // 3, rng)
        out.append((name, standardized(t.data, tr), t.target, tr, te))
    if quick:
        return out[:2]
    # Two synthetic sets: 8 classes of two stretched clusters each among noise features in 16-d
    # (hard), and 20 isotropic Gaussian blobs in 128-d (overlapping, not separable).
    x, y = datasets.make_classification(n_samples=3000, n_features=16, n_informative=8,
                                        n_redundant=0, n_classes=8, n_clusters_per_class=2,
                                        class_sep=1.5, random_state=16)
    tr, te = stratified(y, 1000, rng)
    out.append(("clusters16", standardized(x, tr), y, tr, te))
    x, y = datasets.make_blobs(n_samples=3000, n_features=128, centers=20, cluster_std=1.5,
                               center_box=(-1.0, 1.0), random_state=128)
    tr, te = stratified(y, 1000, rng)
    out.append(("blobs128", standardized(x, tr), y, tr, te))
    out.append(("fmnist3k",) + fmnist_subset(3000, 1000, rng))
    return out


def write_set(folder, name, x, y, rows):
    path = os.path.join(folder, f"{name}.npy")
    np.save(path, np.ascontiguousarray(x[rows], dtype=np.float32))
    np.save(path[:-4] + ".labels.npy", y[rows].astype(np.int64))
    return path


# ---- dml ----
def dml_sets(train, test, loss, seed, epochs, extra):
    """The recipe as --set overrides: every row trains (no validation split), validation only at
    the end (so no model is picked by the test rows), the final map_at_r only."""
    return [f"data.train={train}", f"data.test={test}", "data.val_fraction=0", f"seed={seed}",
            f"model.hidden=[{HIDDEN}]", f"model.dim={DIM}", "model.output=l2",
            "sampler.type=random", f"train.batch_size={BATCH}", f"train.epochs={epochs}",
            f"train.lr={LR}", "train.optimizer=adam", "train.threads=1",
            "train.eval_every=never", "train.checkpoint_every=never",
            "pq.m=4", "pq.k=16", "eval.pq=false", "eval.metrics=[map_at_r]"] + LOSSES[loss] + extra


def set_args(sets):
    return [a for s in sets for a in ("--set", s)]


def run_dml(args, work, sets):
    """map_at_r on the test rows, and the effective config of the run (model.h5)."""
    out = tempfile.mkdtemp(dir=work)
    cfg = os.path.join(work, "empty.yaml")
    proc = subprocess.run([args.dml, "train", cfg, "--out", out] + set_args(sets),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"parity: dml train failed:\n{proc.stderr[-2000:]}")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        final = [json.loads(line) for line in f if '"final"' in line][-1]["final"]
    return final["map_at_r"], torch_recipe.effective_config(os.path.join(out, "model.h5"))


def dml_init_weights(args, work, sets):
    """dml's initial weights for this config and seed: bench_dml dumps them before its one step."""
    out = tempfile.mkdtemp(dir=work)
    cfg = os.path.join(work, "empty.yaml")
    proc = subprocess.run([args.bench, "train", cfg, "--warmup", "1", "--steps", "0", "--threads", "1",
                           "--dump", out] + set_args(sets), capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"parity: bench_dml train --dump failed:\n{proc.stderr[-2000:]}")
    return [(np.load(os.path.join(out, f"enc{i}_w.npy")), np.load(os.path.join(out, f"enc{i}_b.npy")))
            for i in range(2)]


# ---- PyTorch: the plain script a user would write ----
def run_torch(train, test, loss_cfg, seed, epochs, init=None):
    """loss_cfg: the `loss:` section dml ran, every parameter filled in."""
    torch.manual_seed(seed)
    x, y = (torch.from_numpy(a) for a in peer_data.load_spec(train, "none"))
    xt, yt = (torch.from_numpy(a) for a in peer_data.load_spec(test, "none"))
    net = torch_peer.mlp([x.shape[1], HIDDEN, DIM], "l2")
    if init is not None:
        with torch.no_grad():
            for lin, (w, b) in zip([m for m in net if isinstance(m, torch.nn.Linear)], init):
                lin.weight.copy_(torch.from_numpy(w))
                lin.bias.copy_(torch.from_numpy(b))
    lossf = torch_recipe.Loss(loss_cfg, int(y.max()) + 1, DIM)
    groups = [{"params": list(net.parameters())}]
    if lossf.w is not None:  # proxies or class weights, at their learning-rate multiplier
        groups.append({"params": [lossf.w], "lr": LR * lossf.lr_multiplier()})
    opt = torch.optim.Adam(groups, lr=LR)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=BATCH,
                                         shuffle=True)
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            lossf(net(xb), yb).backward()
            opt.step()
    with torch.no_grad():
        return torch_peer.map_at_r(net(xt), yt)


# ---- the table ----
def summary(values):
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, spread


def cell(values):
    mean, spread = summary(values)
    return f"{mean:.3f} ± {spread:.3f}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dml", default="build/dml")
    p.add_argument("--bench", default="build/bench_dml")
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--losses", default=",".join(LOSSES))
    p.add_argument("--sets", default="", help="comma-separated data set names (default: all)")
    p.add_argument("--dml-variant", action="append", default=[], metavar="NAME=k=v,k=v",
                   help="another dml column, trained with these --set overrides")
    p.add_argument("--same-init", action="store_true",
                   help="also train PyTorch from dml's initial weights")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 sets, 1 seed, 3 epochs")
    p.add_argument("--work", default="", help="where the data and runs go (default: a temp dir)")
    p.add_argument("--out", default="", help="also write the table (markdown) here")
    p.add_argument("--json", default="", help="also write every run's map_at_r, per seed, here")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    epochs = args.epochs
    if args.quick:
        seeds, epochs = seeds[:1], 3
    torch.set_num_threads(1)
    os.environ["OPENBLAS_NUM_THREADS"] = "1"  # the same single thread on both sides
    variants = [("dml", [])]
    for v in args.dml_variant:
        name, _, sets = v.partition("=")
        variants.append((name, [s for s in sets.split(",") if s]))
    if not args.work:  # a temporary folder, removed at the end
        with tempfile.TemporaryDirectory(prefix="dml-parity-") as work:
            return run(args, work, seeds, epochs, variants)
    os.makedirs(args.work, exist_ok=True)
    return run(args, args.work, seeds, epochs, variants)


def run(args, work, seeds, epochs, variants):
    open(os.path.join(work, "empty.yaml"), "w").close()
    wanted = [s for s in args.sets.split(",") if s]
    rows, raw = [], []
    head = ["data set", "loss", "PyTorch"] + (["PyTorch, dml's init"] if args.same_init else [])
    head += [f"{name} (Δ vs PyTorch)" for name, _ in variants]
    for name, x, y, tr, te in data_sets(args.quick):
        if wanted and name not in wanted:
            continue
        train, test = write_set(work, f"{name}-train", x, y, tr), write_set(work, f"{name}-test", x, y, te)
        for loss in args.losses.split(","):
            dml_maps, configs = {}, []
            for vname, extra in variants:
                done = [run_dml(args, work, dml_sets(train, test, loss, s, epochs, extra)) for s in seeds]
                dml_maps[vname] = [m for m, _ in done]
                configs = configs or [c for _, c in done]
            torch_maps = [run_torch(train, test, c["loss"], s, epochs) for s, c in zip(seeds, configs)]
            row = [f"{name} ({x.shape[1]}-d, {len(tr)}/{len(te)})", loss, cell(torch_maps)]
            runs = {"set": name, "loss": loss, "seeds": seeds, "PyTorch": torch_maps}
            if args.same_init:
                same = [run_torch(train, test, c["loss"], s, epochs,
                                  dml_init_weights(args, work, dml_sets(train, test, loss, s, epochs, [])))
                        for s, c in zip(seeds, configs)]
                row.append(cell(same))
                runs["PyTorch, dml's init"] = same
            for vname, _ in variants:
                maps = dml_maps[vname]
                runs[vname] = maps
                delta = summary(maps)[0] - summary(torch_maps)[0]
                row.append(f"{cell(maps)} ({delta:+.3f})")
            rows.append(row)
            raw.append(runs)
            print(" | ".join(row), file=sys.stderr, flush=True)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    table = "\n".join(lines)
    note = (f"map_at_r on the test rows, mean ± standard deviation over seeds {','.join(map(str, seeds))}; "
            f"MLP d-{HIDDEN}-{DIM} (l2), Adam {LR:g}, batch {BATCH}, {epochs} epochs")
    print(f"{note}\n\n{table}")
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"{note}\n\n{table}\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"epochs": epochs, "runs": raw}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
