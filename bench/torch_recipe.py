"""A dml run's recipe as the plain PyTorch script a user would write: the same MLP, loss, sampler,
optimizer and schedule, read from the effective config dml stores in model.h5 (`/training`,
attribute `config`; every default filled in), with PyTorch's own defaults for what a config
does not say (nn.Linear's initialisation unless `he` is named, PML's initialisation of proxies and class weights).

    train(cfg, x, y, seed) -> net         cfg: the effective config as a dict
    effective_config(model_h5) -> dict
    Loss(loss_cfg, classes, dim)           a loss as a module; proxies are its parameters

Used by bench/parity.py and bench/losses.py. Run with Debian's /usr/bin/python3.
"""
import math

import h5py
import torch
import yaml

import torch_losses
import torch_peer


def effective_config(model_h5):
    with h5py.File(model_h5, "r") as f:
        return yaml.safe_load(f["training"].attrs["config"])


class Loss(torch.nn.Module):
    """dml's loss of a `loss:` section. Learned per-class rows (Proxy Anchor's proxies, ArcFace's
    and CosFace's class weights) are parameters, initialised as PML does."""

    def __init__(self, p, classes, dim):
        super().__init__()
        self.p, self.classes = p, classes
        self.kind = p["type"]
        self.w = None
        if self.kind == "proxy_anchor":
            self.w = torch.nn.Parameter(torch.empty(classes, dim))
            torch.nn.init.kaiming_normal_(self.w, mode="fan_out")
        elif self.kind in ("arcface", "cosface"):
            self.w = torch.nn.Parameter(torch.empty(classes * p["sub_centers"], dim))
            torch.nn.init.normal_(self.w)
        elif self.kind not in ("contrastive", "triplet", "cosine_pair", "multi_similarity", "circle", "supcon"):
            raise ValueError(f"torch_recipe: loss {self.kind} has no PyTorch recipe here")

    def lr_multiplier(self):
        return self.p.get("lr_multiplier", 1.0)

    def forward(self, z, y):
        p, k = self.p, self.kind
        if k == "contrastive":
            return torch_peer.contrastive(torch_peer.distance(z, p), y, p)
        if k == "triplet":
            if p["miner"] not in ("hard", "all") or p.get("soft", False):
                raise ValueError("torch_recipe: triplet with the hard or all miner only")
            d = torch_peer.distance(z, p)
            return torch_peer.triplet_hard(d, y, p) if p["miner"] == "hard" else torch_peer.triplet_all(d, y, p)
        if k == "cosine_pair":
            return torch_peer.cosine_pair(z, y)
        if k == "multi_similarity":
            return torch_losses.multi_similarity(z, None, y, p["alpha"], p["beta"], p["base"],
                                                 p["miner"] == "multi_similarity", p["epsilon"])
        if k == "circle":
            return torch_losses.circle(z, None, y, p["m"], p["gamma"])
        if k == "supcon":
            return torch_losses.supcon(z, None, y, p["temperature"])
        if k == "proxy_anchor":
            return torch_losses.proxy_anchor(z, self.w, y, p["margin"], p["alpha"])
        margin = math.radians(p["margin"]) if k == "arcface" else p["margin"]  # PML: degrees
        return torch_losses.margin_softmax(z, self.w, y, self.classes, p["sub_centers"], k, margin, p["scale"])


def batches(sampler, batch, n, y, steps, gen):
    """Row indices for each step: m per class (b / m classes, each epoch n // b steps), or a
    fresh permutation each epoch cut into batches, the last partial one kept unless drop_last."""
    if sampler["type"] == "m_per_class":
        by_class = [torch.nonzero(y == c).flatten() for c in range(int(y.max()) + 1)]
        by_class = [c for c in by_class if len(c)]
        for _ in range(steps):
            yield torch_peer.m_per_class(by_class, batch, sampler["m"], gen)
        return
    if sampler["type"] != "random":
        raise ValueError(f"torch_recipe: sampler {sampler['type']} has no PyTorch recipe here")
    done = 0
    while True:
        order = torch.randperm(n, generator=gen)
        for at in range(0, n, batch):
            rows = order[at:at + batch]
            if len(rows) < batch and sampler["drop_last"]:
                break
            if done == steps:
                return
            done += 1
            yield rows


def steps_per_epoch(sampler, batch, n):
    if sampler["type"] == "m_per_class":
        return max(n // batch, 1)
    return n // batch if sampler["drop_last"] else (n + batch - 1) // batch


def check_supported(cfg):
    m, t = cfg["model"], cfg["train"]
    unsupported = [(m["type"] != "mlp", "model.type"), (m["activation"] != "relu", "model.activation"),
                   (m["init_scheme"] not in ("torch", "he"), "model.init_scheme"), (bool(m["init"]), "model.init"),
                   (bool(m["head"]), "model.head"), (m["freeze"] != 0, "model.freeze"),
                   (cfg["data"]["pairs"] != "none", "data.pairs"),
                   (t["optimizer"] not in ("adam", "adamw"), "train.optimizer"),
                   (t["schedule"] not in ("constant", "cosine"), "train.schedule"),
                   (t["warmup_steps"] != 0, "train.warmup_steps"), (t["clip_grad_norm"] != 0, "train.clip_grad_norm"),
                   (cfg["loss"]["quantization"]["weight"] != 0, "loss.quantization"),
                   (cfg["loss"]["memory"]["size"] != 0, "loss.memory")]
    bad = [key for no, key in unsupported if no]
    if bad:
        raise ValueError(f"torch_recipe: no PyTorch recipe for {', '.join(bad)} as set")


def he_init(net):
    """nn/layers.c's `he` scheme: uniform weights, sqrt(6 / fan_in) before a ReLU and Glorot's
    sqrt(6 / (fan_in + fan_out)) for the last layer, biases zero."""
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for i, lin in enumerate(linears):
            if i + 1 < len(linears):
                torch.nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")
            else:
                torch.nn.init.xavier_uniform_(lin.weight)
            lin.bias.zero_()


def train(cfg, x, y, seed):
    """The net after the recipe's steps, trained on rows x with labels y (tensors)."""
    check_supported(cfg)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    m, t = cfg["model"], cfg["train"]
    net = torch_peer.mlp([x.shape[1]] + list(m["hidden"]) + [m["dim"]], m["output"])
    if m["init_scheme"] == "he":
        he_init(net)
    loss = Loss(cfg["loss"], int(y.max()) + 1, m["dim"])
    groups = [{"params": list(net.parameters())}]
    if loss.w is not None:
        groups.append({"params": [loss.w], "lr": t["lr"] * loss.lr_multiplier()})
    adam = torch.optim.AdamW if t["optimizer"] == "adamw" else torch.optim.Adam
    opt = adam(groups, lr=t["lr"], weight_decay=t["weight_decay"])
    b = t["batch_size"]
    total = t["steps"] if t["steps"] > 0 else t["epochs"] * steps_per_epoch(cfg["sampler"], b, len(x))
    cosine = t["schedule"] == "cosine"  # optim/schedule.c: lr * (1 + cos(pi t / T)) / 2, to 0
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, total) / total)) if cosine else 1.0)
    for rows in batches(cfg["sampler"], b, len(x), y, total, gen):
        opt.zero_grad(set_to_none=True)
        loss(net(x[rows]), y[rows]).backward()
        opt.step()
        sched.step()
    return net
