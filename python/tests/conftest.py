"""Fixtures: one tiny trained model (four Gaussian blobs in 16-d, as tests/test_train.c), trained
once per session with the dml CLI; the data are .npy files so h5py is not needed to train."""
import os
import subprocess

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WIDTH, CLASSES, ROWS = 16, 4, 400


def dml_cli():
    """The dml binary beside the library under test (DML=... overrides)."""
    path = os.environ.get("DML") or os.path.join(ROOT, "build", "dml")
    if not os.access(path, os.X_OK):
        pytest.fail("the dml CLI %s is missing: run make first" % path)
    return path


def run_dml(*args):
    r = subprocess.run([dml_cli(), *args], cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("dml %s failed (%d):\n%s%s" % (" ".join(args), r.returncode,
                                                            r.stdout, r.stderr))
    return r


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    centers = np.random.default_rng(7).normal(0, 3, (CLASSES, WIDTH))
    X = (centers[y] + rng.normal(0, 1, (n, WIDTH))).astype(np.float32)
    return X, y.astype(np.int64)


TRAIN_ARGS = ["--set", "model.hidden=[32]", "--set", "model.dim=8", "--set", "pq.m=2",
              "--set", "pq.k=16", "--set", "sampler.m=8", "--set", "train.batch_size=32",
              "--set", "train.threads=1", "--set", "train.epochs=2",
              "--set", "train.eval_every=never"]


def train(tmp, name, extra=()):
    X, y = blobs(ROWS, 1)
    data = os.path.join(tmp, "blobs.npy")
    if not os.path.exists(data):
        np.save(data, X)
        np.save(os.path.join(tmp, "blobs.labels.npy"), y)
    out = os.path.join(tmp, name)
    run_dml("train", "configs/demo.yaml", "--out", out, "--set", "data.train=" + data,
            "--set", "data.test=" + data, *TRAIN_ARGS, *extra)
    return os.path.join(out, "model.h5")


@pytest.fixture(scope="session")
def workdir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("dml"))


@pytest.fixture(scope="session")
def model_path(workdir):
    return train(workdir, "mlp")


@pytest.fixture(scope="session")
def data(workdir, model_path):
    """(path of the .npy the model was trained on, its rows)."""
    path = os.path.join(workdir, "blobs.npy")
    return path, np.load(path)


@pytest.fixture
def model(model_path):
    import dml
    with dml.Model(model_path) as m:
        yield m
