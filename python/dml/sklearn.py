"""dml.sklearn.DMLEncoder: a scikit-learn transformer that trains a dml encoder in fit and
embeds rows in transform (needs python3-sklearn).

    from sklearn.pipeline import make_pipeline
    from sklearn.neighbors import KNeighborsClassifier
    from dml.sklearn import DMLEncoder

    clf = make_pipeline(DMLEncoder(dim=32, hidden=(64,), epochs=20, random_state=0),
                        KNeighborsClassifier())
    clf.fit(X_train, y_train).score(X_test, y_test)
"""
import numbers

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .train import train

# estimator parameter -> config key; None leaves the key to `config` (or dml's default)
_KEYS = {"dim": "model.dim", "hidden": "model.hidden", "activation": "model.activation",
         "output": "model.output", "loss": "loss.type", "margin": "loss.margin",
         "miner": "loss.miner", "distance": "loss.distance", "lr": "train.lr",
         "epochs": "train.epochs", "steps": "train.steps", "batch_size": "train.batch_size",
         "optimizer": "train.optimizer", "normalize": "data.normalize",
         "val_fraction": "data.val_fraction", "threads": "train.threads"}


class DMLEncoder(TransformerMixin, BaseEstimator):
    """Trains a dml encoder (dml.train) on X, y in fit; transform(X) is its embeddings
    float32 [n, dim].

    Parameters (None: the value of `config`, else dml's default of docs/config.md, shown):
    dim (128), hidden (512, 256), activation ("relu"), output ("l2"), loss ("triplet"),
    margin (0.2), miner ("all"), distance ("euclidean") (margin and miner are the triplet loss's,
    distance triplet's and contrastive's: another loss given one raises ConfigError), lr
    (1e-3), epochs (10), steps (0: use
    epochs), batch_size (256, or fitted to fewer rows), optimizer ("adam"), threads (0: one
    per core); normalize: "standardize" here (per-feature mean and std of the training rows;
    dml's default "unit" divides by 255, for pixels); val_fraction: 0 here (every row
    trains; 0.1 holds rows out for validation and early stopping); random_state: the seed
    (an int, a RandomState drawing one, or None for dml's fixed default 42: fits are
    deterministic either way); config: a base config (dict, YAML text or .yaml path) under
    these parameters.

    Labels y: any values (mapped to 0..k-1 in sorted order). When they cannot train a metric
    loss (y None, one class, or no class with two rows: dml refuses such a loss) the encoder is
    an autoencoder trained on reconstruction instead (fit_mode_ says which). Fewer than two
    rows raise ValueError.

    Fitted attributes: model_ (dml.Model), n_features_in_, classes_ (None without labels),
    fit_mode_ ("metric" or "reconstruction").
    """

    def __init__(self, dim=None, hidden=None, activation=None, output=None, loss=None,
                 margin=None, miner=None, distance=None, lr=None, epochs=None, steps=None,
                 batch_size=None, optimizer=None, normalize="standardize", val_fraction=0.0,
                 threads=None, random_state=None, config=None):
        self.dim = dim
        self.hidden = hidden
        self.activation = activation
        self.output = output
        self.loss = loss
        self.margin = margin
        self.miner = miner
        self.distance = distance
        self.lr = lr
        self.epochs = epochs
        self.steps = steps
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.normalize = normalize
        self.val_fraction = val_fraction
        self.threads = threads
        self.random_state = random_state
        self.config = config

    def _overrides(self):
        out = {}
        for p, key in _KEYS.items():
            v = getattr(self, p)
            if v is None:
                continue
            if p == "hidden":
                v = [int(w) for w in v]
            out[key] = v
        rs = self.random_state
        if rs is not None:
            if isinstance(rs, numbers.Integral):
                out["seed"] = int(rs)
            elif isinstance(rs, np.random.RandomState):
                out["seed"] = int(rs.randint(0, 2 ** 31 - 1))
            else:
                raise ValueError("random_state must be an int, a RandomState or None; got %r"
                                 % (rs,))
        return out

    def fit(self, X, y=None):
        """Validates X (finite numbers, 2-D) and y, trains, and returns self."""
        if y is None:
            X = self._validate_data(X, dtype=np.float32, order="C", reset=True)
        else:
            X, y = self._validate_data(X, y, dtype=np.float32, order="C", reset=True,
                                       y_numeric=False, multi_output=False)
        if X.shape[0] < 2:
            raise ValueError("DMLEncoder needs at least 2 samples to learn from; got 1 sample "
                             "(n_samples = 1)")
        overrides = self._overrides()
        labels = None
        self.classes_ = None
        if y is not None:
            self.classes_, labels = np.unique(y, return_inverse=True)
            labels = labels.astype(np.int64)
            counts = np.bincount(labels)
        mode = "metric"
        if labels is None or len(counts) < 2 or counts.max() < 2:
            # nothing a label loss can learn from: reconstruct the rows instead
            mode, labels = "reconstruction", None
            overrides["model.type"] = "autoencoder"
            overrides["loss.type"] = "reconstruction"
            for key in ("loss.margin", "loss.miner", "loss.distance"):
                overrides.pop(key, None)  # the metric loss's parameters: reconstruction has none
            overrides.setdefault("data.unlabelled", True)
        self.model_ = train(self.config, X, labels, progress=False, **overrides)
        self.fit_mode_ = mode
        return self

    def transform(self, X):
        """The embeddings float32 [n, dim] of rows X [n, n_features_in_]."""
        check_is_fitted(self, "model_")
        X = self._validate_data(X, dtype=np.float32, order="C", reset=False)
        return self.model_.encode(X)

    def _more_tags(self):
        return {"preserves_dtype": [np.float32], "requires_y": False}
