#!/usr/bin/python3
"""The database row of `make bench`: a SIFT-like ann-benchmarks file of 1M x 128 rows (seeded,
generated, no download), dml's learned encoder + 16-byte PQ codes beside FAISS's IndexPQ with
the same 16 bytes on the raw vectors, in one run. Writes bench/database.md.

dml: `dml train bench/database.yaml` on the file (no labels), `dml encode --pq` of every row
(rows/s and peak RSS), `dml eval --pq` of the queries against the rows with the file's exact
neighbours (nn_recall_at_k of the float embeddings and of the PQ codes, each against exact
search on the raw vectors). FAISS (bench/database_peer.py): IndexPQ(128, 16, 8) trained on the
first 100,000 rows, every row added (rows/s), the queries searched.

    /usr/bin/python3 bench/database.py --dml build/dml [--rows 1000000] [--queries 10000]
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
PEER = os.path.join(HERE, "database_peer.py")


def run(cmd, root):
    """Runs cmd under /usr/bin/time -v: (stdout, wall seconds, peak RSS MiB)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, cwd=root)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.stderr.write(f"database: {' '.join(cmd)} failed (exit {p.returncode})\n{p.stderr[-3000:]}")
        raise SystemExit(1)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    return p.stdout, wall, (int(m.group(1)) / 1024.0 if m else float("nan"))


def last_json(out):
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dml", default="build/dml")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--out", default=os.path.join(HERE, "database.md"))
    p.add_argument("--root", default=os.path.dirname(HERE))
    args = p.parse_args()
    dml = os.path.abspath(args.dml)
    work = tempfile.mkdtemp(prefix="dml-database-")
    try:
        data = os.path.join(work, "sift-like.hdf5")
        sys.stderr.write(f"database: generating {args.rows:,} x 128 rows and exact neighbours\n")
        subprocess.run([PYTHON, PEER, "make", data, "--rows", str(args.rows), "--queries",
                        str(args.queries)], check=True)
        load_before = os.getloadavg()[0]
        sys.stderr.write("database: FAISS IndexPQ on the raw rows\n")
        faiss_out, faiss_wall, faiss_rss = run([PYTHON, PEER, "pq", data, "--m", "16"], args.root)
        peer = last_json(faiss_out)
        run_dir = os.path.join(work, "run")
        sys.stderr.write("database: dml train\n")
        _, train_wall, train_rss = run([dml, "train", os.path.join(HERE, "database.yaml"), "--set",
                                        f"data.train={data}", "--out", run_dir], args.root)
        model = os.path.join(run_dir, "model.h5")
        sys.stderr.write("database: dml encode --pq\n")
        _, enc_wall, enc_rss = run([dml, "encode", model, f"{data}:/train",
                                    os.path.join(work, "codes.h5"), "--pq"], args.root)
        sys.stderr.write("database: dml eval --pq\n")
        ev_out, ev_wall, ev_rss = run([dml, "eval", model, "--data", f"{data}:/test", "--db",
                                       f"{data}:/train", "--pq", "--json"], args.root)
        ev = last_json(ev_out)
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        "| | dml (learned encoder, then PQ) | FAISS IndexPQ (raw rows) |",
        "|---|---|---|",
        f"| recall@1 / @10 / @100, PQ codes (16 bytes) | {ev['pq_nn_recall_at_1']:.3f} / "
        f"{ev['pq_nn_recall_at_10']:.3f} / {ev['pq_nn_recall_at_100']:.3f} | "
        f"{peer['nn_recall_at_1']:.3f} / {peer['nn_recall_at_10']:.3f} / {peer['nn_recall_at_100']:.3f} |",
        f"| recall@1 / @10 / @100, float embeddings (exact search) | {ev['nn_recall_at_1']:.3f} / "
        f"{ev['nn_recall_at_10']:.3f} / {ev['nn_recall_at_100']:.3f} | 1 / 1 / 1 (the raw rows) |",
        f"| encode rows/s (dml: read + embed + PQ + write the file) | {args.rows / enc_wall:,.0f} | "
        f"{peer['encode_rows_per_s']:,.0f} (PQ codes in memory) |",
        f"| peak RSS MiB: encode (dml) / the whole script (FAISS) | {enc_rss:,.0f} | {faiss_rss:,.0f} |",
        f"| training s (dml: 1 epoch + PQ fit; FAISS: PQ fit on 100k rows) | {train_wall:.1f} | "
        f"{peer['train_s']:.1f} |",
        f"| search s, {args.queries:,} queries (dml: the whole `dml eval` process) | {ev_wall:.1f} | "
        f"{peer['search_s']:.1f} |",
    ]
    table = "\n".join(rows)
    print(table)
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    with open(args.out, "w") as f:
        f.write(f"# make bench: a database of {args.rows:,} rows\n\n{date}, {os.cpu_count()} cores, "
                f"{platform.platform()}. A seeded SIFT-like file ({args.rows:,} x 128, "
                f"{args.queries:,} queries, exact L2 neighbours; bench/database_peer.py) in the "
                f"ann-benchmarks layout; `bench/database.yaml` trained on it without labels. Recall "
                f"is ann-benchmarks' k-nn recall against exact search on the raw rows. Load average "
                f"(1 min) {load_before:.1f} before and {load_after:.1f} after.\n\n{table}\n")
    sys.stderr.write(f"wrote {args.out}\n")


if __name__ == "__main__":
    sys.exit(main())
