"""dml.train: training an encoder on numpy arrays (include/dml.h's dml_train), and
dml.evaluate: dml eval's metrics on arrays (dml_evaluate).

Arrays. Rows (X, X_b, X_val, ...) that are float32 and C-contiguous are handed to dml by
pointer, with no copy (dml itself copies them once only under data.normalize: standardize);
anything else is converted once with np.ascontiguousarray(X, dtype=np.float32). Labels are
converted once to int64 (dml copies them as int32). The arrays are read during the call only.

Stopping. Ctrl-C during dml.train (in the main thread) sets dml's stop flag: the run ends at the
next step boundary (its checkpoint written when out= is given) and KeyboardInterrupt is raised.
A callback returning True stops it the same way and raises dml.StoppedError (dml_train returns
no model for a stopped run); out= plus resume=True continues either.
"""
import ctypes
import json
import math
import os
import signal
import threading

import numpy as np

from . import _lib
from ._errors import StoppedError, UsageError, check, error_for
from .model import Model

_MSG = 2048
_c = ctypes


class _Data(_c.Structure):
    _fields_ = [("x", _c.c_void_p), ("n", _c.c_int64), ("d", _c.c_int),
                ("y", _c.c_void_p), ("x_b", _c.c_void_p), ("d_b", _c.c_int),
                ("x_val", _c.c_void_p), ("n_val", _c.c_int64), ("y_val", _c.c_void_p),
                ("x_val_b", _c.c_void_p),
                ("x_test", _c.c_void_p), ("n_test", _c.c_int64), ("y_test", _c.c_void_p),
                ("x_test_b", _c.c_void_p)]


class _Progress(_c.Structure):
    _fields_ = [("step", _c.c_long), ("total_steps", _c.c_long),
                ("loss", _c.c_float), ("lr", _c.c_float),
                ("n_metrics", _c.c_int),
                ("metric_names", _c.POINTER(_c.c_char_p)),
                ("metric_values", _c.POINTER(_c.c_double))]


_CALLBACK = _c.CFUNCTYPE(_c.c_int, _c.c_void_p, _c.POINTER(_Progress))


class _Options(_c.Structure):
    _fields_ = [("out_dir", _c.c_char_p), ("resume", _c.c_int),
                ("callback", _CALLBACK), ("callback_ctx", _c.c_void_p),
                ("stop", _c.POINTER(_c.c_int)), ("verbose", _c.c_int)]


