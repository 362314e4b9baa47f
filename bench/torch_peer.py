"""The PyTorch side of `make bench`: the same work dml does, timed on the same machine.

Each command prints one JSON object per case on stdout. Run with Debian's /usr/bin/python3
(torch 1.13); bench/run.py sets OPENBLAS_NUM_THREADS (the BLAS threads) before starting it.

    torch_peer.py train --spec SPEC.json --steps 40 --warmup 3 --intra 1,2
        the training step dml times, on the spec bench_dml printed (model, loss, batch, sampler)
    torch_peer.py check DUMP_DIR...
        the first step's loss and gradient norm from the weights and batch bench_dml dumped
    torch_peer.py eval --db train_emb.npy --queries test_emb.npy --k 100 --intra 1,2
        exact top-k (blocked matmul + topk) and map_at_r (metrics.md) on the same embeddings
    torch_peer.py demo configs/demo.yaml --intra 2
        the demo config as a PyTorch script (train, validate each epoch, final test metrics):
        what `make bench` measures the peak memory of
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import peer_data

LOSS_WINDOW = 5  # steps averaged for the first and last loss, as bench_dml does


# ---- data ----
def load_spec(spec, normalize="unit"):
    x, y = peer_data.load_spec(spec, normalize)
    return torch.from_numpy(x), torch.from_numpy(y) if y is not None else None


# ---- model ----
class L2Norm(torch.nn.Module):
    def forward(self, z):
        return F.normalize(z, dim=1)


def mlp(widths, output):
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            layers.append(torch.nn.ReLU())
    if output == "l2":
        layers.append(L2Norm())
    elif output == "tanh":
        layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers)


class Net(torch.nn.Module):
    """dml's net for a spec: the encoder, and for an autoencoder the mirrored decoder reading
    the encoder's output before its normalisation (train/train_step.c's bottleneck)."""

    def __init__(self, spec):
        super().__init__()
        if spec["activation"] != "relu":
            raise SystemExit("torch_peer: only relu nets are benchmarked")
        self.encoder = mlp(spec["widths"], "none")
        self.output = spec["output"]
        self.decoder = mlp(spec["decoder_widths"], "none") if spec["net"] == "autoencoder" else None

    def bottleneck(self, x):
        return self.encoder(x)

    def head(self, h):
        if self.output == "l2":
            return F.normalize(h, dim=1)
        return torch.tanh(h) if self.output == "tanh" else h

    def forward(self, x):
        return self.head(self.encoder(x))

    def linears(self):
        enc = [m for m in self.encoder if isinstance(m, torch.nn.Linear)]
        dec = [m for m in self.decoder if isinstance(m, torch.nn.Linear)] if self.decoder else []
        return enc, dec


# ---- losses (losses.md), parameterised by the spec ----
def pdist(z, squared=False):
    d2 = (z * z).sum(1, keepdim=True) + (z * z).sum(1) - 2.0 * z @ z.t()
    d2 = d2.clamp_min(0)
    return d2 if squared else d2.add(1e-12).sqrt()


def distance(z, spec):
    """The spec holds the loss's own parameters: one without a distance (cosine_pair) gets the
    default, which it does not read."""
    kind = spec.get("distance", "euclidean")
    if kind == "cosine":
        zn = F.normalize(z, dim=1)
        return 1.0 - zn @ zn.t()
    return pdist(z, squared=kind == "squared_euclidean")


def triplet_hard(d, y, spec):
    # losses.md: one triplet per anchor that has a positive and a negative in the batch, the
    # mean over those anchors (losses/triplet.c skips the others). Masking with a 0 instead
    # would give an anchor without a positive the triplet (a, a, n) and count it in the mean:
    # the same on full batches of a few classes, not on an epoch's short last batch.
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    pos = same & ~eye
    hardest_pos = (d * pos).max(1).values
    hardest_neg = (d + 1e9 * same).min(1).values
    valid = pos.any(1) & (~same).any(1)
    if not bool(valid.any()):
        return d.sum() * 0.0
    return F.relu(hardest_pos - hardest_neg + spec["margin"])[valid].mean()


def triplet_all(d, y, spec):
    # The usual PyTorch formulation: a B x B x B mask of valid triplets.
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    loss = F.relu(d[:, :, None] - d[:, None, :] + spec["margin"]) * valid
    if spec["reduction"] == "mean_nonzero":
        return loss.sum() / (loss > 0).sum().clamp_min(1)
    return loss.sum() / valid.sum().clamp_min(1)


def contrastive(d, y, spec):
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    p = spec["power"]
    pos = F.relu(d - spec["pos_margin"]) ** p * (same & ~eye)
    neg = F.relu(spec["neg_margin"] - d) ** p * (~same)
    terms = pos + neg
    if spec["reduction"] == "mean_nonzero":
        return terms.sum() / (terms > 0).sum().clamp_min(1)
    return terms.sum() / (len(y) * (len(y) - 1))


def mnr(za, zp, y, spec):
    s = spec["scale"] * F.normalize(za, dim=1) @ F.normalize(zp, dim=1).t()
    if spec["mask_same_label"] and y is not None:
        eye = torch.eye(len(za), dtype=torch.bool)
        s = s.masked_fill((y[:, None] == y[None, :]) & ~eye, float("-inf"))
    target = torch.arange(len(za))
    loss = F.cross_entropy(s, target)
    if spec["symmetric"]:
        loss = 0.5 * (loss + F.cross_entropy(s.t(), target))
    return loss


def quantization(z, books):
    """DQN's term: (1/B) sum |z - q(z)|^2, q the nearest codeword per sub-space; books [M, K, ds]."""
    b, dim = z.shape
    m, k, ds = books.shape
    zs = z.detach().reshape(b, m, ds).transpose(0, 1)
    scores = (books * books).sum(-1)[:, None, :] - 2.0 * torch.bmm(zs, books.transpose(1, 2))
    code = scores.argmin(-1)
    q = torch.gather(books, 1, code[..., None].expand(m, b, ds)).transpose(0, 1).reshape(b, dim)
    return ((z - q) ** 2).sum() / b


