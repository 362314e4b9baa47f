"""dml.Model and dml.PQ against the dml CLI on one tiny trained model."""
import ctypes
import os
import threading

import numpy as np
import pytest

import dml
from conftest import run_dml, train

WIDTH = 16


def h5py_or_skip():
    return pytest.importorskip("h5py", reason="python3-h5py is not installed: dml encode writes "
                                              "HDF5, read back to compare")


def test_attributes(model):
    assert (model.dim_in, model.dim_out, model.dim_in_b) == (WIDTH, 8, 0)
    assert model.metric == "l2"
    pq = model.pq
    assert (pq.d, pq.m, pq.nbits, pq.ksub, pq.dsub, pq.code_size) == (8, 2, 4, 16, 4, 1)
    assert pq.centroids.shape == (2, 16, 4) and pq.centroids.dtype == np.float32
    assert "dim_in=16" in repr(model)


def test_load_equals_constructor(model_path, data):
    X = data[1][:10]
    with dml.Model.load(model_path) as a, dml.Model(model_path) as b:
        np.testing.assert_array_equal(a.encode(X), b.encode(X))


def test_encode_equals_cli(model, model_path, data, workdir):
    h5py = h5py_or_skip()
    path, X = data
    out = os.path.join(workdir, "cli_codes.h5")
    run_dml("encode", model_path, path, out, "--pq")
    with h5py.File(out, "r") as f:
        X_cli, codes_cli = f["X"][:], f["codes"][:]
    emb = model.encode(X)
    assert emb.dtype == np.float32 and emb.shape == (len(X), 8)
    np.testing.assert_array_equal(emb, X_cli)
    codes = model.pq.encode(emb)
    assert codes.dtype == np.uint8
    np.testing.assert_array_equal(codes, codes_cli)


def test_no_copy_for_float32_c_contiguous(model, data, monkeypatch):
    """The pointer dml receives is the caller's array's own for float32 C-contiguous input; a
    float64 or Fortran-ordered array is converted (a different pointer) to the same result."""
    L = model._L
    real = L.dml_model_encode
    seen = []

    def spy(h, x, n, out):
        seen.append(x)
        return real(h, x, n, out)

    monkeypatch.setattr(L, "dml_model_encode", spy)
    X = np.ascontiguousarray(data[1][:50])
    ref = model.encode(X)
    assert seen[-1] == X.ctypes.data
    X64 = X.astype(np.float64)
    np.testing.assert_array_equal(model.encode(X64), ref)
    assert seen[-1] != X64.ctypes.data
    XF = np.asfortranarray(X)
    np.testing.assert_array_equal(model.encode(XF), ref)
    assert seen[-1] != XF.ctypes.data
    np.testing.assert_array_equal(model.encode(X.tolist()), ref)
    # the PQ calls too: the embeddings dml_pq_encode reads are the caller's
    real_pq = L.dml_pq_encode
    seen_pq = []

    def spy_pq(h, x, n, codes):
        seen_pq.append(x)
        return real_pq(h, x, n, codes)

    monkeypatch.setattr(L, "dml_pq_encode", spy_pq)
    model.pq.encode(ref)
    assert seen_pq == [ref.ctypes.data]
    view = ref[::2]  # every other row: starts at ref's pointer, not C-contiguous, so copied
    assert view.ctypes.data == ref.ctypes.data and not view.flags.c_contiguous
    np.testing.assert_array_equal(model.pq.encode(view), model.pq.encode(ref)[::2])
    assert seen_pq[-2] != ref.ctypes.data


def test_one_row_and_shapes(model, data):
    X = data[1][:3]
    full = model.encode(X)
    one = model.encode(X[1])
    assert one.shape == (8,)
    np.testing.assert_array_equal(one, full[1])
    assert model.encode(np.empty((0, WIDTH), np.float32)).shape == (0, 8)
    with pytest.raises(dml.UsageError, match="has 15 columns; this needs 16"):
        model.encode(np.zeros((2, 15), np.float32))
    with pytest.raises(dml.UsageError, match="must be 2-D"):
        model.encode(np.zeros((2, 2, WIDTH), np.float32))
    with pytest.raises(ValueError):  # UsageError is a ValueError
        model.pq.encode(np.zeros((2, 7), np.float32))
    with pytest.raises(dml.UsageError, match="k must be at least 1"):
        model.pq.search(model.pq.encode(full), full, 0)


