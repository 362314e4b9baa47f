"""Checks two model files hold the same model: every group, dataset (values and shape) and
attribute, strings compared as text whether variable-length (format_version 1) or fixed-length
(2); format_version, producer and created may differ.

usage: same_model_h5.py A.h5 B.h5   (exit status 0 when they match, else the difference and 1)"""
import sys

import h5py
import numpy as np

SKIP = {"format_version", "producer", "created"}


def value(v):
    return v.decode("utf-8") if isinstance(v, bytes) else v


def items(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj))
    out["/"] = f
    return out


def main():
    with h5py.File(sys.argv[1], "r") as a, h5py.File(sys.argv[2], "r") as b:
        ia, ib = items(a), items(b)
        if ia.keys() != ib.keys():
            sys.exit("same_model_h5: objects differ: %s" % sorted(ia.keys() ^ ib.keys()))
        for name, x in ia.items():
            y = ib[name]
            keys = set(x.attrs) - SKIP
            if keys != set(y.attrs) - SKIP:
                sys.exit("same_model_h5: %s: attributes differ" % name)
            for k in keys:
                if not np.array_equal(value(x.attrs[k]), value(y.attrs[k])):
                    sys.exit("same_model_h5: %s: attribute %s differs" % (name, k))
            if isinstance(x, h5py.Dataset) and not np.array_equal(x[()], y[()]):
                sys.exit("same_model_h5: %s: values differ" % name)
    print("same_model_h5: ok (%d objects)" % len(ia))


main()
