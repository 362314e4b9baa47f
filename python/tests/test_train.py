"""dml.train, Model.save and dml.evaluate against the dml CLI on the conftest blobs."""
import importlib.util
import json
import os
import pickle
import signal
import threading

import numpy as np
import pytest

import dml
from conftest import ROOT, TRAIN_ARGS, ROWS, blobs, run_dml

SETS = [a for a in TRAIN_ARGS if a != "--set"]
SMALL = {"model": {"hidden": [32], "dim": 8}, "sampler": {"m": 8}, "pq": {"m": 2, "k": 16},
         "train": {"batch_size": 32, "threads": 1, "epochs": 2, "eval_every": "never"},
         "data": {"test": ""}}


@pytest.fixture(scope="module")
def Xy():
    return blobs(ROWS, 1)


def test_same_model_as_cli(Xy, workdir, model_path, data):
    """dml.train on the arrays of the .npy file dml train read, with the same config and
    --set overrides, gives the same model: equal embeddings and codes, and evaluate equals
    dml eval --json."""
    X, y = Xy
    np.testing.assert_array_equal(X, data[1])
    m = dml.train(os.path.join(ROOT, "configs/demo.yaml"), X, y, X_test=X, y_test=y,
                  set=SETS, progress=False)
    with dml.Model(model_path) as ref:
        np.testing.assert_array_equal(m.encode(X), ref.encode(X))
        np.testing.assert_array_equal(m.pq.centroids, ref.pq.centroids)
        assert m.metric == ref.metric
    saved = os.path.join(workdir, "saved.h5")
    m.save(saved)
    with dml.Model(saved) as back:
        np.testing.assert_array_equal(back.encode(X), m.encode(X))
    h5py = pytest.importorskip("h5py")
    with h5py.File(model_path, "r") as a, h5py.File(saved, "r") as b:
        names = []
        a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert names
        for n in names:  # every tensor, bit for bit
            np.testing.assert_array_equal(a[n][()], b[n][()], err_msg=n)
    got = dml.evaluate(m, X, y, pq=True)
    r = run_dml("eval", model_path, "--data", data[0], "--pq", "--json")
    want = json.loads(r.stdout)
    want = want.get("metrics", want)
    common = [k for k in got if k in want]
    assert "map_at_r" in common and "pq_map_at_r" in common, (got, want)
    for k in common:
        assert float("%.8g" % got[k]) == want[k], k  # dml eval --json prints %.8g


def test_evaluate_database_equals_cli(Xy, workdir, model_path, data):
    X, y = Xy
    Q, yq = blobs(60, 5)
    qpath = os.path.join(workdir, "queries.npy")
    np.save(qpath, Q)
    np.save(os.path.join(workdir, "queries.labels.npy"), yq)
    with dml.Model(model_path) as m:
        got = dml.evaluate(m, Q, yq, db=X, y_db=y)
    want = json.loads(run_dml("eval", model_path, "--data", qpath, "--db", data[0],
                              "--json").stdout)
    want = want.get("metrics", want)
    assert "map_all" in got and "knn_accuracy" in got
    for k in got:
        assert float("%.8g" % got[k]) == want[k], k


def test_evaluate_metrics_and_refusals(Xy, workdir, model_path, data):
    """metrics picks the metrics as dml eval --metrics does; rows no label metric can score are
    refused as dml eval refuses them."""
    X, y = Xy
    with dml.Model(model_path) as m:
        got = dml.evaluate(m, X, y, metrics=["map_at_r", "knn_accuracy"])
        assert set(got) >= {"map_at_r", "knn_accuracy"} and "precision_at_1" not in got, got
        assert got == dml.evaluate(m, X, y, metrics="map_at_r,knn_accuracy")
        want = json.loads(run_dml("eval", model_path, "--data", data[0], "--metrics",
                                  "map_at_r,knn_accuracy", "--json").stdout)
        want = want.get("metrics", want)
        for k in ("map_at_r", "knn_accuracy"):
            assert float("%.8g" % got[k]) == want[k], k
        with pytest.raises(dml.DataError, match="same label"):
            dml.evaluate(m, X, np.zeros(len(X), dtype=np.int64))
        with pytest.raises(dml.DataError, match="shares its label"):
            dml.evaluate(m, X, np.arange(len(X)))


