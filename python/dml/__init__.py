"""dml: deep metric learning (a C11 core, libdml.so) from Python.

    import dml
    with dml.Model("runs/demo/model.h5") as model:
        emb = model.encode(X)                   # float32 [n, dim_out]
        codes = model.pq.encode(emb)            # uint8 [n, code_size], FAISS IndexPQ packing
        D, I = model.pq.search(codes, emb[:5], k=10)

    model = dml.train({"model": {"hidden": [64], "dim": 16}, "train": {"epochs": 5}}, X, y)
    metrics = dml.evaluate(model, X_test, y_test)   # {"map_at_r": ..., ...}
    model.save("model.h5")

Errors are dml.Error subclasses carrying dml's message (docs/python.md). dml.sklearn has a
scikit-learn transformer (DMLEncoder).
"""
from ._errors import (ConfigError, DataError, DivergedError, Error, InputOutputError,
                      InternalError, NoMemoryError, StoppedError, UsageError)
from ._lib import load as _load
from .model import PQ, Model
from .train import evaluate, train

__version__ = "0.1.0"

_load()  # fail at import, naming where libdml.so was looked for

__all__ = ["Model", "PQ", "Error", "UsageError", "ConfigError", "DataError", "InputOutputError",
           "NoMemoryError", "DivergedError", "InternalError", "StoppedError", "lib_path",
           "train", "evaluate"]


def lib_path():
    """The path of the libdml.so this process loaded."""
    return _load()._dml_path
