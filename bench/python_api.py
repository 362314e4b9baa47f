#!/usr/bin/python3
"""The Python API's `make bench` rows (issue #28 item 3): the package against the C side, in one run.

    /usr/bin/python3 bench/python_api.py --dml build/dml --encode build/bench_encode
    /usr/bin/python3 bench/python_api.py ... --quick --out /tmp/python_api.md   (a smoke run)

Rows, each side a fresh process, the two sides alternated --rounds times (3), medians:
  encode  build/bench_encode (dml_model_encode from C) against dml.Model(path).encode(X), the
          same --rows x 784 float32 rows (a fixed-seed generator both sides implement, the
          float32 C-contiguous array handed by pointer), the same model, OpenBLAS on --threads
          threads in both; median of --repeats timed calls after one warm-up in each process.
  train   `dml train configs/demo.yaml` against dml.train("configs/demo.yaml", X, y, ...) on
          Fashion-MNIST read into numpy, the same seed, steps and threads; both sides' figure is
          the steps/s dml's progress line prints at the last step (the same C code on both sides:
          steps over the time from the loop's start to that step's end).
  memory  peak RSS (os.wait4's ru_maxrss) of `dml train configs/demo.yaml` against a Python
          process running dml.train on the numpy arrays (the same config, folder written on
          both sides), beside the arrays' bytes and the interpreter's own baseline.

The worker sub-commands (encode-worker, train-worker, baseline-worker) are the Python side's
processes; the driver starts them.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
sys.path.insert(0, HERE)
import run as bench_run  # noqa: E402  bench/run.py: machine() and the versions
FMNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
CONFIG = "configs/demo.yaml"
ENCODE_TARGET = 1.05  # Model.encode's time over dml_model_encode's, at most
TRAIN_TARGET = 0.95   # dml.train's steps/s over the CLI's, at least (the encode row's 5%)
SEED = 7              # the encode rows' generator
# dml's progress line (data/progress.c, not a terminal): "step 300/300  loss 0.12345  lr ..."
PROGRESS = re.compile(r"^step (\d+)/(\d+)  loss (\S+)  lr (\S+)  ([0-9.]+) steps/s", re.M)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---- data, as the CLI reads it ----
def fashion_mnist(split):
    """(X float32 [n, 784] = bytes / 255, y int64 [n]) from the package's IDX .gz files: the
    values dml train's data.normalize: unit gives its trainer (bytes read as floats, then
    (x - 0) / 255 in float32, data/normalize.c), so with data.normalize=none dml.train trains
    on the same numbers."""
    import gzip
    import numpy as np
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(os.path.join(FMNIST, f"{prefix}-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read()
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    u8 = np.frombuffer(raw, dtype=np.uint8, count=n * rows * cols, offset=16).reshape(n, rows * cols)
    X = np.empty(u8.shape, dtype=np.float32)
    np.divide(u8, np.float32(255.0), out=X)
    del u8, raw
    with gzip.open(os.path.join(FMNIST, f"{prefix}-labels-idx1-ubyte.gz"), "rb") as f:
        lab = f.read()
    y = np.frombuffer(lab, dtype=np.uint8, offset=8).astype(np.int64)
    return X, y


def generated_rows(n, d, seed):
    """float32 [n, d]: value i (row-major) = the top byte of splitmix64(seed + (i + 1) * golden),
    as bench/encode_api.c fills its rows. Built a block of rows at a time."""
    import numpy as np
    X = np.empty((n, d), dtype=np.float32)
    flat = X.reshape(-1)
    block = 10000 * d
    with np.errstate(over="ignore"):
        for start in range(0, n * d, block):
            i = np.arange(start + 1, min(start + block, n * d) + 1, dtype=np.uint64)
            z = np.uint64(seed) + i * np.uint64(0x9E3779B97F4A7C15)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z ^= z >> np.uint64(31)
            flat[start:start + i.size] = (z >> np.uint64(56)).astype(np.float32)
    return X


# ---- the Python side's processes ----
def encode_worker(a):
    import numpy as np
    import dml
    X = generated_rows(a.rows, a.d_in, a.seed)
    with dml.Model(a.model) as m:
        if m.dim_in != a.d_in:
            raise SystemExit(f"encode-worker: the model's dim_in is {m.dim_in}, not {a.d_in}")
        out = m.encode(X)  # warm-up, untimed
        secs = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            out = m.encode(X)
            secs.append(time.perf_counter() - t0)
    print(json.dumps({"side": "python", "rows": a.rows, "d_in": a.d_in, "dim_out": int(out.shape[1]),
                      "repeats": a.repeats, "seconds": secs, "median_s": statistics.median(secs),
                      "min_s": min(secs), "first": ["%.9g" % float(v) for v in out[0, :4]],
                      "sum": float(np.sum(out, dtype=np.float64))}))


def train_worker(a):
    sys.modules["tqdm"] = None  # no tqdm bar: dml prints its own progress lines (stderr)
    import numpy as np
    import dml
    X, y = fashion_mnist("train")
    Xt, yt = fashion_mnist("test")
    arrays = int(X.nbytes + y.nbytes + Xt.nbytes + yt.nbytes)
    stamps = []

    def on_step(step, total, loss, lr, metrics):
        if not metrics:
            stamps.append((step, time.perf_counter()))

    model = dml.train(os.path.join(a.root, CONFIG), X, y, X_test=Xt, y_test=yt, out=a.out,
                      callback=on_step, progress=True, set=a.set)
    model.close()
    (s0, t0), (s1, t1) = stamps[0], stamps[-1]
    print(json.dumps({"side": "python", "arrays_bytes": arrays, "rows": int(X.shape[0]),
                      "steps": s1, "callback_steps_per_s": (s1 - s0) / (t1 - t0) if s1 > s0 else None,
                      "numpy": np.__version__,
                      # numpy offers arrays of 4 MB and more to transparent huge pages (madvise),
                      # as dml does its own copy of the rows (data/dataset.c): the batch gather's
                      # TLB misses depend on it
                      "numpy_hugepage": bool(np.core.multiarray._get_madvise_hugepage())}))


def baseline_worker(a):
    import numpy  # noqa: F401
    if a.with_dml:
        import dml  # noqa: F401
    print(json.dumps({"side": "baseline", "with_dml": a.with_dml}))


# ---- the driver ----
class Runner:
    def __init__(self, args):
        self.args = args
        self.env = dict(os.environ)
        self.env["OPENBLAS_NUM_THREADS"] = str(args.threads)
        self.env["PYTHONPATH"] = os.path.join(args.root, "python")
        self.env["DML_LIB"] = args.lib

    def run(self, cmd):
        """Runs cmd in a fresh process: (its JSON lines, its stderr, its peak RSS in bytes from
        os.wait4's rusage, wall seconds). Stops the bench on failure."""
        out_f, err_f = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, env=self.env, cwd=self.args.root)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")
        lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        if p.returncode != 0:
            log(f"python_api: {' '.join(cmd)} failed (exit {p.returncode})\n{err[-3000:]}")
            raise SystemExit(1)
        return lines, err, usage.ru_maxrss * 1024, wall

    def worker(self, *args):
        return self.run([PYTHON, os.path.abspath(__file__), *map(str, args)])