def cosine_pair(z, y):
    """DQN's pairwise cosine loss (losses/cosine_pair.c): mean over i != j of (s_ij - cos_ij)^2,
    s_ij = +1 for a same-label pair and -1 otherwise."""
    zn = F.normalize(z, dim=1)
    c = zn @ zn.t()
    s = (y[:, None] == y[None, :]).float() * 2.0 - 1.0
    off = ~torch.eye(len(y), dtype=torch.bool)
    return ((s - c) ** 2)[off].mean() if len(y) > 1 else c.sum() * 0.0


METRIC_LOSSES = {"triplet_hard": triplet_hard, "triplet_all": triplet_all, "contrastive": contrastive}


def step_loss(net, spec, x, y, batch, books):
    """train/train_step.c's dml_run_loss: gather, forward, loss (+ the quantization term)."""
    if spec["loss"] == "mnr":
        a, p = batch
        za, zp = net(x[a]), net(x[p])
        loss = mnr(za, zp, y[a] if y is not None else None, spec)
        z = za
    elif spec["loss"] == "reconstruction":
        xb = x[batch]
        h = net.bottleneck(xb)
        out = net.decoder(h)
        if spec["reconstruction"] != "mse":
            raise SystemExit("torch_peer: only the mse reconstruction is benchmarked")
        loss = F.mse_loss(out, xb)
        z = net.head(h)
    else:
        if spec["loss"] not in METRIC_LOSSES:
            raise SystemExit(f"torch_peer: loss {spec['loss']} is not benchmarked")
        if spec.get("soft", False):
            raise SystemExit("torch_peer: soft triplets are not benchmarked")
        z = net(x[batch])
        loss = METRIC_LOSSES[spec["loss"]](distance(z, spec), y[batch], spec)
    if spec["quant_weight"] > 0:
        loss = loss + spec["quant_weight"] * quantization(z, books)
    return loss


