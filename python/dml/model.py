"""dml.Model: a trained encoder read from model.h5, and its product quantizer (dml.PQ).

Arrays. Inputs are numpy arrays of rows. A float32, C-contiguous array is handed to dml by
pointer, with no copy; anything else (float64, a transposed view, a list) is converted once with
np.ascontiguousarray(X, dtype=np.float32). A 1-D array is one row: encode(x) of shape (dim_in,)
returns shape (dim_out,). Outputs are new numpy arrays.
"""
import ctypes
import os
import tempfile

import numpy as np

from . import _lib
from ._errors import UsageError, check

_MSG = 1024


def _rows(x, width, what, dtype=np.float32):
    """(array [n, width] of dtype, C-contiguous, was_1d): x itself when it already is one."""
    a = np.ascontiguousarray(x, dtype=dtype)
    one = a.ndim == 1
    if one:
        a = a.reshape(1, -1)
    if a.ndim != 2:
        raise UsageError("%s must be 2-D [n, %d] (or 1-D, one row); got shape %s"
                         % (what, width, np.shape(x)))
    if a.shape[1] != width:
        raise UsageError("%s has %d columns; this needs %d (shape %s)"
                         % (what, a.shape[1], width, np.shape(x)))
    return a, one


def _ptr(a):
    return a.ctypes.data


class PQ:
    """The product quantizer stored with a model (Model.pq): codes as FAISS's IndexPQ packs them.
    Lives as long as its model; d = the model's dim_out, m sub-quantizers of ksub = 2**nbits
    centroids over dsub = d / m wide sub-vectors."""

    def __init__(self, model, handle):
        self._model = model  # keeps the model (which owns the codebooks) alive
        self._h = handle
        L = model._L
        self.d = model.dim_out
        self.m = L.dml_pq_m(handle)
        self.nbits = L.dml_pq_nbits(handle)
        self.ksub = 1 << self.nbits
        self.dsub = self.d // self.m
        self.code_size = L.dml_pq_code_size(handle)

    def _handle(self):
        self._model._handle()  # raises if the model was closed
        return self._h

    @property
    def centroids(self):
        """A copy of the codebooks, float32 [m, ksub, dsub] (FAISS ProductQuantizer's layout)."""
        p = self._model._L.dml_pq_centroids(self._handle())
        flat = np.ctypeslib.as_array(p, shape=(self.m * self.ksub * self.dsub,))
        return flat.reshape(self.m, self.ksub, self.dsub).copy()

    def encode(self, emb):
        """uint8 codes [n, code_size] of embeddings emb [n, d] (nearest centroid, ties low)."""
        h = self._handle()
        a, one = _rows(emb, self.d, "embeddings")
        codes = np.empty((a.shape[0], self.code_size), dtype=np.uint8)
        check(self._model._L.dml_pq_encode(h, _ptr(a), a.shape[0], _ptr(codes)),
              "dml_pq_encode: %d rows" % a.shape[0])
        return codes[0] if one else codes

    def decode(self, codes):
        """float32 [n, d]: each sub-vector its centroid."""
        h = self._handle()
        c, one = _rows(codes, self.code_size, "codes", dtype=np.uint8)
        out = np.empty((c.shape[0], self.d), dtype=np.float32)
        self._model._L.dml_pq_decode(h, _ptr(c), c.shape[0], _ptr(out))
        return out[0] if one else out

    def search(self, codes, queries, k):
        """ADC search: the k codes (rows of codes [n_db, code_size]) nearest each float query
        [n_q, d] in squared L2, nearest first. (distances float32 [n_q, k], ids int64 [n_q, k]);
        past n_db the ids are -1 and the distances +inf."""
        h = self._handle()
        c, _ = _rows(codes, self.code_size, "codes", dtype=np.uint8)
        q, one = _rows(queries, self.d, "queries")
        k = int(k)
        if k < 1:
            raise UsageError("k must be at least 1; got %d" % k)
        dist = np.empty((q.shape[0], k), dtype=np.float32)
        ids = np.empty((q.shape[0], k), dtype=np.int64)
        check(self._model._L.dml_pq_search(h, _ptr(c), c.shape[0], _ptr(q), q.shape[0], k,
                                           _ptr(dist), _ptr(ids)),
              "dml_pq_search: %d queries, k=%d, over %d codes" % (q.shape[0], k, c.shape[0]))
        return (dist[0], ids[0]) if one else (dist, ids)

    def __repr__(self):
        return "dml.PQ(d=%d, m=%d, nbits=%d, code_size=%d)" % (self.d, self.m, self.nbits,
                                                               self.code_size)


