"""Checks an ONNX model dml exported (onnx 1.12: no reference evaluator, so a small numpy one).

usage: check_onnx.py MODEL.onnx X.f32 Y.f32 [key=value ...]
X.f32 holds raw float32 input rows, Y.f32 dml's embeddings of them (dml_model_file_encode).
Checks: onnx.checker.check_model(full_check=True), strict shape inference giving y [N, d_out],
IR version 7 and opset 13, every key=value in metadata_props, and the graph evaluated in numpy
(node by node, topological order) matching Y to 1e-5. Exit status 0 when all hold."""
import math
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

ERF = np.vectorize(math.erf, otypes=[np.float32])


def fail(msg):
    sys.stderr.write("check_onnx: %s\n" % msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def gemm(a, b, c, at):
    a = a.T if at.get("transA", 0) else a
    b = b.T if at.get("transB", 0) else b
    return at.get("alpha", 1.0) * (a @ b) + at.get("beta", 1.0) * c


OPS = {
    "Gemm": lambda i, at: gemm(i[0], i[1], i[2], at),
    "Relu": lambda i, at: np.maximum(i[0], 0),
    "LeakyRelu": lambda i, at: np.where(i[0] > 0, i[0], i[0] * np.float32(at.get("alpha", 0.01))),
    "Tanh": lambda i, at: np.tanh(i[0]),
    "Sigmoid": lambda i, at: 1 / (1 + np.exp(-i[0])),
    "Erf": lambda i, at: ERF(i[0]),
    "Identity": lambda i, at: i[0],
    "Sub": lambda i, at: i[0] - i[1],
    "Div": lambda i, at: i[0] / i[1],
    "Add": lambda i, at: i[0] + i[1],
    "Mul": lambda i, at: i[0] * i[1],
    "Max": lambda i, at: np.maximum(i[0], i[1]),
    "ReduceL2": lambda i, at: np.sqrt(np.sum(i[0] ** 2, axis=tuple(at["axes"]),
                                             keepdims=bool(at.get("keepdims", 1)))),
    "LpNormalization": lambda i, at: i[0] / np.linalg.norm(i[0], ord=at.get("p", 2),
                                                          axis=at.get("axis", -1), keepdims=True),
}


def main():
    path, xpath, ypath = sys.argv[1:4]
    want_meta = dict(kv.split("=", 1) for kv in sys.argv[4:])
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    expect(m.ir_version == 7, "ir_version %d" % m.ir_version)
    expect([(o.domain, o.version) for o in m.opset_import] == [("", 13)], "opset_import")
    meta = {p.key: p.value for p in m.metadata_props}
    for k, v in want_meta.items():
        expect(meta.get(k) == v, "metadata %s = %r, expected %r" % (k, meta.get(k), v))

    g = m.graph
    expect([i.name for i in g.input] == ["x"] and [o.name for o in g.output] == ["y"], "io names")
    dims = lambda vi: [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    d_in, d_out = dims(g.input[0])[1], dims(g.output[0])[1]
    expect(dims(g.input[0])[0] == "N", "batch dimension")
    y_info = inferred.graph.output[0]
    expect(dims(y_info) == ["N", d_out], "inferred y shape %s" % dims(y_info))

    x = np.fromfile(xpath, dtype=np.float32).reshape(-1, d_in)
    y = np.fromfile(ypath, dtype=np.float32).reshape(x.shape[0], d_out)
    env = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    env["x"] = x
    for node in g.node:
        expect(node.op_type in OPS, "op %s has no evaluator" % node.op_type)
        out = OPS[node.op_type]([env[i] for i in node.input], attrs(node))
        env[node.output[0]] = np.asarray(out, dtype=np.float32)
    err = np.max(np.abs(env["y"] - y)) if y.size else 0.0
    expect(err <= 1e-5, "the ONNX graph differs from dml by %g" % err)
    print("check_onnx: ok (%d nodes, %d rows, max error %.3g)" % (len(g.node), x.shape[0], err))


main()