def sets_args(sets):
    out = []
    for s in sets:
        out += ["--set", s]
    return out


def last_progress(err, what):
    m = PROGRESS.findall(err)
    if not m:
        log(f"python_api: no progress line from {what}\n{err[-2000:]}")
        raise SystemExit(1)
    step, total, loss, _lr, rate = m[-1]
    return {"step": int(step), "total": int(total), "loss": loss, "steps_per_s": float(rate)}


def train_model(r, q, work):
    """The encode row's model: configs/demo.yaml trained briefly (784 inputs), not timed."""
    out = os.path.join(work, "encode-model")
    r.run([r.args.dml, "train", CONFIG, "--out", out, "--set", f"train.steps={q['model_steps']}",
           "--set", "eval.pq=false", "--set", f"train.threads={r.args.threads}"])
    return os.path.join(out, "model.h5")


def encode_row(r, q, model):
    out = {"c": [], "python": []}
    common = ["--rows", q["rows"], "--repeats", q["repeats"], "--seed", SEED]
    for rnd in range(r.args.rounds):
        log(f"encode: round {rnd + 1}/{r.args.rounds}")
        out["c"].append(r.run([r.args.encode, model, *map(str, common)])[0][0])
        out["python"].append(r.worker("encode-worker", "--model", model, "--d-in", 784, *common)[0][0])
    return out