# ---- samplers (which rows, not how many: the timed work does not depend on the draw) ----
def m_per_class(by_class, batch, m, gen):
    classes = torch.randperm(len(by_class), generator=gen)[: batch // m]
    out = []
    for c in classes.tolist():
        members = by_class[c]
        pick = torch.randperm(len(members), generator=gen)[:m] if len(members) >= m else \
            torch.randint(0, len(members), (m,), generator=gen)
        out.append(members[pick])
    return torch.cat(out)


def same_class_pairs(y, by_class, batch, gen):
    a = torch.randint(0, len(y), (batch,), generator=gen)
    p = torch.empty(batch, dtype=torch.long)
    for i, row in enumerate(a.tolist()):
        members = by_class[int(y[row])]
        j = row
        while j == row:
            j = int(members[torch.randint(0, len(members), (1,), generator=gen)])
        p[i] = j
    return a, p


def draw_batches(spec, y, n_rows, count, gen):
    b = spec["batch"]
    by_class = None
    if y is not None:
        by_class = [torch.nonzero(y == c).flatten() for c in range(int(y.max()) + 1)]
        by_class = [c for c in by_class if len(c)]
    if spec["pairs"] == "same_class":
        return [same_class_pairs(y, by_class, b, gen) for _ in range(count)]
    if spec["sampler"] == "m_per_class" and by_class is not None:
        return [m_per_class(by_class, b, spec["m"], gen) for _ in range(count)]
    return [torch.randint(0, n_rows, (b,), generator=gen) for _ in range(count)]


def init_books(net, spec, x):
    """Codebooks for the timed joint step: sub-vectors of K embedded rows (the values do not
    change the work; bench_dml fits them by k-means++ as the trainer does)."""
    if spec["quant_weight"] <= 0:
        return None
    with torch.no_grad():
        z = net(x[: spec["pq_k"]])
    return z.reshape(spec["pq_k"], spec["pq_m"], -1).transpose(0, 1).contiguous()


def optimizer(spec, params):
    if spec["optimizer"] != "adam":
        raise SystemExit("torch_peer: only adam is benchmarked")
    return torch.optim.Adam(params, lr=spec["lr"], weight_decay=spec["weight_decay"])


def parse_intra(text):
    return [int(t) for t in text.split(",") if t]


# ---- commands ----
def train_case(args):
    probe = peer_data.machine_probe()
    with open(args.spec) as f:
        spec = json.load(f)
    spec = spec.get("spec", spec)
    x, y = load_spec(spec["data"], spec["normalize"])
    runs = []
    for intra in parse_intra(args.intra):
        torch.set_num_threads(intra)
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        net = Net(spec)
        opt = optimizer(spec, net.parameters())
        books = init_books(net, spec, x)
        # Batches are drawn before timing; the gather itself is timed, as in dml.
        batches = draw_batches(spec, y, len(x), args.warmup + args.steps, gen)
        losses = []
        t0 = None
        for i, b in enumerate(batches):
            if i == args.warmup:
                t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = step_loss(net, spec, x, y, b, books)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - t0
        w = min(LOSS_WINDOW, len(losses))
        runs.append({"intra_threads": intra, "seconds": seconds,
                     "samples_per_s": spec["batch"] * args.steps / seconds,
                     "us_per_step": 1e6 * seconds / args.steps,
                     "loss_first": float(np.mean(losses[:w])), "loss_last": float(np.mean(losses[-w:])),
                     "finite": bool(np.all(np.isfinite(losses)))})
    best = max(runs, key=lambda r: r["samples_per_s"])
    print(json.dumps({"case": args.name, "side": "torch", "loss": spec["loss"], "batch": spec["batch"],
                      "steps": args.steps, "warmup": args.warmup,
                      "blas_threads": int(os.environ.get("OPENBLAS_NUM_THREADS", "0")),
                      "probe_gflops": round(probe, 1), **best, "runs": runs}))


def check_case(args):
    torch.set_num_threads(1)
    for folder in args.dumps:
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        spec = manifest["spec"]
        x, y = load_spec(spec["data"], spec["normalize"])
        net = Net(spec)
        enc, dec = net.linears()
        with torch.no_grad():
            for tower, layers in (("enc", enc), ("dec", dec)):
                for i, lin in enumerate(layers):
                    lin.weight.copy_(torch.from_numpy(np.load(os.path.join(folder, f"{tower}{i}_w.npy"))))
                    lin.bias.copy_(torch.from_numpy(np.load(os.path.join(folder, f"{tower}{i}_b.npy"))))
        idx = torch.from_numpy(np.load(os.path.join(folder, "batch_idx.npy")).astype(np.int64))
        batch = idx
        if spec["pairs"] == "same_class":
            batch = (idx, torch.from_numpy(np.load(os.path.join(folder, "batch_pos.npy")).astype(np.int64)))
        books = None
        if spec["quant_weight"] > 0:
            c = np.load(os.path.join(folder, "pq_centroids.npy"))
            books = torch.from_numpy(c).reshape(spec["pq_m"], spec["pq_k"], -1)
        loss = step_loss(net, spec, x, y, batch, books)
        loss.backward()
        norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in net.parameters() if p.grad is not None))
        dml_loss, dml_norm = manifest["first_loss"], manifest["first_grad_norm"]
        print(json.dumps({"case": os.path.basename(folder.rstrip("/")), "loss": spec["loss"],
                          "dml_loss": dml_loss, "torch_loss": float(loss),
                          "loss_rel_err": abs(float(loss) - dml_loss) / max(abs(dml_loss), 1e-12),
                          "dml_grad_norm": dml_norm, "torch_grad_norm": norm,
                          "grad_norm_rel_err": abs(norm - dml_norm) / max(abs(dml_norm), 1e-12)}))


