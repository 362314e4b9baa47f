"""dml.sklearn.DMLEncoder: scikit-learn's own estimator checks, a pipeline with a k-NN
classifier, determinism, pickling and the refusals."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="python3-sklearn is not installed")
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from dml.sklearn import DMLEncoder  # noqa: E402

SMALL = dict(dim=8, hidden=(16,), epochs=2, threads=1, random_state=0)


def hard_blobs(n, seed, classes=5, width=20):
    """Classes apart in 3 of 20 dimensions, the rest loud noise: raw k-NN does poorly."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = np.random.default_rng(11).normal(0, 2.0, (classes, 3))
    X = rng.normal(0, 3.0, (n, width))
    X[:, :3] = centers[y] + rng.normal(0, 0.7, (n, 3))
    return X, y


def test_check_estimator():
    check_estimator(DMLEncoder(**SMALL))  # raises on the first failing check


def test_pipeline_beats_chance_and_raw_knn():
    X, y = hard_blobs(600, 1)
    Xt, yt = hard_blobs(300, 2)
    clf = make_pipeline(DMLEncoder(dim=8, hidden=(32,), epochs=30, threads=1,
                                   random_state=0), KNeighborsClassifier())
    acc = clf.fit(X, y).score(Xt, yt)
    raw = KNeighborsClassifier().fit(X, y).score(Xt, yt)
    assert acc > 0.6 and acc > raw + 0.1, (acc, raw)  # chance is 0.2
    assert clf[0].fit_mode_ == "metric"


def test_deterministic_and_pickles():
    X, y = hard_blobs(100, 3)
    a = DMLEncoder(**SMALL).fit(X, y)
    b = DMLEncoder(**SMALL).fit(X, y)
    np.testing.assert_array_equal(a.transform(X), b.transform(X))
    c = DMLEncoder(**dict(SMALL, random_state=1)).fit(X, y)
    assert not np.array_equal(a.transform(X), c.transform(X))
    r1 = DMLEncoder(**dict(SMALL, random_state=np.random.RandomState(5))).fit(X, y)
    r2 = DMLEncoder(**dict(SMALL, random_state=np.random.RandomState(5))).fit(X, y)
    np.testing.assert_array_equal(r1.transform(X), r2.transform(X))
    with pytest.raises(ValueError, match="random_state"):
        DMLEncoder(**dict(SMALL, random_state="zero")).fit(X, y)
    back = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(back.transform(X), a.transform(X))
    assert a.transform(X).dtype == np.float32 and a.transform(X).shape == (100, 8)


def test_config_base_and_parameters():
    X, y = hard_blobs(100, 3)
    e = DMLEncoder(config={"model": {"dim": 4, "hidden": [8]}}, epochs=1, threads=1).fit(X, y)
    assert e.transform(X).shape == (100, 4)
    e = DMLEncoder(config="model:\n  dim: 4\n", dim=6, hidden=(8,), epochs=1,
                   threads=1).fit(X, y)
    assert e.transform(X).shape == (100, 6)  # parameters override the config


def test_refusals_and_fallback():
    X, y = hard_blobs(40, 4)
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        DMLEncoder(**SMALL).fit(bad, y)
    with pytest.raises(ValueError, match="1 sample"):
        DMLEncoder(**SMALL).fit(X[:1], y[:1])
    e = DMLEncoder(**SMALL).fit(X, np.zeros(40, int))  # one class: nothing for a label loss
    assert e.fit_mode_ == "reconstruction"
    assert e.model_.dim_out == 8
    e = DMLEncoder(**SMALL).fit(X)  # unlabelled
    assert e.fit_mode_ == "reconstruction" and e.classes_ is None
    with pytest.raises(ValueError, match="features"):
        e.transform(X[:, :5])
    e = DMLEncoder(**dict(SMALL, loss="nonsense"))
    import dml
    with pytest.raises(dml.ConfigError, match="loss.type"):
        e.fit(X, y)