def test_pq_decode_and_search(model, data):
    emb = model.encode(data[1])
    pq = model.pq
    codes = pq.encode(emb)
    dec = pq.decode(codes)
    assert dec.shape == emb.shape
    # decode is each sub-vector's centroid, read back from the codebooks (nbits=4: two indices
    # a byte, the first in the low half)
    cent = pq.centroids
    for i in (0, 7, 99):
        idx = [codes[i, 0] & 15, codes[i, 0] >> 4]
        np.testing.assert_array_equal(dec[i], np.concatenate([cent[j, idx[j]] for j in range(2)]))
    # re-encoding the decoded rows gives the same codes
    np.testing.assert_array_equal(pq.encode(dec), codes)
    D, I = pq.search(codes, emb[:20], 5)
    assert D.shape == I.shape == (20, 5) and I.dtype == np.int64
    # ADC distances: squared L2 from the query to the decoded database row
    ref = ((emb[:20, None, :] - dec[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(D, np.take_along_axis(ref, I, 1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(D[:, 0], ref.min(1), rtol=1e-4, atol=1e-5)
    assert (np.diff(D, axis=1) >= 0).all()
    # past the database: -1 and +inf
    D, I = pq.search(codes[:3], emb[0], 5)
    assert list(I[3:]) == [-1, -1] and np.isinf(D[3:]).all() and sorted(I[:3]) == [0, 1, 2]


def test_two_threads_encode_one_model(model):
    X = np.random.default_rng(3).normal(size=(20000, WIDTH)).astype(np.float32)
    ref = model.encode(X)
    out = [None, None]

    def work(i):
        for _ in range(3):
            out[i] = model.encode(X)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for o in out:
        np.testing.assert_array_equal(o, ref)
    # loaded with CDLL, not PyDLL: ctypes releases the GIL during each call
    assert not model._L._func_flags_ & ctypes._FUNCFLAG_PYTHONAPI


def test_pickle_reopens(model, data):
    import pickle
    X = data[1][:4]
    with pickle.loads(pickle.dumps(model)) as again:
        assert again.path == model.path and again._h != model._h
        np.testing.assert_array_equal(again.encode(X), model.encode(X))


def test_close(model_path, data):
    m = dml.Model(model_path)
    pq = m.pq
    m.close()
    m.close()
    with pytest.raises(dml.UsageError, match="closed"):
        m.encode(data[1][:1])
    with pytest.raises(dml.UsageError, match="closed"):
        pq.encode(np.zeros((1, 8), np.float32))
    assert "closed" in repr(m)


@pytest.fixture(scope="session")
def dual_path(workdir, model_path):
    return train(workdir, "dual", ["--set", "loss.type=mnr", "--set", "data.pairs=halves",
                                   "--set", "model.type=dual", "--set", "train.steps=4"])


def test_dual_encoder_equals_cli(dual_path, workdir):
    with dml.Model(dual_path) as m:
        assert m.dim_in == m.dim_in_b == WIDTH // 2
        X = np.random.default_rng(5).normal(size=(30, WIDTH // 2)).astype(np.float32)
        a, b = m.encode(X), m.encode_b(X)
        assert a.shape == b.shape == (30, m.dim_out)
        assert not np.array_equal(a, b)
        h5py = h5py_or_skip()
        src = os.path.join(workdir, "half.npy")
        np.save(src, X)
        for tower, emb in (("a", a), ("b", b)):
            out = os.path.join(workdir, "dual_%s.h5" % tower)
            run_dml("encode", dual_path, src, out, "--tower", tower)
            with h5py.File(out, "r") as f:
                np.testing.assert_array_equal(emb, f["X"][:])