def sq_dists(q, ref, ref_sq):
    d = (q * q).sum(1, keepdim=True) + ref_sq[None, :] - 2.0 * q @ ref.t()
    return d.clamp_min_(0)


def map_at_r(z, y, block=1024):
    """metrics.md's map_at_r, protocol 1 (each query among the others, itself excluded)."""
    counts = torch.bincount(y)
    r = counts[y] - 1
    r_max = int(r.max())
    sq = (z * z).sum(1)
    k = torch.arange(1, r_max + 1, dtype=torch.float32)
    total, n_valid = 0.0, 0
    for i0 in range(0, len(z), block):
        q = z[i0:i0 + block]
        d = sq_dists(q, z, sq)
        rows = torch.arange(len(q))
        d[rows, rows + i0] = float("inf")
        idx = torch.topk(d, r_max, largest=False, sorted=True).indices
        rel = (y[idx] == y[i0:i0 + block, None]).float()
        rq = r[i0:i0 + block]
        within = (k[None, :] <= rq[:, None]).float()
        ap = (rel.cumsum(1) / k * rel * within).sum(1) / rq.clamp_min(1)
        total += float(ap[rq > 0].sum())
        n_valid += int((rq > 0).sum())
    return total / max(n_valid, 1)


def knn(q, ref, k, block=1024):
    ref_sq = (ref * ref).sum(1)
    out = []
    for i0 in range(0, len(q), block):
        out.append(torch.topk(sq_dists(q[i0:i0 + block], ref, ref_sq), k, largest=False, sorted=True))
    return torch.cat([o.values for o in out]), torch.cat([o.indices for o in out])


def eval_case(args):
    probe = peer_data.machine_probe()
    db, _ = load_spec(args.db, "none")
    q, qy = load_spec(args.queries, "none")
    runs = []
    for intra in parse_intra(args.intra):
        torch.set_num_threads(intra)
        with torch.no_grad():
            t0 = time.perf_counter()
            value = map_at_r(q, qy)
            map_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            dist, _ = knn(q, db, args.k)
            knn_s = time.perf_counter() - t0
        runs.append({"intra_threads": intra, "map_at_r": value, "map_at_r_s": map_s, "knn_s": knn_s,
                     "top1_dist_mean": float(dist[:, 0].mean()),
                     "kth_dist_mean": float(dist[:, -1].mean())})
    best_map = min(runs, key=lambda r: r["map_at_r_s"])
    best_knn = min(runs, key=lambda r: r["knn_s"])
    print(json.dumps({"case": args.name, "side": "torch", "n_queries": len(q), "n_db": len(db),
                      "k": args.k, "blas_threads": int(os.environ.get("OPENBLAS_NUM_THREADS", "0")),
                      "probe_gflops": round(probe, 1), "map_at_r": best_map["map_at_r"],
                      "map_at_r_s": best_map["map_at_r_s"],
                      "map_intra_threads": best_map["intra_threads"], "knn_s": best_knn["knn_s"],
                      "knn_intra_threads": best_knn["intra_threads"],
                      "top1_dist_mean": best_knn["top1_dist_mean"],
                      "kth_dist_mean": best_knn["kth_dist_mean"], "runs": runs}))


