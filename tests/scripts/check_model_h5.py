"""Reads a dml model.h5 with h5py alone and checks it against what the C side computed.

usage: check_model_h5.py MODEL.h5 X.f32 Y.f32 [TOWER]
X.f32 holds raw float32 input rows and Y.f32 the C embeddings of them (dml_model_file_encode);
TOWER is encoder (default) or encoder_b. The script rebuilds the forward pass in numpy from the
file's layout (formats.md 2.3: weight [out, in], y = W x + b, input/output normalisation) and
checks the string attributes are fixed-length UTF-8 (h5py returns them as bytes), the float
datasets are single chunks with a Fletcher-32 checksum, the shapes and the codebooks.
Exit status 0 when everything holds; otherwise the first problem on stderr and 1."""
import math
import sys

import h5py
import numpy as np


def fail(msg):
    sys.stderr.write("check_model_h5: %s\n" % msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def text(attrs, key):
    """A fixed-length string attribute (h5py gives numpy.bytes_), decoded."""
    v = attrs[key]
    expect(isinstance(v, bytes), "attribute %s is %s, not a fixed-length string" % (key, type(v)))
    tid = attrs.get_id(key).get_type()
    expect(not tid.is_variable_str() and tid.get_cset() == h5py.h5t.CSET_UTF8,
           "attribute %s is not fixed-length UTF-8" % key)
    return v.decode("utf-8")


def floats(ds):
    """A float32 dataset as dml writes it: one chunk, Fletcher-32, nothing else."""
    expect(ds.dtype == np.float32, "%s is not float32" % ds.name)
    expect(ds.chunks == ds.shape and ds.fletcher32 and ds.compression is None,
           "%s is not one Fletcher-32 chunk" % ds.name)
    return ds[()]


ERF = np.vectorize(math.erf)
ACT = {
    "none": lambda x, a: x,
    "relu": lambda x, a: np.maximum(x, 0),
    "leaky_relu": lambda x, a: np.where(x > 0, x, x * float(a.get("negative_slope", 0.01))),
    "tanh": lambda x, a: np.tanh(x),
    "sigmoid": lambda x, a: 1 / (1 + np.exp(-x)),
    "gelu": lambda x, a: 0.5 * x * (1 + ERF(x / math.sqrt(2))),
}


def forward(tower, x):
    norm = tower["input_norm"]
    if text(norm.attrs, "kind") == "standardize":
        x = (x - floats(norm["mean"])) / floats(norm["std"])
    n_layers = int(tower.attrs["num_layers"])
    expect(int(tower.attrs["input_dim"]) == x.shape[1], "input_dim differs from the input rows")
    for i in range(n_layers):
        layer = tower["layer_%03d" % i]
        w, b = floats(layer["weight"]), floats(layer["bias"])
        expect(w.shape == (layer.attrs["out_features"], layer.attrs["in_features"]),
               "layer %d weight shape %s" % (i, w.shape))
        act = text(layer.attrs, "activation")
        x = ACT[act](x.astype(np.float64) @ w.T + b, layer.attrs)
    out = tower["output_norm"]
    kind = text(out.attrs, "kind")
    if kind == "l2":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), float(out.attrs["eps"]))
    elif kind == "tanh":
        x = np.tanh(x)
    else:
        expect(kind == "none", "unknown output_norm %r" % kind)
    expect(x.shape[1] == int(tower.attrs["output_dim"]), "output_dim differs")
    return x


def main():
    path, xpath, ypath = sys.argv[1:4]
    tower_name = sys.argv[4] if len(sys.argv) > 4 else "encoder"
    with h5py.File(path, "r") as f:
        root = {k: text(f.attrs, k) for k in ("format", "producer", "created", "metric",
                                               "model_type")}
        expect(root["format"] == "dml-model", "format is %r" % root["format"])
        expect(int(f.attrs["format_version"]) == 2, "format_version")
        expect(root["metric"] in ("l2", "inner_product"), "metric")
        expect(root["producer"].startswith("dml "), "producer")
        tower = f[tower_name]
        d_in = int(tower.attrs["input_dim"])
        x = np.fromfile(xpath, dtype=np.float32).reshape(-1, d_in)
        y = np.fromfile(ypath, dtype=np.float32).reshape(x.shape[0], -1)
        ref = forward(tower, x)
        err = np.max(np.abs(ref - y))
        expect(err < 1e-5, "the numpy forward pass differs from dml's by %g" % err)
        if "pq" in f:
            pq = f["pq"]
            d, m, nbits = (int(pq.attrs[k]) for k in ("d", "M", "nbits"))
            c = floats(pq["centroids"])
            expect(c.shape == (m, 1 << nbits, d // m), "centroids shape %s" % (c.shape,))
            expect(int(pq.attrs["ksub"]) == 1 << nbits and int(pq.attrs["dsub"]) == d // m,
                   "ksub/dsub")
            expect(d == y.shape[1], "pq d differs from the embedding width")
        t = f["training"]
        expect(text(t.attrs, "config").startswith("name: fixture"), "training config")
        expect(text(t.attrs, "final_metrics").startswith("{"), "training final_metrics")
        expect(np.issubdtype(t.attrs["steps"].dtype, np.integer), "training steps")
    print("check_model_h5: ok (%d rows, max error %.3g)" % (x.shape[0], err))


main()