class Model:
    """A trained encoder read from a model.h5 (format_version 2): dml.Model(path) or
    dml.Model.load(path). Close it with close() or a with-block; a closed model refuses calls.
    Encoding is thread-safe: threads may call encode on one model at once (the GIL is released
    during the C call). Opening and closing read HDF5: do not run them in several threads."""

    def __init__(self, path):
        self._L = _lib.load()
        self._h = None
        self.path = os.fspath(path)
        h = ctypes.c_void_p()
        msg = ctypes.create_string_buffer(_MSG)
        st = self._L.dml_model_open(os.fsencode(self.path), ctypes.byref(h), msg, _MSG)
        check(st, "dml_model_open: %s" % self.path, msg.value.decode("utf-8", "replace"))
        self._h = h.value
        self._attributes()

    @classmethod
    def _from_handle(cls, handle, path=None):
        """A Model owning a dml_model handle dml_train returned (path None: in memory only)."""
        self = cls.__new__(cls)
        self._L = _lib.load()
        self._h = handle
        self.path = path
        self._attributes()
        return self

    @classmethod
    def _from_bytes(cls, data):
        """A Model read from a model.h5's bytes (how a model with no file unpickles): written
        to a temporary file, opened, the file removed; the model's path is then None."""
        fd, tmp = tempfile.mkstemp(suffix=".h5", prefix="dml-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            m = cls(tmp)
        finally:
            os.unlink(tmp)
        m.path = None
        return m

    def to_bytes(self):
        """The model as the bytes of the model.h5 save() writes."""
        d = tempfile.mkdtemp(prefix="dml-")
        tmp = os.path.join(d, "model.h5")
        try:
            self.save(tmp)
            with open(tmp, "rb") as f:
                return f.read()
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            os.rmdir(d)

    def save(self, path):
        """Writes the model to path as a model.h5 (format_version 2), atomically (a temporary
        name, then a rename): dml.Model(path) reads back a model that encodes the same, bit for
        bit. dml.InputOutputError naming the file when it cannot be written."""
        h = self._handle()
        path = os.fspath(path)
        msg = ctypes.create_string_buffer(_MSG)
        check(self._L.dml_model_save(h, os.fsencode(path), msg, _MSG),
              "dml_model_save: %s" % path, msg.value.decode("utf-8", "replace"))

    def _attributes(self):
        L = self._L
        self.dim_in = L.dml_model_dim_in(self._h)
        self.dim_out = L.dml_model_dim_out(self._h)
        self.dim_in_b = L.dml_model_dim_in_b(self._h)  # 0 unless a dual encoder
        self.metric = L.dml_model_metric(self._h).decode()
        pq = L.dml_model_pq(self._h)
        self.pq = PQ(self, pq) if pq else None

    @classmethod
    def load(cls, path):
        """The same as dml.Model(path)."""
        return cls(path)

    def _handle(self):
        if self._h is None:
            raise UsageError("the model %s is closed" % (self.path or "(in memory)"))
        return self._h

    def close(self):
        """Frees the model (and its codebooks); calling it again is harmless."""
        if getattr(self, "_h", None) is not None:
            h, self._h = self._h, None
            self._L.dml_model_free(h)

    def __reduce__(self):
        """Pickled as its path: unpickling opens the file again (for multiprocessing). A model
        with no file (dml.train's without out=, or one unpickled so) pickles as its model.h5
        bytes (to_bytes), which unpickling opens through a temporary file."""
        if self.path is None:
            return (Model._from_bytes, (self.to_bytes(),))
        return (Model, (self.path,))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()

    def _encode(self, fn, x, width, what):
        h = self._handle()
        if width == 0:
            raise UsageError("%s: the model %s has one tower; encode_b needs a dual encoder"
                             % (what, self.path))
        a, one = _rows(x, width, "X")
        out = np.empty((a.shape[0], self.dim_out), dtype=np.float32)
        check(fn(h, _ptr(a), a.shape[0], _ptr(out)), "%s: %d rows" % (what, a.shape[0]))
        return out[0] if one else out

    def encode(self, X):
        """Embeddings float32 [n, dim_out] of rows X [n, dim_in] (the model's input
        normalisation, MLP and output normalisation)."""
        return self._encode(self._L.dml_model_encode, X, self.dim_in, "dml_model_encode")

    def encode_b(self, X):
        """Dual encoders: the second (positive-side) tower's embeddings of X [n, dim_in_b]."""
        return self._encode(self._L.dml_model_encode_b, X, self.dim_in_b or self.dim_in,
                            "dml_model_encode_b")

    def to_faiss(self, X_db, metric=None):
        """A faiss.IndexPQ with the model's codebooks holding X_db's rows (raw inputs [n,
        dim_in], embedded and PQ-encoded here): the index `dml export --faiss` writes. metric:
        "l2" or "inner_product" (default: the model's). Needs python3-faiss."""
        if self.pq is None:
            raise UsageError("the model %s has no PQ codebooks (train it with a pq: section)"
                             % self.path)
        import faiss
        metric = metric or self.metric
        fm = {"l2": faiss.METRIC_L2, "inner_product": faiss.METRIC_INNER_PRODUCT,
              "ip": faiss.METRIC_INNER_PRODUCT}.get(metric)
        if fm is None:
            raise UsageError("metric must be l2 or inner_product; got %r" % (metric,))
        pq = self.pq
        index = faiss.IndexPQ(pq.d, pq.m, pq.nbits, fm)
        faiss.copy_array_to_vector(pq.centroids.ravel(), index.pq.centroids)
        index.is_trained = True
        codes = pq.encode(self.encode(X_db))
        if codes.ndim == 1:
            codes = codes.reshape(1, -1)
        faiss.copy_array_to_vector(codes.ravel(), index.codes)
        index.ntotal = codes.shape[0]
        return index

    def __repr__(self):
        state = "closed" if self._h is None else "dim_in=%d, dim_out=%d, metric=%r, pq=%s" % (
            self.dim_in, self.dim_out, self.metric, self.pq)
        return "dml.Model(%r, %s)" % (self.path, state)