def demo_case(args):
    """The demo config (configs/demo.yaml) as the usual PyTorch script: the same split, MLP,
    loss, sampler, batch, epochs, optimizer and schedule; validation every epoch; the final
    test metrics. No product quantizer (dml also fits and evaluates one)."""
    import yaml
    with open(args.config) as f:
        cfg = yaml.safe_load(f)
    torch.set_num_threads(args.intra)
    torch.manual_seed(cfg.get("seed", 42))
    gen = torch.Generator().manual_seed(cfg.get("seed", 42))
    data, model, loss_cfg = cfg["data"], cfg.get("model", {}), cfg.get("loss", {})
    sampler, train = cfg.get("sampler", {}), cfg.get("train", {})
    if loss_cfg.get("type", "triplet") != "triplet" or model.get("type", "mlp") != "mlp":
        raise SystemExit("torch_peer demo: expected an mlp with a triplet loss")
    x, y = load_spec(data["train"], data.get("normalize", "unit"))
    xt, yt = load_spec(data["test"], data.get("normalize", "unit"))
    perm = torch.randperm(len(x), generator=gen)
    n_val = round(data.get("val_fraction", 0.1) * len(x))
    val, tr = perm[:n_val], perm[n_val:]
    widths = [x.shape[1]] + list(model.get("hidden", [512, 256])) + [model.get("dim", 128)]
    spec = {"activation": "relu", "widths": widths, "output": model.get("output", "l2"), "net": "mlp",
            "margin": loss_cfg.get("margin", 0.2), "distance": "euclidean",
            "reduction": "mean_nonzero" if loss_cfg.get("miner", "all") == "all" else "mean"}
    net = Net(spec)
    lossf = {"all": triplet_all, "hard": triplet_hard}[loss_cfg.get("miner", "all")]
    batch, m = train.get("batch_size", 256), sampler.get("m", 4)
    steps_per_epoch = len(tr) // batch
    total = steps_per_epoch * train.get("epochs", 10)
    if args.max_steps:
        total = min(total, args.max_steps)
    opt = torch.optim.Adam(net.parameters(), lr=float(train.get("lr", 1e-3)))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    by_class = [tr[y[tr] == c] for c in range(int(y.max()) + 1)]
    t0 = time.perf_counter()
    for step in range(total):
        b = m_per_class(by_class, batch, m, gen)
        opt.zero_grad(set_to_none=True)
        loss = lossf(pdist(net(x[b])), y[b], spec)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % steps_per_epoch == 0 or step + 1 == total:
            with torch.no_grad():
                mv = map_at_r(net(x[val]), y[val])
            print(f"step {step + 1}: loss {float(loss):.4f} validation map_at_r {mv:.4f}", file=sys.stderr)
    with torch.no_grad():
        zt, ztr = net(xt), net(x[tr])
        test_map = map_at_r(zt, yt)
        _, idx = knn(zt, ztr, 5)
        votes = y[tr][idx]
        knn_acc = float((torch.mode(votes, 1).values == yt).float().mean())
    print(json.dumps({"case": "demo", "side": "torch", "steps": total, "seconds": time.perf_counter() - t0,
                      "map_at_r": test_map, "knn_accuracy": knn_acc}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("--spec", required=True)
    t.add_argument("--name", default="train")
    t.add_argument("--steps", type=int, default=40)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--intra", default=f"1,{os.cpu_count()}")
    c = sub.add_parser("check")
    c.add_argument("dumps", nargs="+")
    e = sub.add_parser("eval")
    e.add_argument("--db", required=True)
    e.add_argument("--queries", required=True)
    e.add_argument("--name", default="eval")
    e.add_argument("--k", type=int, default=100)
    e.add_argument("--intra", default=f"1,{os.cpu_count()}")
    d = sub.add_parser("demo")
    d.add_argument("config")
    d.add_argument("--intra", type=int, default=os.cpu_count())
    d.add_argument("--max-steps", type=int, default=0, help="stop early (a smoke run)")
    args = p.parse_args()
    {"train": train_case, "check": check_case, "eval": eval_case, "demo": demo_case}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