def test_no_copy(Xy, monkeypatch):
    """dml_train receives the caller's float32 C-contiguous rows by pointer; float64 is
    converted once (another pointer) to the same model."""
    from dml import _lib
    L = _lib.load()
    real = L.dml_train
    seen = []

    def spy(cfg, sets, n, data, opts, out, msg, ln):
        import ctypes
        from dml.train import _Data
        d = ctypes.cast(data, ctypes.POINTER(_Data)).contents
        seen.append(d.x)
        return real(cfg, sets, n, data, opts, out, msg, ln)

    monkeypatch.setattr(L, "dml_train", spy)
    X, y = Xy
    a = dml.train(SMALL, X, y, progress=False)
    assert seen[-1] == X.ctypes.data
    X64 = X.astype(np.float64)
    b = dml.train(SMALL, X64, y, progress=False)
    assert seen[-1] != X64.ctypes.data
    np.testing.assert_array_equal(a.encode(X), b.encode(X))


def test_callback_sees_every_step(Xy):
    X, y = Xy
    steps, metrics = [], []

    def cb(step, total, loss, lr, m):
        (metrics if m else steps).append((step, total))
        assert np.isfinite(loss) and lr == pytest.approx(1e-3)

    dml.train(SMALL, X, y, callback=cb, progress=False)
    total = steps[0][1]
    assert [s for s, _ in steps] == list(range(1, total + 1))
    assert metrics and metrics[-1][0] == total


def test_callback_stops_and_raises(Xy, tmp_path):
    X, y = Xy
    with pytest.raises(dml.StoppedError, match="step 3"):
        dml.train(SMALL, X, y, callback=lambda s, *a: s == 3, progress=False,
                  out=str(tmp_path / "run"))
    assert os.path.exists(tmp_path / "run" / "checkpoint.h5")

    class Boom(Exception):
        pass

    def bad(step, *a):
        raise Boom(step)

    with pytest.raises(Boom):
        dml.train(SMALL, X, y, callback=bad, progress=False)


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(),
                    reason="SIGINT handling needs the main thread")
def test_ctrl_c_stops_with_checkpoint_and_resumes(Xy, tmp_path):
    """SIGINT from a timer thread during a long run: KeyboardInterrupt, the checkpoint
    written at that step, resume=True goes on from it; the previous handler is restored."""
    X, y = Xy
    out = str(tmp_path / "run")
    started = threading.Event()
    steps = []

    def cb(step, *a):
        steps.append(step)
        if step == 5:
            started.set()

    def kill():
        started.wait(60)
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=kill)
    t.start()
    with pytest.raises(KeyboardInterrupt, match="resume=True"):
        dml.train(SMALL, X, y, out=out, callback=cb, progress=False,
                  **{"train.steps": 1000000})
    t.join()
    assert signal.getsignal(signal.SIGINT) is before
    stopped = steps[-1]
    assert 5 <= stopped < 1000000
    assert os.path.exists(os.path.join(out, "checkpoint.h5"))
    more = []
    m = dml.train(SMALL, X, y, out=out, resume=True, progress=False,
                  callback=lambda s, t, *a: more.append((s, t)), **{"train.steps": stopped + 10})
    assert more[0][0] == stopped + 1 and more[-1][0] == stopped + 10
    assert m.path == os.path.join(out, "model.h5")