def _rows(x, what, width=None):
    """x as float32 C-contiguous [n, d] (x itself when it already is one)."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise UsageError("%s must be 2-D [n, d]; got shape %s" % (what, np.shape(x)))
    if width is not None and a.shape[1] != width:
        raise UsageError("%s has %d columns; X has %d" % (what, a.shape[1], width))
    return a


def _labels(y, n, what):
    """y as int64 [n] (converted once unless it already is one)."""
    if y is None:
        return None
    a = np.asarray(y)
    if a.dtype.kind not in "iub":
        if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            pass  # whole numbers stored as floats
        else:
            raise UsageError("%s must be integer labels; got dtype %s" % (what, a.dtype))
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.ndim != 1 or a.shape[0] != n:
        raise UsageError("%s must be 1-D with %d labels (one a row); got shape %s"
                         % (what, n, np.shape(y)))
    return a


def _ptr(a):
    return None if a is None else a.ctypes.data


def _yaml_scalar(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return ".nan"
        if math.isinf(v):
            return ".inf" if v > 0 else "-.inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a YAML double-quoted scalar
    raise UsageError("config value %r: not a dict, list, string, number, bool or None" % (v,))


def _yaml_flow(v):
    if isinstance(v, dict):
        return "{" + ", ".join("%s: %s" % (_yaml_key(k), _yaml_flow(x)) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_flow(x) for x in v) + "]"
    return _yaml_scalar(v)


def _yaml_key(k):
    if not isinstance(k, str):
        raise UsageError("config key %r: keys are strings" % (k,))
    return k if k.replace("_", "").replace(".", "").isalnum() else json.dumps(k)


def to_yaml(config):
    """YAML text of a config dict (nested dicts, lists and scalars), one top-level key a line:
    nested dicts as blocks, lists in flow style ([256, 128])."""
    lines = []

    def emit(d, indent):
        for k, v in d.items():
            if isinstance(v, dict) and v:
                lines.append("%s%s:" % (" " * indent, _yaml_key(k)))
                emit(v, indent + 2)
            else:
                lines.append("%s%s: %s" % (" " * indent, _yaml_key(k), _yaml_flow(v)))

    if not isinstance(config, dict):
        raise UsageError("config must be a dict, YAML text or a .yaml path; got %s"
                         % type(config).__name__)
    emit(config, 0)
    return "\n".join(lines) + "\n"


def _config_text(config):
    """(YAML text, the name its messages should carry in place of "<config>")."""
    if config is None:
        return "", None
    if isinstance(config, dict):
        return to_yaml(config), None
    if isinstance(config, os.PathLike) or (
            isinstance(config, str) and "\n" not in config and ": " not in config and
            (config.endswith((".yaml", ".yml")) or os.path.isfile(config))):
        path = os.fspath(config)
        try:
            with open(path, encoding="utf-8") as f:
                return f.read(), path
        except OSError as e:
            raise UsageError("config %s: %s" % (path, e.strerror)) from None
    if isinstance(config, str):
        return config, None
    raise UsageError("config must be a dict, YAML text or a .yaml path; got %s"
                     % type(config).__name__)


def _override(key, value):
    if isinstance(value, str):
        return "%s=%s" % (key, value)
    return "%s=%s" % (key, _yaml_flow(value))


def _sets(set_, overrides):
    out = []
    for s in set_ or ():
        if not isinstance(s, str) or "=" not in s:
            raise UsageError("set: each override is a 'key.path=value' string; got %r" % (s,))
        out.append(s)
    for k, v in overrides.items():
        out.append(_override(k.replace("__", "."), v))
    return out


class _Bar:
    """The progress display: a tqdm bar when tqdm is importable, else nothing (dml prints its
    own lines)."""

    def __init__(self):
        import tqdm
        self._tqdm = tqdm.tqdm
        self.bar = None
        self.last = {}  # the last validation's map_at_r, shown until the next one

    def update(self, step, total, loss, lr, metrics):
        if self.bar is None:
            self.bar = self._tqdm(total=total, unit="step", desc="dml train")
        self.bar.n = step
        if "map_at_r" in metrics:
            self.last = {"map_at_r": "%.4f" % metrics["map_at_r"]}
        post = {"loss": "%.4g" % loss}
        post.update(self.last)
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def train(config=None, X=None, y=None, *, X_b=None, X_val=None, y_val=None, X_val_b=None,
          X_test=None, y_test=None, X_test_b=None, out=None, resume=False, callback=None,
          progress=True, set=None, **overrides):
    """Trains an encoder and returns it as a dml.Model.

    config: a dict (emitted as YAML), YAML text, or a path (os.PathLike, or a one-line
    string without ": " naming a file or ending in .yaml/.yml; its path then
    names the errors: "demo.yaml:3:9: train.epochs: ..."), or None for every default; the keys
    of docs/config.md. set: ["key.path=value", ...] overrides as dml train --set takes them, and
    keyword overrides likewise (train__epochs=3 or **{"train.epochs": 3}), applied after set.
    X [n, d] rows (None: the config's data.train is read), y [n] labels (None: unlabelled);
    X_b a second view of each row (data.pairs: file, model.type: dual); X_val/y_val/X_val_b
    validation rows in place of data.val_fraction's share; X_test/y_test/X_test_b rows for the
    final metrics. out: a run folder (checkpoint.h5, metrics.jsonl, report.html, model.h5 as
    dml train writes them), None to write nothing; resume: continue out's checkpoint.
    callback(step, total, loss, lr, metrics): called after every step (metrics {}) and after
    every validation (metrics {"map_at_r": ..., ...}); returning True stops the run.
    progress: a tqdm bar when tqdm is installed, else dml's progress lines on stderr; False
    for quiet.

    Raises the dml.Error subclass of dml_train's status with dml's message: ConfigError,
    DataError, UsageError, DivergedError, InputOutputError, NoMemoryError; KeyboardInterrupt on
    Ctrl-C and dml.StoppedError when the callback stopped the run (a checkpoint written in out
    when given); an exception the callback raised stops the run and is re-raised."""
    L = _lib.load()
    text, config_name = _config_text(config)
    sets = _sets(set, overrides)

    keep = []  # every array and buffer whose address dml receives, alive for the call
    data = _Data()
    if X is not None:
        Xa = _rows(X, "X")
        n, d = Xa.shape
        data.x, data.n, data.d = _ptr(Xa), n, d
        ya = _labels(y, n, "y")
        data.y = _ptr(ya)
        keep += [Xa, ya]
        if X_b is not None:
            Xb = _rows(X_b, "X_b")
            if Xb.shape[0] != n:
                raise UsageError("X_b has %d rows; X has %d" % (Xb.shape[0], n))
            data.x_b, data.d_b = _ptr(Xb), Xb.shape[1]
            keep.append(Xb)
        d_b = data.d_b or None
        for part, Xp, yp, Xpb in (("val", X_val, y_val, X_val_b),
                                  ("test", X_test, y_test, X_test_b)):
            if Xp is None:
                if yp is not None or Xpb is not None:
                    raise UsageError("y_%s and X_%s_b need X_%s" % (part, part, part))
                continue
            Xs = _rows(Xp, "X_" + part, d)
            ys = _labels(yp, Xs.shape[0], "y_" + part)
            setattr(data, "x_" + part, _ptr(Xs))
            setattr(data, "n_" + part, Xs.shape[0])
            setattr(data, "y_" + part, _ptr(ys))
            keep += [Xs, ys]
            if Xpb is not None:
                Xsb = _rows(Xpb, "X_%s_b" % part, d_b)
                setattr(data, "x_%s_b" % part, _ptr(Xsb))
                keep.append(Xsb)
    elif any(a is not None for a in (y, X_b, X_val, y_val, X_val_b, X_test, y_test, X_test_b)):
        raise UsageError("arrays other than X need X (without X, the config's files are read)")

    bar = None
    if progress:
        try:
            bar = _Bar()
        except ImportError:
            bar = None
    stop = _c.c_int(0)
    state = {"error": None, "signal": False, "step": 0, "by_callback": False}

    def on_progress(_ctx, p):
        try:
            p = p.contents
            metrics = {}
            for i in range(p.n_metrics):
                metrics[p.metric_names[i].decode()] = p.metric_values[i]
            state["step"] = p.step
            if bar is not None:
                bar.update(p.step, p.total_steps, p.loss, p.lr, metrics)
            if callback is not None and callback(p.step, p.total_steps, p.loss, p.lr, metrics):
                state["by_callback"] = True
                return 1
            return 0
        except BaseException as e:  # stop the run; re-raised once dml_train returns
            state["error"] = e
            return 1

    c_callback = _CALLBACK(on_progress)
    opts = _Options()
    opts.out_dir = os.fsencode(os.fspath(out)) if out is not None else None
    opts.resume = 1 if resume else 0
    opts.callback = c_callback
    opts.stop = _c.pointer(stop)
    opts.verbose = 1 if (progress and bar is None) else 0

    c_sets = (_c.c_char_p * max(len(sets), 1))(*[s.encode() for s in sets])
    handle = _c.c_void_p()
    msg = _c.create_string_buffer(_MSG)

    def on_sigint(_signum, _frame):
        state["signal"] = True
        stop.value = 1

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_sigint) if main else None
    try:
        st = L.dml_train(text.encode("utf-8"), c_sets, len(sets),
                         _c.byref(data) if X is not None else None, _c.byref(opts),
                         _c.byref(handle), msg, _MSG)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        if bar is not None:
            bar.close()
    del keep, c_callback  # alive until here
    if st == 0 and state["signal"]:  # Ctrl-C after the last step: still an interrupt
        L.dml_model_free(handle)
        raise KeyboardInterrupt("dml.train: interrupted after its last step%s" % (
            " (%s written)" % os.path.join(os.fspath(out), "model.h5") if out else ""))
    if st == 0:
        path = None
        if out is not None and os.path.exists(os.path.join(os.fspath(out), "model.h5")):
            path = os.path.join(os.fspath(out), "model.h5")
        return Model._from_handle(handle.value, path)
    if state["error"] is not None:
        raise state["error"]
    message = msg.value.decode("utf-8", "replace")
    if config_name is not None:
        message = message.replace("<config>", config_name)
    if st == 8:  # DML_ERR_INTERRUPTED
        where = " (checkpoint in %s; resume=True continues)" % os.fspath(out) if out else ""
        if state["signal"]:
            raise KeyboardInterrupt("dml.train stopped at step %d%s" % (state["step"], where))
        if state["by_callback"]:
            e = StoppedError("dml.train: the callback stopped the run at step %d%s"
                             % (state["step"], where))
            e.status, e.status_name = 8, "DML_ERR_INTERRUPTED"
            raise e
    raise error_for(st, message, "dml_train")


def evaluate(model, X, y=None, *, X_b=None, db=None, y_db=None, truth=None, pq=False,
             metrics=None):
    """dml eval's metrics for model over rows X [n, dim_in] as a dict name -> float, through the
    code dml eval runs. Without db every query searches the other queries (label metrics need
    y); with db [n_db, dim_in] it searches the database (y_db its labels). A dual encoder's
    queries are paired with X_b [n, dim_in_b] (or X holds both halves): recall_at_k, mrr_at_10.
    truth [n, k]: each query's true nearest database rows, nearest first (nn_recall_at_k).
    pq=True: every retrieval metric again on the model's PQ codes (pq_ names). metrics: a list
    (or comma-separated string) of metric names, as dml eval --metrics; None: the defaults.
    Rows that no label metric can score (no query shares a label; every reference has one
    label) raise DataError, as dml eval refuses them. Equal to dml eval --json's values."""
    L = _lib.load()
    h = model._handle()
    dual = model.dim_in_b > 0
    width = model.dim_in + (model.dim_in_b if dual and X_b is None else 0)
    Xa = _rows(X, "X", width)
    n = Xa.shape[0]
    ya = _labels(y, n, "y")
    Xb = _rows(X_b, "X_b", model.dim_in_b) if X_b is not None else None
    if Xb is not None and Xb.shape[0] != n:
        raise UsageError("X_b must have the %d rows of X; got %d" % (n, Xb.shape[0]))
    Da = yd = ta = None
    n_db = 0
    if db is not None:
        Da = _rows(db, "db", model.dim_in)
        n_db = Da.shape[0]
        yd = _labels(y_db, n_db, "y_db")
    elif y_db is not None:
        raise UsageError("y_db needs db")
    tk = 0
    if truth is not None:
        if db is None:
            raise UsageError("truth needs db (the rows it numbers)")
        ta = np.ascontiguousarray(truth, dtype=np.int64)
        if ta.ndim != 2 or ta.shape[0] != n:
            raise UsageError("truth must be [n, k] with n = %d; got shape %s"
                             % (n, np.shape(truth)))
        tk = ta.shape[1]
    if metrics is not None and not isinstance(metrics, str):
        metrics = ",".join(metrics)
    data = _lib.EvalData(_ptr(Xa), n, width, _ptr(ya), _ptr(Xb),
                         model.dim_in_b if Xb is not None else 0, _ptr(Da), n_db, _ptr(yd),
                         _ptr(ta), tk)
    mt = _c.c_void_p()
    msg = _c.create_string_buffer(_MSG)
    st = L.dml_evaluate(h, _c.byref(data), 1 if pq else 0,
                        metrics.encode() if metrics is not None else None, _c.byref(mt), msg,
                        _MSG)
    check(st, "dml_evaluate: %d queries, %d database rows" % (n, n_db),
          msg.value.decode("utf-8", "replace"))
    try:
        return {L.dml_metrics_name(mt, i).decode(): L.dml_metrics_value(mt, i)
                for i in range(L.dml_metrics_count(mt))}
    finally:
        L.dml_metrics_free(mt)
