"""Writes tests/fixtures/losses/torch.txt: every loss of shared/design/losses.md computed by PyTorch
(float64, autograd) on fixed float32 inputs, for tests/test_losses_torch.c to compare dml against.
Run with Debian's interpreter: /usr/bin/python3 tests/scripts/torch_loss_fixtures.py [OUT]

The losses are written from their definitions (losses.md), independently of the C code: here, and
the newer ones in bench/torch_losses.py, which the PyTorch recipes of bench/ train with.
Inputs are drawn so that no hinge, miner choice or nearest centroid sits within a hair of a tie:
a case whose gradient moves under a 1e-5 nudge of its inputs is redrawn with the next seed, so
float32 (dml) and float64 (here) agree on every discrete choice.

Format, one item per line, a case a block:
    case NAME
    opt KEY VALUE                 (loss, dist, miner, soft, reduction, power, margin, ...)
    labels N v1 .. vN             (and anchor/positive/negative lists for explicit triplets)
    input NAME ROWS COLS v...     (row-major, float32 values printed with %.9g)
    value V                       (the loss)
    grad NAME v...                (d loss / d input, for every input that has one)
    end
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
from torch_losses import circle, l2n, margin_softmax, multi_similarity, proxy_anchor, supcon  # noqa: E402

torch.set_default_dtype(torch.float64)


# ---- distances (losses.md: the pairwise matrix; the diagonal is 0 and carries no gradient) ----
def distance(a, b, kind):
    if kind == "cosine":
        return 1.0 - l2n(a) @ l2n(b).T
    sq = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    if kind == "squared_euclidean":
        return sq
    live = sq > 0
    return torch.where(live, sq.clamp_min(1e-300).sqrt(), torch.zeros_like(sq))


def hinge(x, soft):
    return torch.nn.functional.softplus(x) if soft else x.clamp_min(0.0)


def reduce(terms, reduction, soft):
    if terms.numel() == 0:
        return terms.sum() * 0.0
    if reduction == "mean_nonzero" and not soft:
        n = int((terms > 0).sum())
        return terms.sum() / n if n else terms.sum() * 0.0
    return terms.mean()


# ---- triplet and its miners ----
def triplets(d, y, miner, margin):
    """(a, p, n) index lists the miner picks; d is detached for the choices."""
    b = len(y)
    dd = d.detach()
    out = []
    for a in range(b):
        pos = [j for j in range(b) if j != a and y[j] == y[a]]
        neg = [j for j in range(b) if y[j] != y[a]]
        if not pos or not neg:
            continue
        if miner == "all":
            out += [(a, p, n) for p in pos for n in neg]
        elif miner == "hard":
            out.append((a, max(pos, key=lambda j: dd[a, j]), min(neg, key=lambda j: dd[a, j])))
        else:  # semihard: the nearest negative farther than p within the margin, else the hardest
            hardest = min(neg, key=lambda j: dd[a, j])
            for p in pos:
                semi = [n for n in neg if dd[a, p] < dd[a, n] < dd[a, p] + margin]
                out.append((a, p, min(semi, key=lambda j: dd[a, j]) if semi else hardest))
    return out


def triplet_loss(d, triples, margin, soft, reduction):
    if not triples:
        return d.sum() * 0.0
    a, p, n = (torch.tensor(v) for v in zip(*triples))
    return reduce(hinge(d[a, p] - d[a, n] + margin, soft), reduction, soft)


# ---- the other losses ----
def contrastive(d, y, pm, nm, power, reduction):
    y = torch.tensor(y)
    same = y[:, None] == y[None, :]
    off = ~torch.eye(len(y), dtype=torch.bool)
    h = torch.where(same, d - pm, nm - d).clamp_min(0.0) ** power
    return reduce(h[off], reduction, False)


def mnr(a, p, hard, y, scale, symmetric):
    b = a.shape[0]
    cand = p if hard is None else torch.cat([p, hard])
    s = scale * l2n(a) @ l2n(cand).T
    if y is not None:
        y = torch.tensor(y)
        drop = (y[:, None] == y[None, :]) & ~torch.eye(b, dtype=torch.bool)
        s = s.clone()
        s[:, :b] = s[:, :b].masked_fill(drop, float("-inf"))
    target = torch.arange(b)
    loss = torch.nn.functional.cross_entropy(s, target)
    if symmetric:
        sq = s[:, :b]
        loss = (loss + torch.nn.functional.cross_entropy(sq.T, target)) / 2
    return loss


def cosine_pair(z, y):
    y = torch.tensor(y)
    s = torch.where(y[:, None] == y[None, :], 1.0, -1.0)
    c = l2n(z) @ l2n(z).T
    off = ~torch.eye(len(y), dtype=torch.bool)
    return ((s - c)[off] ** 2).mean()


def quantization(z, centroids):
    m, k, dsub = centroids.shape
    q = []
    for i in range(m):
        sub = z[:, i * dsub:(i + 1) * dsub]
        code = ((sub.detach()[:, None, :] - centroids[i][None]) ** 2).sum(-1).argmin(1)
        q.append(centroids[i][code])
    return ((z - torch.cat(q, 1)) ** 2).sum(1).mean()


# ---- cases ----
def labels3(b):
    return [i % 3 for i in range(b)]


CASES = [
    # name, loss, rows, cols, options, labels
    ("triplet_all_euclidean_mean_nonzero", "triplet", 10, 6, dict(dist="euclidean", miner="all", margin=1.0, soft=0, reduction="mean_nonzero"), labels3),
    ("triplet_all_euclidean_mean", "triplet", 10, 6, dict(dist="euclidean", miner="all", margin=1.0, soft=0, reduction="mean"), labels3),
    ("triplet_hard_squared", "triplet", 10, 6, dict(dist="squared_euclidean", miner="hard", margin=2.0, soft=0, reduction="mean"), labels3),
    ("triplet_hard_euclidean", "triplet", 12, 5, dict(dist="euclidean", miner="hard", margin=0.5, soft=0, reduction="mean"), labels3),
    ("triplet_semihard_euclidean", "triplet", 12, 5, dict(dist="euclidean", miner="semihard", margin=1.0, soft=0, reduction="mean"), labels3),
    ("triplet_soft_all_cosine", "triplet", 10, 6, dict(dist="cosine", miner="all", margin=0.0, soft=1, reduction="mean"), labels3),
    ("triplet_explicit", "triplet_explicit", 8, 6, dict(dist="euclidean", margin=1.0, soft=0, reduction="mean"), labels3),
    ("triplet_two_rows", "triplet", 2, 6, dict(dist="euclidean", miner="all", margin=0.2, soft=0, reduction="mean_nonzero"), lambda b: [0, 1]),
    ("triplet_one_class", "triplet", 8, 6, dict(dist="euclidean", miner="all", margin=0.2, soft=0, reduction="mean_nonzero"), lambda b: [4] * b),
    ("triplet_no_positive_pair", "triplet", 8, 6, dict(dist="euclidean", miner="hard", margin=0.2, soft=0, reduction="mean"), lambda b: list(range(b))),
    ("triplet_duplicate_rows", "triplet", 8, 6, dict(dist="squared_euclidean", miner="all", margin=2.0, soft=0, reduction="mean_nonzero", duplicate=1), labels3),
    ("contrastive_p2_mean", "contrastive", 10, 6, dict(dist="euclidean", pos_margin=0.5, neg_margin=3.5, power=2, reduction="mean"), labels3),
    ("contrastive_p1_mean_nonzero", "contrastive", 10, 6, dict(dist="euclidean", pos_margin=0.5, neg_margin=3.5, power=1, reduction="mean_nonzero"), labels3),
    ("contrastive_cosine", "contrastive", 10, 6, dict(dist="cosine", pos_margin=0.1, neg_margin=0.9, power=2, reduction="mean"), labels3),
    ("mnr_plain", "mnr", 8, 6, dict(scale=20.0, symmetric=0, masked=0, hard=0), labels3),
    ("mnr_symmetric_masked", "mnr", 8, 6, dict(scale=20.0, symmetric=1, masked=1, hard=0), labels3),
    ("mnr_hard_negatives_masked", "mnr", 8, 6, dict(scale=5.0, symmetric=0, masked=1, hard=1), labels3),
    ("cosine_pair", "cosine_pair", 10, 6, {}, labels3),
    ("bce_logits", "bce_logits", 6, 5, {}, None),
    ("mse", "mse", 6, 5, {}, None),
    ("quantization_m3_k4", "quantization", 8, 6, dict(m=3, k=4), None),
    ("ms_mined", "multi_similarity", 12, 6, dict(alpha=2.0, beta=50.0, base=0.5, miner=1, epsilon=0.1), labels3),
    ("ms_all_pairs", "multi_similarity", 12, 6, dict(alpha=2.0, beta=50.0, base=0.5, miner=0, epsilon=0.1), labels3),
    ("ms_mined_a1_b20_base0.3_eps0.2", "multi_similarity", 10, 5, dict(alpha=1.0, beta=20.0, base=0.3, miner=1, epsilon=0.2), labels3),
    ("ms_memory_mined", "multi_similarity", 8, 6, dict(alpha=2.0, beta=50.0, base=0.5, miner=1, epsilon=0.1, memory=6), labels3),
    ("ms_one_class", "multi_similarity", 8, 6, dict(alpha=2.0, beta=50.0, base=0.5, miner=0, epsilon=0.1), lambda b: [4] * b),
    ("circle_m0.4_g80", "circle", 12, 6, dict(m=0.4, gamma=80.0), labels3),
    ("circle_m0.25_g32", "circle", 10, 5, dict(m=0.25, gamma=32.0), labels3),
    ("circle_memory", "circle", 8, 6, dict(m=0.4, gamma=80.0, memory=6), labels3),
    ("circle_no_positive_pair", "circle", 8, 6, dict(m=0.4, gamma=80.0), lambda b: list(range(b))),
    ("supcon_labels", "supcon", 10, 6, dict(temperature=0.1, views=0), labels3),
    ("supcon_views_labels", "supcon", 8, 6, dict(temperature=0.1, views=1), labels3),
    ("supcon_views_ntxent", "supcon", 8, 6, dict(temperature=0.5, views=1), None),
    ("supcon_one_class", "supcon", 6, 5, dict(temperature=0.1, views=0), lambda b: [2] * b),
    ("arcface", "arcface", 10, 6, dict(classes=4, sub_centers=1, margin=28.6, scale=64.0), labels3),
    ("arcface_sub_centers", "arcface", 10, 6, dict(classes=3, sub_centers=3, margin=28.6, scale=64.0), labels3),
    ("cosface", "cosface", 10, 6, dict(classes=4, sub_centers=1, margin=0.35, scale=64.0), labels3),
    ("cosface_sub_centers", "cosface", 10, 6, dict(classes=3, sub_centers=2, margin=0.35, scale=16.0), labels3),
    # four proxies, class 3 absent from the batch (negative terms only)
    ("proxy_anchor", "proxy_anchor", 10, 6, dict(margin=0.1, alpha=32.0, classes=4), labels3),
    ("proxy_anchor_alpha8_margin0", "proxy_anchor", 8, 5, dict(margin=0.0, alpha=8.0, classes=3), labels3),
]

EXPLICIT = ([0, 1, 2, 3, 4, 5, 6, 7], [3, 4, 5, 6, 7, 2, 0, 1], [1, 2, 3, 4, 5, 0, 1, 2])


def draw(rows, cols, rng, scale=1.0):
    return torch.from_numpy(rng.standard_normal((rows, cols)).astype(np.float32).astype(np.float64) * scale)


def build(name, loss, rows, cols, opt, y, seed):
    """Inputs (name -> leaf tensor) and the loss function over them."""
    rng = np.random.default_rng(seed)
    x = {"z": draw(rows, cols, rng)}
    if opt.get("duplicate"):
        x["z"][3] = x["z"][0]  # rows 0 and 3 share class 0 (labels3)
    extra = {}
    if loss in ("triplet", "triplet_explicit", "contrastive"):
        def f(v):
            d = distance(v["z"], v["z"], opt["dist"])
            if loss == "contrastive":
                return contrastive(d, y, opt["pos_margin"], opt["neg_margin"], opt["power"], opt["reduction"])
            t = list(zip(*EXPLICIT)) if loss == "triplet_explicit" else triplets(d, y, opt["miner"], opt["margin"])
            return triplet_loss(d, t, opt["margin"], opt["soft"], opt["reduction"])
    elif loss == "mnr":
        x["p"] = draw(rows, cols, rng)
        if opt["hard"]:
            x["n"] = draw(rows, cols, rng)
        f = lambda v: mnr(v["z"], v["p"], v.get("n"), y if opt["masked"] else None, opt["scale"], opt["symmetric"])
    elif loss in ("multi_similarity", "circle"):
        if opt.get("memory"):
            x["m"] = draw(opt["memory"], cols, rng)
        if loss == "circle":
            f = lambda v: circle(v["z"], v.get("m"), y, opt["m"], opt["gamma"])
        else:
            f = lambda v: multi_similarity(v["z"], v.get("m"), y, opt["alpha"], opt["beta"], opt["base"], opt["miner"], opt["epsilon"])
    elif loss == "supcon":
        if opt["views"]:
            x["p"] = draw(rows, cols, rng)
        f = lambda v: supcon(v["z"], v.get("p"), y, opt["temperature"])
    elif loss in ("arcface", "cosface"):
        x["w"] = draw(opt["classes"] * opt["sub_centers"], cols, rng)
        # PML takes ArcFace's margin in degrees
        m = np.radians(opt["margin"]) if loss == "arcface" else opt["margin"]
        f = lambda v: margin_softmax(v["z"], v["w"], y, opt["classes"], opt["sub_centers"], loss, m, opt["scale"])
    elif loss == "cosine_pair":
        f = lambda v: cosine_pair(v["z"], y)
    elif loss == "proxy_anchor":
        x["proxies"] = draw(opt["classes"], cols, rng)
        f = lambda v: proxy_anchor(v["z"], v["proxies"], y, opt["margin"], opt["alpha"])
    elif loss == "bce_logits":
        x["t"] = torch.from_numpy(rng.uniform(0, 1, (rows, cols)).astype(np.float32).astype(np.float64))
        f = lambda v: (torch.clamp(v["z"], min=0) - v["z"] * v["t"] + torch.log1p(torch.exp(-v["z"].abs()))).mean()
    elif loss == "mse":
        x["t"] = draw(rows, cols, rng)
        f = lambda v: ((v["z"] - v["t"]) ** 2).mean()
    else:  # quantization: centroids fixed data, the gradient flows into z only
        c = draw(opt["m"] * opt["k"], cols // opt["m"], rng).reshape(opt["m"], opt["k"], cols // opt["m"])
        extra["centroids"] = c
        f = lambda v: quantization(v["z"], c)
    return x, f, extra


def evaluate(x, f):
    leaves = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    value = f(leaves)
    value.backward()
    return float(value), {k: leaves[k].grad.clone() for k in leaves}


def stable(x, f, grads):
    """True when a 1e-5 nudge of the inputs leaves the gradient where it was (no kink nearby)."""
    rng = np.random.default_rng(99)
    for _ in range(3):
        nudged = {k: v + torch.from_numpy(rng.standard_normal(tuple(v.shape))) * 1e-5 for k, v in x.items()}
        _, g = evaluate(nudged, f)
        for k in grads:
            if (g[k] - grads[k]).abs().max() > 1e-3 * max(1.0, float(grads[k].abs().max())):
                return False
    return True


def fmt(values):
    return " ".join("%.9g" % v for v in values)


def main():
    out_path = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/losses/torch.txt"
    lines = ["# dml loss fixtures: written by tests/scripts/torch_loss_fixtures.py (PyTorch %s, float64)" % torch.__version__]
    for index, (name, loss, rows, cols, opt, labels) in enumerate(CASES):
        y = labels(rows + opt.get("memory", 0)) if labels else None  # a memory's labels follow the batch's
        for attempt in range(50):
            x, f, extra = build(name, loss, rows, cols, opt, y, 1000 * index + attempt)
            value, grads = evaluate(x, f)
            if stable(x, f, grads):
                break
        else:
            raise SystemExit(f"{name}: no stable draw in 50 seeds")
        lines.append(f"case {name}")
        lines.append(f"opt loss {loss}")
        for k, v in opt.items():
            lines.append(f"opt {k} {v}")
        if y is not None:
            lines.append(f"labels {len(y)} " + " ".join(str(v) for v in y))
        if loss == "triplet_explicit":
            for key, lst in zip(("anchor", "positive", "negative"), EXPLICIT):
                lines.append(f"{key} {len(lst)} " + " ".join(str(v) for v in lst))
        if "centroids" in extra:
            c = extra["centroids"]
            lines.append(f"input centroids {c.shape[0] * c.shape[1]} {c.shape[2]} " + fmt(c.flatten().tolist()))
        for k, v in x.items():
            lines.append(f"input {k} {v.shape[0]} {v.shape[1]} " + fmt(v.flatten().tolist()))
        lines.append("value %.12g" % value)
        for k, g in grads.items():
            if loss in ("bce_logits", "mse") and k == "t":
                continue  # targets are data
            lines.append(f"grad {k} " + fmt(g.flatten().tolist()))
        lines.append("end")
    with open(out_path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print(f"wrote {out_path}: {len(CASES)} cases")


if __name__ == "__main__":
    main()
