"""Loads a FAISS index dml wrote and checks it against dml's own numbers (FAISS 1.7.3).

usage: check_faiss.py INDEX DIR
DIR holds what the C test wrote: meta.txt ("kind d n metric [k]": kind flat|pq, metric l2|ip),
db.f32 [n, d] (the encoded database), and for pq: centroids.f32, codes.u8, and, when k is given,
queries.f32 [nq, d] with dml_pq_search's answers dist.f32 [nq, k] and labels.i64 [nq, k].
Checks: the file loads as the right class; d, ntotal, metric; re-serialising gives the file's
bytes; flat vectors or PQ centroids and codes equal dml's (codes also equal pq.compute_codes of
the database); FAISS's search returns dml_pq_search's neighbours (equal distances; a different
id only where the distances tie). Exit status 0 when all hold."""
import os
import sys

import faiss
import numpy as np


def fail(msg):
    sys.stderr.write("check_faiss: %s\n" % msg)
    sys.exit(1)


def expect(cond, msg):
    if not cond:
        fail(msg)


def main():
    path, d_ = sys.argv[1], sys.argv[2]
    meta = open(os.path.join(d_, "meta.txt")).read().split()
    kind, d, n, metric = meta[0], int(meta[1]), int(meta[2]), meta[3]
    k = int(meta[4]) if len(meta) > 4 else 0
    load = lambda name, dt: np.fromfile(os.path.join(d_, name), dtype=dt)
    db = load("db.f32", np.float32).reshape(n, d)

    ix = faiss.read_index(path)  # keep the reference: read_index returns the subclass
    want_cls = {"flat": faiss.IndexFlat, "pq": faiss.IndexPQ}[kind]
    expect(isinstance(ix, want_cls), "loaded as %s" % type(ix).__name__)
    expect(ix.d == d and ix.ntotal == n, "d/ntotal %d/%d, expected %d/%d" % (ix.d, ix.ntotal, d, n))
    want_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
    expect(ix.metric_type == want_metric, "metric_type %d" % ix.metric_type)
    expect(ix.is_trained, "is_trained")
    raw = open(path, "rb").read()
    expect(faiss.serialize_index(ix).tobytes() == raw, "re-serialised bytes differ from the file")

    if kind == "flat":
        xb = faiss.vector_to_array(ix.codes).view(np.float32).reshape(n, d)
        expect(np.array_equal(xb, db), "stored vectors differ")
        if n and metric == "l2":
            _, ids = ix.search(db[:5], 1)
            expect((ids[:, 0] == np.arange(min(5, n))).all(), "no self hits: %s" % ids[:, 0])
    else:
        pq = ix.pq
        c = load("centroids.f32", np.float32)
        expect(np.array_equal(faiss.vector_to_array(pq.centroids), c), "centroids differ")
        codes = load("codes.u8", np.uint8).reshape(n, pq.code_size)
        expect(np.array_equal(faiss.vector_to_array(ix.codes).reshape(n, -1), codes),
               "stored codes differ")
        expect(np.array_equal(pq.compute_codes(db), codes), "codes differ from pq.compute_codes")
        expect(ix.search_type == faiss.IndexPQ.ST_PQ, "search_type")
        if k:
            q = load("queries.f32", np.float32).reshape(-1, d)
            dist = load("dist.f32", np.float32).reshape(-1, k)
            labels = load("labels.i64", np.int64).reshape(-1, k)
            fd, fi = ix.search(q, k)
            expect(np.allclose(fd, dist, rtol=1e-4, atol=1e-5),
                   "distances differ by up to %g" % np.max(np.abs(fd - dist)))
            differ = fi != labels
            ties = np.abs(fd - dist) <= 1e-5 * np.maximum(1, np.abs(fd))
            expect((~differ | ties).all(), "neighbours differ where distances do not tie")
            # a differing id must be among dml's ids at the same distance: recompute it
            recon = pq.decode(codes)
            for qi, j in zip(*np.nonzero(differ)):
                dd = np.sum((recon[fi[qi, j]] - q[qi]) ** 2)
                expect(abs(dd - dist[qi, j]) <= 1e-4 * max(1, dd), "query %d rank %d" % (qi, j))
            print("check_faiss: %d queries, %d of %d ids at tied ranks differ"
                  % (q.shape[0], differ.sum(), differ.size))
    print("check_faiss: ok (%s, d=%d, n=%d, %d bytes)" % (kind, d, n, len(raw)))


main()