def train_sets(r, q):
    return [f"train.steps={q['train_steps']}", "train.eval_every=never",
            "train.checkpoint_every=never", f"train.threads={r.args.threads}"]


def train_row(r, q, work):
    """Both sides' final progress line (the same C code prints it); the Python side adds the
    rate between its first and last step callback."""
    out = {"cli": [], "python": []}
    sets = train_sets(r, q)
    for rnd in range(r.args.rounds):
        log(f"train: round {rnd + 1}/{r.args.rounds}")
        folder = os.path.join(work, f"train-cli-{rnd}")
        _, err, _, _ = r.run([r.args.dml, "train", CONFIG, "--out", folder, *sets_args(sets)])
        out["cli"].append(last_progress(err, "dml train"))
        lines, err, _, _ = r.worker("train-worker", "--root", r.args.root,
                                    *sets_args(sets + ["data.normalize=none"]))
        row = last_progress(err, "dml.train")
        row.update(lines[0])
        out["python"].append(row)
    return out


def memory_row(r, q, work):
    out = {"cli": [], "python": [], "numpy": [], "numpy_dml": []}
    sets = [f"train.threads={r.args.threads}"] + q["memory_sets"]
    for rnd in range(r.args.rounds):
        log(f"memory: round {rnd + 1}/{r.args.rounds}")
        _, _, rss, wall = r.run([r.args.dml, "train", CONFIG, "--out", os.path.join(work, f"mem-cli-{rnd}"),
                                 *sets_args(sets)])
        out["cli"].append({"rss": rss, "s": wall})
        lines, _, rss, wall = r.worker("train-worker", "--root", r.args.root,
                                       "--out", os.path.join(work, f"mem-py-{rnd}"),
                                       *sets_args(sets + ["data.normalize=none"]))
        out["python"].append({"rss": rss, "s": wall, "arrays": lines[0]["arrays_bytes"]})
        out["numpy"].append({"rss": r.worker("baseline-worker")[2]})
        out["numpy_dml"].append({"rss": r.worker("baseline-worker", "--with-dml")[2]})
    return out


