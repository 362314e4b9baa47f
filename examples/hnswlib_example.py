"""Serve a dml encoder with hnswlib (Debian's python3-hnswlib): embed a database with the model,
index the embeddings in an HNSW graph, and query it; prints the recall of HNSW's k nearest
against the exact ones over the same embeddings.

    make
    PYTHONPATH=python /usr/bin/python3 examples/hnswlib_example.py runs/demo/model.h5 DB.npy [Q.npy] [--k 10]

DB.npy and Q.npy hold raw rows [n, dim_in] (float32 or float64); without Q.npy the first 100
database rows are the queries. The model's metric picks hnswlib's space ("l2" or "ip").
"""
import argparse

import hnswlib
import numpy as np

import dml


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("db")
    ap.add_argument("queries", nargs="?")
    ap.add_argument("--k", type=int, default=10)
    a = ap.parse_args()
    with dml.Model(a.model) as model:
        db = model.encode(np.load(a.db))
        q = model.encode(np.load(a.queries)) if a.queries else db[:100]
        space = "ip" if model.metric == "inner_product" else "l2"
    k = min(a.k, len(db))
    index = hnswlib.Index(space=space, dim=db.shape[1])
    index.init_index(max_elements=len(db), ef_construction=200, M=16, random_seed=0)
    index.add_items(db, np.arange(len(db)))
    index.set_ef(max(50, k))
    labels, _ = index.knn_query(q, k=k)
    # exact neighbours over the same embeddings, for the recall
    if space == "ip":
        score = -(q @ db.T)
    else:
        score = (q * q).sum(1)[:, None] - 2 * q @ db.T + (db * db).sum(1)[None, :]
    exact = np.argsort(score, axis=1, kind="stable")[:, :k]
    recall = np.mean([len(set(l) & set(e)) / k for l, e in zip(labels, exact)])
    print("database %d x %d, %d queries, space %s: recall@%d of HNSW against exact %.3f"
          % (len(db), db.shape[1], len(q), space, k, recall))
    print("first query's neighbours:", labels[0].tolist())


if __name__ == "__main__":
    main()
