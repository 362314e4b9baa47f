"""Finding and loading libdml.so, and the C signatures of include/dml.h.

Where libdml.so is looked for, in order (the first that exists is loaded):
  1. the path in the environment variable DML_LIB (when set, nothing else is tried);
  2. libdml.so inside the installed package (pip install copies build/libdml.so there);
  3. the source tree's build/libdml.so (python/dml/ -> ../../build/libdml.so), for PYTHONPATH=python;
  4. the system's, by ctypes.util.find_library("dml") (make install puts it in PREFIX/lib).
ctypes.CDLL (not PyDLL) releases the GIL for every call, so encoding runs beside other threads.
"""
import ctypes
import ctypes.util
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_lib = None


def candidates():
    """The (description, path) pairs tried, in order."""
    env = os.environ.get("DML_LIB")
    if env:
        return [("DML_LIB", env)]
    out = [("the package", os.path.join(_HERE, "libdml.so")),
           ("the build tree", os.path.normpath(os.path.join(_HERE, "..", "..", "build", "libdml.so")))]
    out.append(("the system (ctypes.util.find_library)", ctypes.util.find_library("dml")))
    return out


class EvalData(ctypes.Structure):
    """include/dml.h's dml_eval_data, field for field."""
    _fields_ = [("x", ctypes.c_void_p), ("n", ctypes.c_int64), ("d", ctypes.c_int),
                ("y", ctypes.c_void_p), ("x_b", ctypes.c_void_p), ("d_b", ctypes.c_int),
                ("x_db", ctypes.c_void_p), ("n_db", ctypes.c_int64), ("y_db", ctypes.c_void_p),
                ("truth", ctypes.c_void_p), ("truth_k", ctypes.c_int)]


def _declare(lib):
    c = ctypes
    vp, sz, i, st = c.c_void_p, c.c_size_t, c.c_int, c.c_int
    sigs = {
        "dml_status_name": (c.c_char_p, [i]),
        "dml_model_open": (st, [c.c_char_p, c.POINTER(vp), c.c_char_p, sz]),
        "dml_model_free": (None, [vp]),
        "dml_model_dim_in": (i, [vp]),
        "dml_model_dim_out": (i, [vp]),
        "dml_model_dim_in_b": (i, [vp]),
        "dml_model_encode": (st, [vp, vp, sz, vp]),
        "dml_model_encode_b": (st, [vp, vp, sz, vp]),
        "dml_model_pq": (vp, [vp]),
        "dml_model_metric": (c.c_char_p, [vp]),
        "dml_pq_code_size": (sz, [vp]),
        "dml_pq_encode": (st, [vp, vp, sz, vp]),
        "dml_pq_decode": (None, [vp, vp, sz, vp]),
        "dml_pq_search": (st, [vp, vp, sz, vp, sz, i, vp, vp]),
        "dml_pq_m": (i, [vp]),
        "dml_pq_nbits": (i, [vp]),
        "dml_pq_centroids": (c.POINTER(c.c_float), [vp]),
        "dml_model_save": (st, [vp, c.c_char_p, c.c_char_p, sz]),
        "dml_train": (st, [c.c_char_p, vp, i, vp, vp, c.POINTER(vp), c.c_char_p, sz]),
        "dml_evaluate": (st, [vp, c.POINTER(EvalData), i, c.c_char_p, c.POINTER(vp),
                              c.c_char_p, sz]),
        "dml_metrics_count": (i, [vp]),
        "dml_metrics_name": (c.c_char_p, [vp, i]),
        "dml_metrics_value": (c.c_double, [vp, i]),
        "dml_metrics_free": (None, [vp]),
    }
    for name, (res, args) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args


def load():
    """The loaded library (once per process); ImportError naming every place tried."""
    global _lib
    if _lib is not None:
        return _lib
    tried = []
    for where, path in candidates():
        if path is None:
            tried.append("%s: not found" % where)
            continue
        if os.sep in path and not os.path.exists(path):
            tried.append("%s: %s (no such file)" % (where, path))
            continue
        try:
            lib = ctypes.CDLL(path)
            _declare(lib)
        except (OSError, AttributeError) as e:
            tried.append("%s: %s (%s)" % (where, path, e))
            continue
        lib._dml_path = os.path.abspath(path) if os.sep in path else path
        _lib = lib
        return lib
    raise ImportError("dml: cannot load libdml.so; looked in:\n  " + "\n  ".join(tried) +
                      "\nBuild it (make), set DML_LIB=/path/to/libdml.so, or make install.")
