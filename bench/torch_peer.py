"""The PyTorch side of `make bench`: the same work dml does, timed on the same machine.

Each case prints one JSON object on stdout. Run with Debian's /usr/bin/python3 (torch 1.13).
    torch_peer.py train --loss triplet_hard --steps 60 --intra 2
    torch_peer.py small --steps 2000 --intra 1
    torch_peer.py ref-train --loss contrastive --epochs 10    (the accuracy reference of docs/results.md)
"""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def fashion_mnist(split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(f"{FMNIST}/{prefix}-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32) / 255.0
    y = read_idx(f"{FMNIST}/{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def mlp(widths, normalize=True):
    layers = []
    for i in range(len(widths) - 1):
        layers.append(torch.nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    if not normalize:
        return net
    return torch.nn.Sequential(net, L2Norm())


class L2Norm(torch.nn.Module):
    def forward(self, z):
        return F.normalize(z, dim=1)


def pdist(z):
    d2 = (z * z).sum(1, keepdim=True) + (z * z).sum(1) - 2.0 * z @ z.t()
    return d2.clamp_min(0).add(1e-12).sqrt()


def triplet_hard(z, y, margin=0.2):
    d = pdist(z)
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    hardest_pos = (d * (same & ~eye)).max(1).values
    hardest_neg = (d + 1e9 * same).min(1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def triplet_all(z, y, margin=0.2):
    # The usual PyTorch formulation: a B x B x B mask of valid triplets.
    d = pdist(z)
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    valid = (same & ~eye)[:, :, None] & (~same)[:, None, :]
    loss = F.relu(d[:, :, None] - d[:, None, :] + margin) * valid
    n_pos = (loss > 1e-16).sum()
    return loss.sum() / n_pos.clamp_min(1)


def contrastive(z, y, neg_margin=1.0):
    d = pdist(z)
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool)
    pos = (d ** 2) * (same & ~eye)
    neg = F.relu(neg_margin - d) ** 2 * (~same)
    return (pos.sum() + neg.sum()) / (len(y) * (len(y) - 1))


def mnr(za, zp, scale=20.0):
    s = scale * za @ zp.t()
    return F.cross_entropy(s, torch.arange(len(za)))


def same_class_pairs(y, batch, gen):
    idx_by_class = [torch.nonzero(y == c).flatten() for c in range(int(y.max()) + 1)]
    cls = torch.randint(0, len(idx_by_class), (batch,), generator=gen)
    a = torch.empty(batch, dtype=torch.long)
    p = torch.empty(batch, dtype=torch.long)
    for i, c in enumerate(cls.tolist()):
        members = idx_by_class[c]
        j = torch.randint(0, len(members), (2,), generator=gen)
        a[i], p[i] = members[j[0]], members[j[1]]
    return a, p


def m_per_class(y, batch, m, gen):
    classes = torch.randperm(int(y.max()) + 1, generator=gen)[: batch // m]
    out = []
    for c in classes.tolist():
        members = torch.nonzero(y == c).flatten()
        out.append(members[torch.randint(0, len(members), (m,), generator=gen)])
    return torch.cat(out)


def set_threads(intra):
    torch.set_num_threads(intra)


def train_case(args):
    set_threads(args.intra)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x, y = fashion_mnist("train")
    batch = 256
    if args.loss == "autoencoder":
        enc, dec = mlp([784, 512, 256, 128], normalize=False), mlp([128, 256, 512, 784], normalize=False)
        params = list(enc.parameters()) + list(dec.parameters())
    else:
        enc = mlp([784, 512, 256, 128])
        params = list(enc.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    # Batches are drawn before timing: the clock measures the training step only, as for dml.
    batches = []
    for _ in range(args.steps + args.warmup):
        if args.loss == "mnr":
            batches.append(same_class_pairs(y, batch, gen))
        elif args.loss == "triplet_all":
            batches.append(m_per_class(y, batch, 4, gen))
        else:
            batches.append(m_per_class(y, batch, 4, gen))
    t0 = None
    for i, b in enumerate(batches):
        if i == args.warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if args.loss == "mnr":
            loss = mnr(enc(x[b[0]]), enc(x[b[1]]))
        elif args.loss == "autoencoder":
            xb = x[b]
            loss = F.mse_loss(dec(enc(xb)), xb)
        else:
            z = enc(x[b])
            loss = {"triplet_hard": triplet_hard, "triplet_all": triplet_all,
                    "contrastive": contrastive}[args.loss](z, y[b])
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    print(json.dumps({"case": f"train_{args.loss}", "samples_per_s": batch * args.steps / seconds,
                      "intra_threads": args.intra, "loss": float(loss)}))


def small_case(args):
    set_threads(args.intra)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 64, generator=gen)
    y = torch.randint(0, 16, (4096,), generator=gen)
    enc = mlp([64, 128, 64, 32])
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    batches = [m_per_class(y, 64, 4, gen) for _ in range(args.steps + args.warmup)]
    t0 = None
    for i, b in enumerate(batches):
        if i == args.warmup:
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = triplet_hard(enc(x[b]), y[b])
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - t0
    print(json.dumps({"case": "small_triplet_hard", "us_per_step": 1e6 * seconds / args.steps,
                      "intra_threads": args.intra}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("case", choices=["train", "small"])
    p.add_argument("--loss", default="triplet_hard",
                   choices=["triplet_hard", "triplet_all", "contrastive", "mnr", "autoencoder"])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--intra", type=int, default=os.cpu_count())
    args = p.parse_args()
    {"train": train_case, "small": small_case}[args.case](args)


if __name__ == "__main__":
    sys.exit(main())
