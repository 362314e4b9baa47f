"""The data both peers read, as dml reads it (numpy only): a data SPEC is fashion-mnist:train|test
(the Debian package dataset-fashion-mnist's IDX files) or a .npy of rows with an optional sibling
.labels.npy. Bytes are scaled by 1/255 under normalize `unit`, as dml's normalize: unit does."""
import gzip
import os
import time

import numpy as np

FMNIST = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_spec(spec, normalize="unit"):
    """float32 rows [n, d] (C order) and int64 labels [n] (or None)."""
    if spec.startswith("fashion-mnist:"):
        prefix = "train" if spec.endswith(":train") else "t10k"
        x = read_idx(f"{FMNIST}/{prefix}-images-idx3-ubyte.gz")
        x = x.reshape(len(x), -1).astype(np.float32)
        if normalize == "unit":
            x = x / np.float32(255.0)
        y = read_idx(f"{FMNIST}/{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
        return np.ascontiguousarray(x), y
    if not spec.endswith(".npy"):
        raise SystemExit(f"peer: unsupported data spec {spec}")
    x = np.ascontiguousarray(np.load(spec).astype(np.float32))
    labels = spec[:-4] + ".labels.npy"
    y = np.load(labels).astype(np.int64) if os.path.exists(labels) else None
    return x, y


def machine_probe():
    """The machine's state when the process starts, as bench_dml measures it (bench/bench.h):
    GFLOP/s of one float32 [256, 784] @ [784, 512] through numpy (the same OpenBLAS), best of 20.
    bench/run.py compares the two processes of a round by it."""
    a = (np.arange(256 * 784, dtype=np.float32) % 97 / 97).reshape(256, 784)
    b = (np.arange(784 * 512, dtype=np.float32) % 89 / 89).reshape(784, 512)
    best = 0.0
    for r in range(23):
        t = time.perf_counter()
        a @ b
        rate = 2e-9 * 256 * 784 * 512 / (time.perf_counter() - t)
        if r >= 3:
            best = max(best, rate)
    return best