# ---- the report ----
def versions(args):
    p = subprocess.run([PYTHON, "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                       text=True)
    return {"python": platform.python_version(), "dml": bench_run.dml_version(args.dml),
            "numpy": p.stdout.strip() or "?", "openblas": bench_run.openblas_config(),
            "cc": bench_run.cc_version()}


def thp():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def med(rows, key):
    return statistics.median([x[key] for x in rows])


def mib(b):
    return f"{b / 2**20:,.1f}"


def report(enc, tr, mem, args):
    """(table rows, validation rows, notes)."""
    rows, checks, notes = [], [], []
    if enc:
        c, p = med(enc["c"], "median_s"), med(enc["python"], "median_s")
        e0 = enc["c"][0]
        ratio = p / c
        rows.append((f"encode s, {e0['rows']:,} x {e0['d_in']} -> {e0['dim_out']} "
                     f"(median of {e0['repeats']} calls)", f"{p:.4f}", f"{c:.4f}", f"{ratio:.3f}x",
                     f"<= {ENCODE_TARGET:g}x", "met" if ratio <= ENCODE_TARGET else
                     f"missed by {100 * (ratio - ENCODE_TARGET) / ENCODE_TARGET:.1f}%"))
        notes.append("encode: python / C, round by round: " + ", ".join(
            f"{x['median_s'] / y['median_s']:.3f}x" for x, y in zip(enc["python"], enc["c"])))
        same = all(x["first"] == y["first"] and abs(x["sum"] - y["sum"]) <= 1e-6 * max(abs(y["sum"]), 1.0)
                   for x, y in zip(enc["python"], enc["c"]))
        checks.append(("encode: the same embeddings (first row's first values equal, sums within 1e-6)",
                       f"{enc['python'][0]['sum']:.6f}", f"{enc['c'][0]['sum']:.6f}", "yes" if same else "NO"))
    if tr:
        p, c = med(tr["python"], "steps_per_s"), med(tr["cli"], "steps_per_s")
        ratio = p / c
        rows.append((f"train steps/s, {CONFIG}, {tr['cli'][0]['total']} steps", f"{p:.1f}", f"{c:.1f}",
                     f"{ratio:.3f}x", f">= {TRAIN_TARGET:g}x", "met" if ratio >= TRAIN_TARGET else
                     f"missed by {100 * (TRAIN_TARGET - ratio) / TRAIN_TARGET:.1f}%"))
        cb = [x["callback_steps_per_s"] for x in tr["python"] if x.get("callback_steps_per_s")]
        if cb:
            notes.append(f"train: dml.train's rate between its first and last step callback (steps 2.."
                         f"{tr['python'][0]['steps']}): median {statistics.median(cb):.1f} steps/s")
        notes.append(f"train: numpy's madvise(MADV_HUGEPAGE) of large arrays (the rows dml.train "
                     f"gathers batches from): {'on' if tr['python'][0].get('numpy_hugepage') else 'OFF'}; "
                     f"the kernel's setting: {thp()}")
        notes.append("train: python / CLI steps/s, round by round: " + ", ".join(
            f"{x['steps_per_s'] / y['steps_per_s']:.3f}x" for x, y in zip(tr["python"], tr["cli"])))
        same = all(x["loss"] == y["loss"] for x, y in zip(tr["python"], tr["cli"]))
        checks.append((f"train: the loss printed at step {tr['cli'][0]['step']}", tr["python"][0]["loss"],
                       tr["cli"][0]["loss"], "yes" if same else "NO"))
    if mem:
        p, c = med(mem["python"], "rss"), med(mem["cli"], "rss")
        arrays = mem["python"][0]["arrays"]
        base, base_dml = med(mem["numpy"], "rss"), med(mem["numpy_dml"], "rss")
        ok = p <= c + arrays
        rows.append(("peak RSS MiB, demo.yaml on Fashion-MNIST (python <= CLI + arrays)", mib(p), mib(c),
                     f"{p / c:.2f}x", f"<= {mib(c + arrays)}", "met" if ok else
                     f"missed by {mib(p - c - arrays)} MiB"))
        rows.append(("  the caller's arrays MiB (X, y, X_test, y_test)", mib(arrays), "", "", "", ""))
        rows.append(("  python - CLI MiB", mib(p - c), "", "", "", ""))
        rows.append(("  baseline MiB: the interpreter with numpy imported / with dml too", mib(base),
                     mib(base_dml), "", "", ""))
        notes.append(f"memory: each side one fresh process a round, the run of {CONFIG} "
                     f"({'with ' + ', '.join(args.memory_sets) if args.memory_sets else 'as shipped'}), "
                     f"its folder written; CLI {med(mem['cli'], 's'):.0f} s, python "
                     f"{med(mem['python'], 's'):.0f} s of wall time (the python one includes reading "
                     f"the IDX files into numpy)")
    return rows, checks, notes


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


HOW = """- encode: `build/bench_encode MODEL --rows N` (include/dml.h alone: `dml_model_encode` of the
  N rows into one buffer allocated once) against `dml.Model(MODEL).encode(X)` (a new output array
  each call, as the API returns), X float32 C-contiguous (passed by pointer); the same rows (a
  splitmix64 stream, seed {seed}, values 0..255), the same model (`dml train {config}` briefly, 784
  inputs, not timed); one untimed call, then the median of the timed calls in each process.
- train: `dml train {config}` against `dml.train("{config}", X, y, X_test=..., y_test=...)` with
  Fashion-MNIST's IDX files read into numpy as float32 bytes / 255 and `data.normalize=none`
  (the numbers the CLI's `unit` gives its trainer: the same work, the losses must agree), both
  with `{sets}`. The figure on both sides is the steps/s dml's progress line prints at the last
  step (data/progress.c: steps / time from the training loop's start to that step's end; the
  Python side's per-step callback into Python is inside it). Validation, codebooks, evaluation
  and writing come after it and are not counted. The issue asks for the CLI's steps/s; the
  tolerance, 5%, is the encode row's.
- memory: peak RSS (`os.wait4`'s `ru_maxrss`) of `dml train {config}` against a Python process
  reading the IDX files into numpy and running `dml.train` on them (`out=` a folder, as the CLI
  writes one); the target: python <= CLI + the caller's arrays. The baselines: the same script's
  process importing numpy (and dml) and nothing else."""


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    w = sub.add_parser("encode-worker")
    w.add_argument("--model", required=True)
    w.add_argument("--d-in", type=int, required=True)
    w.add_argument("--rows", type=int, required=True)
    w.add_argument("--repeats", type=int, required=True)
    w.add_argument("--seed", type=int, required=True)
    w = sub.add_parser("train-worker")
    w.add_argument("--root", required=True)
    w.add_argument("--out")
    w.add_argument("--set", action="append", default=[])
    w = sub.add_parser("baseline-worker")
    w.add_argument("--with-dml", action="store_true")
    p.add_argument("--dml", default="build/dml", help="the dml CLI")
    p.add_argument("--encode", default="build/bench_encode", help="the C helper (bench/encode_api.c)")
    p.add_argument("--lib", default="build/libdml.so", help="the libdml.so the Python side loads")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--rows", type=int, default=100000, help="encode: rows (784 wide)")
    p.add_argument("--repeats", type=int, default=5, help="encode: timed calls in each process")
    p.add_argument("--steps", type=int, default=300, help="train: training steps")
    p.add_argument("--out", default=os.path.join(HERE, "python_api.md"))
    p.add_argument("--quick", action="store_true", help="tiny counts, one round: checks it all runs")
    p.add_argument("--parts", default="encode,train,memory",
                   help="comma-separated, of encode, train, memory (default: all)")
    p.add_argument("--root", default=os.path.dirname(HERE), help="the repository (paths are relative to it)")
    args = p.parse_args()
    if args.cmd == "encode-worker":
        return encode_worker(args)
    if args.cmd == "train-worker":
        return train_worker(args)
    if args.cmd == "baseline-worker":
        return baseline_worker(args)
    parts = args.parts.split(",")
    if not set(parts) <= {"encode", "train", "memory"}:
        p.error("--parts: of encode, train, memory")
    args.dml, args.encode, args.lib = (os.path.abspath(x) for x in (args.dml, args.encode, args.lib))
    if args.quick:
        args.rounds = 1
        q = {"model_steps": 2, "rows": 2000, "repeats": 1, "train_steps": 5,
             "memory_sets": ["train.steps=3", "eval.pq=false"]}
    else:
        q = {"model_steps": 50, "rows": args.rows, "repeats": args.repeats, "train_steps": args.steps,
             "memory_sets": []}
    args.memory_sets = q["memory_sets"]
    t_start = time.perf_counter()
    work = tempfile.mkdtemp(prefix="dml-pyapi-")
    enc = tr = mem = None
    try:
        r = Runner(args)
        if "encode" in parts:
            enc = encode_row(r, q, train_model(r, q, work))
        if "train" in parts:
            tr = train_row(r, q, work)
        if "memory" in parts:
            mem = memory_row(r, q, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows, checks, notes = report(enc, tr, mem, args)
    for c in checks:
        if c[3] != "yes":
            log(f"python_api: WARNING: {c[0]}: the two sides disagree ({c[1]} vs {c[2]}); their "
                f"times compare different work")
    cpu, cores = bench_run.machine()
    ver = versions(args)
    total = time.perf_counter() - t_start
    head = (f"dml {ver['dml']}: the Python package against the C side; {cpu}, {cores} cores; "
            f"{args.threads} threads; median of {args.rounds} rounds"
            f"{' (QUICK: smoke counts, not a measurement)' if args.quick else ''}")
    main_t = table(["row", "python", "C / CLI", "python / C", "target", "result"], rows)
    check_t = table(["check", "python", "C / CLI", "agree"], checks)
    print(f"\n{head}\n\n{main_t}\n\n{check_t}\n")
    for n in notes:
        print(f"- {n}")
    print(f"\ntotal {total:.0f} s")
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    how = HOW.format(seed=SEED, config=CONFIG, sets=", ".join(train_sets(r, q)))
    with open(args.out, "w") as f:
        f.write(f"# make bench: the Python API (issue #28)\n\n{date}. {head}.\n\n")
        f.write(f"- machine: {cpu}, {cores} cores ({platform.machine()}), {platform.platform()}\n")
        f.write(f"- versions: dml {ver['dml']}, Python {ver['python']}, numpy {ver['numpy']}, "
                f"OpenBLAS `{ver['openblas']}`, {ver['cc']}\n")
        f.write(f"- threads: OPENBLAS_NUM_THREADS={args.threads} in every process, "
                f"train.threads={args.threads} on both training sides\n")
        f.write(f"- the whole run took {total:.0f} s\n\n## What is measured\n\n{how}\n\n")
        f.write(f"## Results\n\n{main_t}\n\n## Validation\n\n{check_t}\n\n")
        if notes:
            f.write("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
