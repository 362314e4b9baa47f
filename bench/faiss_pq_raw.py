"""The baseline of the DQN configs: FAISS's own product quantizer on raw Fashion-MNIST pixels
(x / 255) at 16 and 32 bits (M = 2 and 4 sub-quantizers of 256 centroids, 25 k-means
iterations), map_all of the 10,000 test queries against the 60,000 training images by ADC.
Run with /usr/bin/python3 (numpy, faiss)."""
import gzip

import faiss
import numpy as np

FMNIST = "/usr/share/datasets/fashion-mnist"


def read(prefix):
    with gzip.open(f"{FMNIST}/{prefix}-images-idx3-ubyte.gz", "rb") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784).astype(np.float32) / 255
    with gzip.open(f"{FMNIST}/{prefix}-labels-idx1-ubyte.gz", "rb") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8).astype(np.int64)
    return np.ascontiguousarray(x), y


def map_all(index, q, yq, ydb, block=500):
    n_db = index.ntotal
    total = 0.0
    for i0 in range(0, len(q), block):
        _, idx = index.search(q[i0:i0 + block], n_db)
        rel = ydb[idx] == yq[i0:i0 + block, None]
        hits = np.cumsum(rel, axis=1)
        prec = hits / np.arange(1, n_db + 1)[None, :]
        total += ((prec * rel).sum(1) / rel.sum(1)).sum()
    return total / len(q)


def main():
    xb, yb = read("train")
    xq, yq = read("t10k")
    for m in (2, 4):
        index = faiss.IndexPQ(784, m, 8)
        index.pq.cp.niter = 25
        index.train(xb)
        index.add(xb)
        print(f"FAISS PQ on raw pixels, {8 * m} bits: map_all {map_all(index, xq, yq, yb):.4f}")


if __name__ == "__main__":
    main()