def test_errors(Xy, tmp_path):
    X, y = Xy
    with pytest.raises(dml.ConfigError, match=r"^<config>:3:1: YAML syntax error"):
        dml.train("model:\n  dim: [1\n", X, y, progress=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: many\n")
    with pytest.raises(dml.ConfigError, match=r"^%s:2:\d+: train.epochs" % str(bad)) as e:
        dml.train(str(bad), X, y, progress=False)
    assert e.value.status_name == "DML_ERR_CONFIG"
    with pytest.raises(dml.DataError, match="label 2000000"):
        dml.train(SMALL, X, y + 2000000, progress=False)
    with pytest.raises(dml.UsageError, match="2-D"):
        dml.train(SMALL, X[0], y, progress=False)
    with pytest.raises(dml.UsageError, match="labels"):
        dml.train(SMALL, X, y[:-1], progress=False)
    with pytest.raises(dml.ConfigError, match="val_fraction"):
        dml.train(SMALL, X, y, X_val=X[:40], y_val=y[:40], progress=False,
                  **{"data.val_fraction": 0.2})
    m = dml.train(SMALL, X, y, progress=False)
    with pytest.raises(dml.DataError):
        dml.evaluate(m, X, y - 5)
    with pytest.raises(dml.UsageError, match="resume needs a run folder"):
        dml.train(SMALL, X, y, resume=True, progress=False)
    with pytest.raises(dml.InputOutputError, match="/dev/null/run"):
        dml.train(SMALL, X, y, out="/dev/null/run", progress=False)
    with pytest.raises(dml.InputOutputError, match=str(tmp_path / "no" / "m.h5")):
        m.save(tmp_path / "no" / "m.h5")
    with pytest.raises(dml.DivergedError, match="diverged .*no run folder, so no checkpoint"):
        dml.train(SMALL, X * 1e18, y, progress=False, data__normalize="none", train__lr=1e30,
                  train__optimizer="sgd")
    with pytest.raises(dml.DataError):  # a neighbour id past the database
        dml.evaluate(m, X[:10], db=X[:50], truth=np.full((10, 3), 50))


def test_dict_config_equals_yaml_text_and_file(Xy, tmp_path):
    from dml.train import to_yaml
    X, y = Xy
    a = dml.train(SMALL, X, y, progress=False)
    text = to_yaml(SMALL)
    assert "hidden: [32]" in text and 'eval_every: "never"' in text
    b = dml.train(text, X, y, progress=False)
    conf = tmp_path / "small.conf"
    conf.write_text(text)
    for cfg in (conf, str(conf)):
        np.testing.assert_array_equal(a.encode(X), dml.train(cfg, X, y, progress=False).encode(X))
    c = dml.train({"data": {"test": ""}}, X, y, progress=False,
                  set=["model.hidden=[32]", "model.dim=8", "pq.m=2", "pq.k=16"],
                  sampler__m=8, train__batch_size=32, train__threads=1, train__epochs=2,
                  train__eval_every="never")
    for m in (b, c):
        np.testing.assert_array_equal(a.encode(X), m.encode(X))


def test_trained_model_pickles(Xy):
    X, y = Xy
    m = dml.train(SMALL, X, y, progress=False)
    assert m.path is None
    back = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(back.encode(X), m.encode(X))
    assert back.path is None


def test_faiss_round_trip(Xy):
    pytest.importorskip("faiss")
    X, y = Xy
    m = dml.train(SMALL, X, y, progress=False)
    index = m.to_faiss(X)
    D, I = index.search(m.encode(X[:20]), 5)
    codes = m.pq.encode(m.encode(X))
    D2, I2 = m.pq.search(codes, m.encode(X[:20]), 5)
    np.testing.assert_allclose(D, D2, rtol=1e-5, atol=1e-6)
    assert (y[I[:, 0]] == y[:20]).mean() > 0.9


def test_progress_tqdm_bar_or_dml_lines(Xy, capfd, monkeypatch):
    """progress=True: a tqdm bar when tqdm imports, else dml's own lines; both on stderr.
    progress=False: nothing."""
    X, y = Xy
    dml.train(SMALL, X, y, progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    if importlib.util.find_spec("tqdm"):
        dml.train(SMALL, X, y)
        out, err = capfd.readouterr()
        assert "dml train" in err and "22/22" in err and "step 1/22" not in err
    import builtins
    real = builtins.__import__

    def no_tqdm(name, *a, **k):
        if name == "tqdm":
            raise ImportError("no tqdm")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    dml.train(SMALL, X, y)
    out, err = capfd.readouterr()
    assert "step 1/22" in err and "step 22/22" in err and out == ""


def test_train_in_another_thread_leaves_signals_alone(Xy):
    X, y = Xy
    before = signal.getsignal(signal.SIGINT)
    got = []
    t = threading.Thread(target=lambda: got.append(dml.train(SMALL, X, y, progress=False)))
    t.start()
    t.join()
    assert signal.getsignal(signal.SIGINT) is before
    ref = dml.train(SMALL, X, y, progress=False)
    np.testing.assert_array_equal(got[0].encode(X), ref.encode(X))


def test_ctrl_c_at_the_last_step_still_interrupts(Xy):
    """A SIGINT that arrives as the run ends raises KeyboardInterrupt, never lost."""
    X, y = Xy

    def cb(step, total, *a):
        if step == total:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt, match="dml.train"):
        dml.train(SMALL, X, y, callback=cb, progress=False)


def test_files_from_the_config(Xy, workdir, model_path, data):
    """X None: dml_train reads the config's data.train and data.test, as dml train does."""
    m = dml.train(os.path.join(ROOT, "configs/demo.yaml"), progress=False,
                  set=SETS + ["data.train=" + data[0], "data.test=" + data[0]])
    with dml.Model(model_path) as ref:
        np.testing.assert_array_equal(m.encode(data[1]), ref.encode(data[1]))
    with pytest.raises(dml.UsageError, match="need X"):
        dml.train(SMALL, y=Xy[1], progress=False)


def test_labels_a_loss_cannot_learn_from(Xy):
    X, y = Xy
    with pytest.raises(dml.DataError, match="cannot learn from these rows.*one class"):
        dml.train(SMALL, X, np.zeros(len(y), np.int64), progress=False)
