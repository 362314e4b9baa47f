"""Baselines for configs/fmnist-mnr-halves.yaml: retrieve the bottom half of each Fashion-MNIST
test image from its top half, with no training. Prints recall@1/5/10 and MRR@10 for
(a) raw pixels (top half against bottom half, L2) and (b) one random Gaussian projection to 128
dimensions applied to both halves, then L2-normalised. Run with /usr/bin/python3 (numpy)."""
import gzip

import numpy as np

FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"


def load():
    with gzip.open(FMNIST, "rb") as f:
        data = f.read()
    return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255.0


def scores(q, db):
    ranks = np.empty(len(q), dtype=np.int64)
    for i0 in range(0, len(q), 500):
        d = (
            (q[i0:i0 + 500] ** 2).sum(1)[:, None] + (db ** 2).sum(1)[None, :]
            - 2.0 * q[i0:i0 + 500] @ db.T)
        own = d[np.arange(d.shape[0]), np.arange(i0, i0 + d.shape[0])]
        ranks[i0:i0 + d.shape[0]] = (d < own[:, None]).sum(1) + 1
    out = {f"recall_at_{k}": float((ranks <= k).mean()) for k in (1, 5, 10)}
    out["mrr_at_10"] = float(np.where(ranks <= 10, 1.0 / ranks, 0.0).mean())
    return out


def main():
    x = load()
    top, bottom = x[:, :392], x[:, 392:]
    print("raw pixels:", scores(top, bottom))
    r = np.random.default_rng(0).standard_normal((392, 128)).astype(np.float32)
    a, b = top @ r, bottom @ r
    a /= np.linalg.norm(a, axis=1, keepdims=True) + 1e-12
    b /= np.linalg.norm(b, axis=1, keepdims=True) + 1e-12
    print("random projection:", scores(a, b))


if __name__ == "__main__":
    main()
