#!/usr/bin/python3
"""`make bench`: dml against PyTorch and FAISS, side by side, in one run (issue #7).

For every case the peer and dml run alternately, --rounds times (3 by default), each in a fresh
process that first probes the machine (one sgemm). A round where either side's probe is more than
SLOW_PROBE below the run's best is a slow-machine round: it is named in the notes and left out;
a row's ratio is the median of the other rounds' own ratios, and the row says how many they were. Prints the tables and writes
them to --out (bench/results.md) with the machine's CPU, core count, date and versions.

    /usr/bin/python3 bench/run.py --dml build/dml --bench build/bench_dml
    /usr/bin/python3 bench/run.py ... --quick --out /tmp/results.md   (a smoke run: tiny counts)
    /usr/bin/python3 bench/run.py ... --cases augment,gradcache        (those rows alone)

Threads are set deliberately: N = --threads (default: every core). dml: dml_set_threads(N) for
OpenBLAS and N search threads. PyTorch: OpenBLAS N threads, intra-op threads 1 and N both tried
in every round, the faster one counted. FAISS: OpenMP N threads, OpenBLAS N threads.
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

# Case 1 (and 2): each from a shipped config, so dml runs exactly what `dml train` would.
TRAIN_CASES = [
    ("triplet_hard", "configs/fmnist-triplet.yaml", ["loss.miner=hard"]),
    ("triplet_all", "configs/fmnist-triplet.yaml", []),
    ("contrastive", "configs/fmnist-contrastive.yaml", []),
    ("mnr", "configs/fmnist-mnr.yaml", []),
    ("autoencoder", "configs/fmnist-autoencoder.yaml", []),
    ("joint_pq", "configs/fmnist-triplet.yaml",
     ["loss.miner=hard", "loss.quantization={weight: 1.0, warmup_epochs: 0}", "pq.m=4", "pq.k=256"]),
]
# data.test= : no test set, the config's (784 wide) would not match the small rows (64 wide).
SMALL_SETS = ["data.test=", "data.normalize=none", "data.val_fraction=0", "model.hidden=[128, 64]",
              "model.dim=32", "loss.miner=hard", "sampler.m=4", "train.batch_size=64"]
# Issue #30's targets.
TRAIN_TARGET = 2.0      # dml samples/s over PyTorch's best, every standard case
CEILING_TARGET = 0.85   # fraction of the GEMM ceiling, every standard case
BATCH_ALL_TARGET = 40.0  # triplet_all (batch-all mining) over PyTorch's
SMALL_TARGET = 10.0     # PyTorch's us/step over dml's, the small model
# Issue #15: dml against itself on the MNR step. fmnist-simclr.yaml's augmentation:
MNR = "configs/fmnist-mnr.yaml"
AUGMENT = (
    "data.augment={shift: 3, rotate: 10, scale: 0.15, flip: 0.5, cutout: 10, brightness: 0.6, "
    "contrast: 0.6, noise: 0.1, dropout: 0.1}")
AUGMENT_TARGET = 1.15  # augmented step time over the plain one, at most
GC_BATCH, GC_CHUNK = 4096, 256
GC_TARGET = 1.3        # one GradCache step of GC_BATCH over GC_BATCH / GC_CHUNK plain steps, at most
CASES = ["train", "pq", "eval", "memory", "augment", "gradcache"]  # --cases
ADC_TARGET = 1.5  # issue #30: FAISS IndexPQ's search time over dml's, at 1 and at N threads
# Issue #30: every process probes the machine as it starts (one sgemm, bench/bench.h). A round
# in which either side's probe is more than SLOW_PROBE below the best probe of the run saw a
# slower machine than the others (another job, a throttled core): it is reported as such and
# left out of the row's figures, which are taken over the rounds where both sides saw the same
# machine.
SLOW_PROBE = 0.15


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Runner:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.env = dict(os.environ)
        self.env["OPENBLAS_NUM_THREADS"] = str(args.threads)  # OpenBLAS's pool, every process
        self.wall = {}

    def run(self, cmd, label):
        """Runs cmd; returns its last JSON line (stdout). Stops the bench on failure."""
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=self.env, cwd=self.args.root)
        self.wall[label] = self.wall.get(label, 0.0) + time.perf_counter() - t0
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            log(f"bench: {' '.join(cmd)} failed (exit {p.returncode})\n{p.stderr[-3000:]}")
            raise SystemExit(1)
        return [json.loads(ln) for ln in lines]

    def dml(self, *args, label="dml"):
        return self.run([self.args.bench, *map(str, args)], label)

    def peer(self, script, *args, label="peer"):
        return self.run([PYTHON, os.path.join(HERE, script), *map(str, args)], label)


def sets_args(sets):
    out = []
    for s in sets:
        out += ["--set", s]
    return out


def median(values):
    return statistics.median(values) if values else float("nan")


# ---- preparation and validation ----
def prepare_small(r):
    """The small model's data (random rows, 16 classes), written once for both sides."""
    import numpy as np
    rng = np.random.default_rng(0)
    small = os.path.join(r.work, "small.npy")
    np.save(small, rng.standard_normal((4096, 64)).astype(np.float32))
    np.save(os.path.join(r.work, "small.labels.npy"), rng.integers(0, 16, 4096).astype(np.int32))
    return small


def prepare_embeddings(r, q):
    """The search cases' embeddings (a briefly trained dml encoder over every Fashion-MNIST row),
    written once for both sides."""
    emb = os.path.join(r.work, "emb")
    info = r.dml("embed", "configs/fmnist-triplet.yaml", emb, "--steps", q["embed_steps"],
                 "--threads", r.args.threads, label="prepare")[0]
    log(f"embeddings: {info['n_train']} + {info['n_test']} rows of {info['dim']} from a dml encoder "
        f"trained {info['steps']} steps (loss {info['first_loss']:.3f} -> {info['last_loss']:.3f})")
    return os.path.join(emb, "train_emb.npy"), os.path.join(emb, "test_emb.npy")


def validate(r, cases):
    """Before any timing: dml's first step (its weights and batch dumped) recomputed by the
    PyTorch peer: the loss and the gradient norm must agree."""
    dumps = []
    for name, config, sets in cases:
        folder = os.path.join(r.work, "dump", name)
        r.dml("train", config, *sets_args(sets), "--steps", 0, "--warmup", 1, "--threads",
              r.args.threads, "--dump", folder, "--name", name, label="validate")
        dumps.append(folder)
    rows = r.peer("torch_peer.py", "check", *dumps, label="validate")
    for row in rows:
        row["ok"] = row["loss_rel_err"] < 1e-4 and row["grad_norm_rel_err"] < 1e-3
        log(f"check {row['case']}: loss dml {row['dml_loss']:.6f} torch {row['torch_loss']:.6f}, "
            f"grad norm dml {row['dml_grad_norm']:.6f} torch {row['torch_grad_norm']:.6f}"
            f"{'' if row['ok'] else '  MISMATCH'}")
    return rows


# ---- cases ----
def train_cases(r, q, cases):
    out = {}
    for name, config, sets in cases:
        spec = os.path.join(r.work, "dump", name, "manifest.json")
        slow = name == "triplet_all"  # PyTorch's B x B x B mask: fewer of its steps do
        # A small-model step takes ~0.1 ms: more of them, so the timed window is not a few ms.
        steps = q["steps_small"] if name.startswith("small") else q["steps"]
        steps_t = q["steps_torch_slow"] if slow else steps
        dml_rounds, peer_rounds = [], []
        for rnd in range(r.args.rounds):
            log(f"{name}: round {rnd + 1}/{r.args.rounds}")
            peer_rounds.append(r.peer("torch_peer.py", "train", "--spec", spec, "--steps", steps_t,
                                      "--warmup", q["warmup"], "--intra", f"1,{r.args.threads}",
                                      "--name", name, label=name)[0])
            dml_rounds.append(r.dml("train", config, *sets_args(sets), "--steps", steps,
                                    "--warmup", q["warmup"], "--threads", r.args.threads,
                                    "--reps", q["gemm_reps"], "--name", name, label=name)[0])
        out[name] = {"dml": dml_rounds, "peer": peer_rounds}
    return out


def pq_cases(r, q, train_emb, test_emb):
    out = {}
    for name, data, extra in (("pq_embeddings", train_emb, ["--queries", test_emb]),
                              ("pq_pixels", "fashion-mnist:train", [])):
        common = [data, *extra, "--m", 8, "--nbits", 8, "--iters", q["pq_iters"], "--k", 100,
                  "--threads", r.args.threads, "--name", name]
        dml_rounds, peer_rounds, default_rounds = [], [], []
        for rnd in range(r.args.rounds):
            log(f"{name}: round {rnd + 1}/{r.args.rounds}")
            peer_rounds.append(r.peer("faiss_peer.py", "pq", *common, label=name)[0])
            # Like for like (FAISS's random-row init), then as `dml train` fits its codebooks.
            dml_rounds.append(r.dml("pq", *common, "--init", "random", label=name)[0])
            default_rounds.append(r.dml("pq", *common, "--init", "plusplus", label=name)[0])
        out[name] = {"dml": dml_rounds, "peer": peer_rounds, "dml_default": default_rounds}
    return out


def eval_case(r, train_emb, test_emb):
    dml_rounds, peer_rounds = [], []
    intra = f"1,{r.args.threads}"
    for rnd in range(r.args.rounds):
        log(f"exact eval: round {rnd + 1}/{r.args.rounds}")
        peer_rounds.append(r.peer("torch_peer.py", "eval", "--db", train_emb, "--queries", test_emb,
                                  "--k", 100, "--intra", intra, "--name", "eval", label="eval")[0])
        # Both intra-op counts are tried in the first round; later rounds run the winners only
        # (each PyTorch pass over 10,000 x 60,000 takes seconds).
        first = peer_rounds[0]
        intra = ",".join(sorted({str(first["map_intra_threads"]), str(first["knn_intra_threads"])}))
        dml_rounds.append(r.dml("eval", train_emb, test_emb, "--k", 100, "--threads", r.args.threads,
                                "--name", "eval", label="eval")[0])
    return {"dml": dml_rounds, "peer": peer_rounds}


def peak_rss(r, cmd):
    """Peak resident memory (MiB) and wall seconds of cmd: /usr/bin/time -v when installed
    (Debian's package `time`), else VmHWM polled from /proc."""
    t0 = time.perf_counter()
    if os.path.exists("/usr/bin/time"):
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=r.env,
                           cwd=r.args.root)
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
        kb = int(m.group(1)) if m else 0
    else:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=r.env,
                             cwd=r.args.root)
        kb = 0
        while p.poll() is None:
            try:
                with open(f"/proc/{p.pid}/status") as f:
                    kb = max([kb] + [int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")])
            except OSError:
                pass
            time.sleep(0.02)
        p.stdout.read(), p.stderr.read()
    if p.returncode != 0:
        log(f"bench: {' '.join(cmd)} failed (exit {p.returncode})")
        raise SystemExit(1)
    return kb / 1024.0, time.perf_counter() - t0


def rss_case(r, q):
    out_dir = os.path.join(r.work, "demo-run")
    dml_cmd = [r.args.dml, "train", "configs/demo.yaml", "--out", out_dir, *sets_args(q["demo_sets"])]
    torch_cmd = [PYTHON, os.path.join(HERE, "torch_peer.py"), "demo", "configs/demo.yaml",
                 "--intra", str(r.args.threads), "--max-steps", q["demo_torch_steps"]]
    log("peak memory: dml train configs/demo.yaml")
    dml_mb, dml_s = peak_rss(r, dml_cmd)
    log("peak memory: the PyTorch script of configs/demo.yaml")
    peer_mb, peer_s = peak_rss(r, torch_cmd)
    r.wall["peak memory"] = dml_s + peer_s
    return {"dml_mb": dml_mb, "dml_s": dml_s, "peer_mb": peer_mb, "peer_s": peer_s,
            "peer_steps": q["demo_torch_steps"],
            "dml_sets": "".join(f" --set {x}" for x in q["demo_sets"])}


def mnr_step(r, name, sets, steps, warmup, reps=0):
    """One bench_dml train process on fmnist-mnr.yaml; its JSON (max_rss_mb: its peak before
    the GEMM replay)."""
    return r.dml("train", MNR, *sets_args(sets), "--steps", steps, "--warmup", warmup, "--reps", reps,
                 "--threads", r.args.threads, "--name", name, label=name.split("_")[0])[0]


def augment_case(r, q):
    """The MNR step with and without fmnist-simclr's augmentation, alternated. The augmentation
    is done in the batch gather, which is inside the timed step."""
    out = {"plain": [], "augment": []}
    for rnd in range(r.args.rounds):
        log(f"augment: round {rnd + 1}/{r.args.rounds}")
        out["plain"].append(mnr_step(r, "augment_none", [], q["steps"], q["warmup"]))
        out["augment"].append(mnr_step(r, "augment_simclr", [AUGMENT], q["steps"], q["warmup"]))
    return out


def gradcache_case(r, q):
    """MNR at batch GC_BATCH by GradCache chunks of GC_CHUNK and in one shot, against plain steps
    of GC_CHUNK, alternated; each with its GEMM ceiling, to tell the GEMMs' share from the
    rest. The large steps are slow (~1 s): a few of them, one warm-up."""
    big = [f"train.batch_size={GC_BATCH}"]
    out = {"plain": [], "gradcache": [], "oneshot": []}
    for rnd in range(r.args.rounds):
        log(f"gradcache: round {rnd + 1}/{r.args.rounds}")
        out["plain"].append(mnr_step(r, "gradcache_plain", [f"train.batch_size={GC_CHUNK}"],
                                     q["steps"], q["warmup"], q["gemm_reps"]))
        out["gradcache"].append(mnr_step(r, "gradcache_chunked", big + [f"train.chunk_size={GC_CHUNK}"],
                                         q["steps_big"], 1, q["reps_big"]))
        out["oneshot"].append(mnr_step(r, "gradcache_oneshot", big + ["train.chunk_size=0"],
                                       q["steps_big"], 1, q["reps_big"]))
    return out


# ---- the report ----
def alike_rounds(probes, slack=SLOW_PROBE):
    """probes: one (dml, peer) pair of probe GFLOP/s a round. Returns the rounds (indices) where
    neither process's probe is more than slack below the best probe of the run, and the others:
    the slow-machine rounds."""
    best = max((max(p) for p in probes), default=0.0)
    alike = [i for i, p in enumerate(probes) if min(p) >= (1.0 - slack) * best]
    return alike, [i for i in range(len(probes)) if i not in alike]


def paired(dml_runs, peer_runs, key, faster, peer_key=None):
    """One row's figures over the rounds where both sides saw the same machine: each side's
    median of key, and the median of the rounds' own ratios (each round's two processes ran
    seconds apart), "dml is N times the peer": dml / peer when faster is "higher" (throughput),
    peer / dml for times. With no such round, every round is taken, and the label says so."""
    probes = [(x["probe_gflops"], y["probe_gflops"]) for x, y in zip(dml_runs, peer_runs)]
    alike, _ = alike_rounds(probes)
    m = len(probes)
    label = f"{len(alike)} of {m} rounds"
    if not alike:
        alike, label = list(range(m)), f"0 of {m} rounds alike: all {m} taken"
    d = [dml_runs[i][key] for i in alike]
    p = [peer_runs[i][peer_key or key] for i in alike]
    ratios = [a / b if faster == "higher" else b / a for a, b in zip(d, p)]
    return {"dml": median(d), "peer": median(p), "ratio": median(ratios), "rounds": label}


def probe_note(name, dml_runs, peer_runs):
    """The rounds' probes and which were slow-machine rounds, for the notes."""
    probes = [(x["probe_gflops"], y["probe_gflops"]) for x, y in zip(dml_runs, peer_runs)]
    alike, slow = alike_rounds(probes)
    best = max(max(p) for p in probes)
    text = (f"{name}: machine probe GFLOP/s (dml / peer process), round by round: "
            f"{', '.join(f'{d:.0f} / {p:.0f}' for d, p in probes)}; ")
    if slow:
        text += (f"slow-machine rounds (a probe more than {100 * SLOW_PROBE:.0f}% below the run's "
                 f"best, {best:.0f}): {', '.join(str(i + 1) for i in slow)}; ")
    return text + f"figures over {len(alike)} of {len(probes)} rounds"


def machine():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    return cpu, os.cpu_count()


def dml_version(dml):
    p = subprocess.run([dml, "--version"], capture_output=True, text=True)
    return (p.stdout.strip() or "?").replace("dml ", "")


def openblas_config():
    try:
        import ctypes
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        return lib.openblas_get_config().decode()
    except OSError:
        return "?"


def cc_version():
    cc = shutil.which(os.environ.get("CC", "cc")) or "cc"
    p = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return (p.stdout.splitlines() or ["?"])[0]


def versions(args):
    out = {"dml": dml_version(args.dml)}
    p = subprocess.run([PYTHON, "-c", "import torch, faiss, numpy; print(torch.__version__, "
                        "faiss.__version__, numpy.__version__)"], capture_output=True, text=True)
    parts = p.stdout.split() + ["?"] * 3
    out["torch"], out["faiss"], out["numpy"] = parts[:3]
    out["openblas"], out["cc"] = openblas_config(), cc_version()
    return out


def fmt(v, digits=3):
    if v is None or v != v:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


class Table:
    def __init__(self, header):
        self.header = header
        self.rows = []

    def add(self, *cells):
        self.rows.append([str(c) for c in cells])

    def markdown(self):
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in self.rows])

    def text(self):
        rows = [self.header] + self.rows
        w = [max(len(r[i]) for r in rows) for i in range(len(self.header))]
        return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(row)) for row in rows)


def verdict(ratio, target):
    if ratio != ratio:
        return "n/a"
    if ratio >= target:
        return "met"
    return f"missed by {100.0 * (target - ratio) / target:.0f}%"


def report(r, checks, train, pq, ev, rss):
    main = Table(["case", "dml", "peer", "dml vs peer", "rounds", "target", "result"])
    ceiling = Table(["case", "GEMM GFLOP/step", "GEMM ceiling GFLOP/s", "dml step ms",
                     "dml % of ceiling", "peer step ms", "peer % of ceiling", "dml time outside GEMM",
                     "parameter passes alone", "only them outside GEMM: % of ceiling, vs peer"])
    notes = []
    for name, res in train.items():
        row = paired(res["dml"], res["peer"], "samples_per_s", "higher")
        d, p = row["dml"], row["peer"]
        intra = [x["intra_threads"] for x in res["peer"]]
        small = name.startswith("small")
        batch = res["dml"][0]["batch"]
        if small:
            du, pu = 1e6 * batch / d, 1e6 * batch / p
            main.add(f"{name}: us/step (batch {batch})", fmt(du), fmt(pu), f"{row['ratio']:.2f}x",
                     row["rounds"], f">= {SMALL_TARGET:g}x", verdict(row["ratio"], SMALL_TARGET))
        else:
            want = BATCH_ALL_TARGET if name == "triplet_all" else TRAIN_TARGET
            main.add(f"train {name}: samples/s", fmt(d), fmt(p), f"{row['ratio']:.2f}x", row["rounds"],
                     f">= {want:g}x", verdict(row["ratio"], want))
        d, p = (median([x["samples_per_s"] for x in res[side]]) for side in ("dml", "peer"))
        gemm_s = median([x["gemm"]["seconds_per_step"] for x in res["dml"]])
        flops = res["dml"][0]["gemm"]["flops_per_step"]
        passes_s = median([x["parameter_passes"]["seconds_per_step"] for x in res["dml"]])
        d_step, p_step = batch / d, batch / p
        frac = gemm_s / d_step
        target = f" (target {100 * CEILING_TARGET:.0f}%: {verdict(frac, CEILING_TARGET)})" \
            if not small and name != "triplet_all" else ""
        ceiling.add(name, f"{flops / 1e9:.3f}", fmt(flops / gemm_s / 1e9), f"{1e3 * d_step:.2f}",
                    f"{100 * frac:.0f}%{target}", f"{1e3 * p_step:.2f}", f"{100 * gemm_s / p_step:.0f}%",
                    f"{1e3 * (d_step - gemm_s):.2f} ms ({100 * (1 - frac):.0f}%)",
                    f"{1e3 * passes_s:.2f} ms",
                    f"{100 * gemm_s / (gemm_s + passes_s):.0f}%, {p_step / (gemm_s + passes_s):.2f}x")
        notes.append(f"{name}: PyTorch's faster intra-op thread count, round by round: {intra}")
        # Rounds alternate the two sides, so a round's ratio compares runs made seconds apart:
        # their spread shows how much the machine's other load moved the medians.
        ratios = [x["samples_per_s"] / y["samples_per_s"] for x, y in zip(res["dml"], res["peer"])]
        notes.append(f"{name}: dml vs peer, round by round: {', '.join(f'{q:.2f}x' for q in ratios)}")
        # The same process's GEMM replay: what the machine's two cores gave at this case's
        # shapes in each round, so a slow round shows as the machine's, or as dml's own.
        rates = [x["gemm"]["flops_per_step"] / x["gemm"]["seconds_per_step"] / 1e9 for x in res["dml"]]
        notes.append(f"{name}: GEMM ceiling GFLOP/s, round by round: "
                     f"{', '.join(f'{q:.0f}' for q in rates)}")
        notes.append(probe_note(name, res["dml"], res["peer"]))
    quality = Table(["case", "dml MSE", "FAISS MSE", "dml / FAISS", "train points", "init"])
    for name, res in pq.items():
        x0 = res["dml"][0]
        label = f"{x0['n']:,} x {x0['d']}"
        rows = [(f"{name}: PQ train s (M={x0['m']}, K={1 << x0['nbits']}, {x0['iters']} it, {label})",
                 paired(res["dml"], res["peer"], "train_s", "lower"), 1.0),
                (f"{name}: PQ train s, dml's k-means++ init (as `dml train`)",
                 paired(res["dml_default"], res["peer"], "train_s", "lower"), 1.0),
                (f"{name}: PQ encode rows/s", paired(res["dml"], res["peer"], "encode_rows_per_s", "higher"),
                 None)]
        if "adc_s" in x0:
            rows += [(f"{name}: ADC search s ({x0['queries']:,} q x {x0['n']:,} codes, top-{x0['k']}, "
                      f"{x0['threads']} threads)", paired(res["dml"], res["peer"], "adc_s", "lower"),
                      ADC_TARGET),
                     (f"{name}: ADC search s, 1 thread ({x0['adc_1thread_queries']:,} q, dml_pq_search)",
                      paired(res["dml"], res["peer"], "adc_1thread_s", "lower"), ADC_TARGET)]
        for what, row, target in rows:
            main.add(what, fmt(row["dml"]), fmt(row["peer"]), f"{row['ratio']:.2f}x", row["rounds"],
                     f">= {target:g}x" if target else "", verdict(row["ratio"], target) if target else "")
        notes.append(probe_note(name, res["dml"], res["peer"]))
        notes.append(probe_note(f"{name} (dml's k-means++ init)", res["dml_default"], res["peer"]))
        fmse = median([x["mse"] for x in res["peer"]])
        for key, init in (("dml", "random rows both"),
                          ("dml_default", "dml k-means++, FAISS random rows (each one's default)")):
            dmse = median([x["mse"] for x in res[key]])
            quality.add(name, f"{dmse:.6g}", f"{fmse:.6g}", f"{dmse / fmse:.4f}"
                        f" ({'equal or lower' if dmse <= fmse * (1 + 1e-6) else 'higher'})",
                        f"{x0['train_points']:,} both", init)
    if ev is not None:
        e0 = ev["dml"][0]
        for key, what in (("map_at_r_s", f"map_at_r s ({e0['n_queries']:,} x {e0['d']}, protocol 1)"),
                          ("knn_s", f"exact top-{e0['k']} s ({e0['n_queries']:,} q x {e0['n_db']:,})")):
            row = paired(ev["dml"], ev["peer"], key, "lower")
            main.add(what, fmt(row["dml"]), fmt(row["peer"]), f"{row['ratio']:.2f}x", row["rounds"], "", "")
        notes.append(probe_note("exact eval", ev["dml"], ev["peer"]))
    if rss is not None:
        rss_report(rss, main, notes)
    valid = Table(["check", "dml", "peer", "agree"])
    for c in checks:
        valid.add(f"first-step loss, {c['case']} (same weights, same batch)", f"{c['dml_loss']:.6f}",
                  f"{c['torch_loss']:.6f}", "yes" if c["ok"] else "NO")
        valid.add(f"first-step gradient norm, {c['case']}", f"{c['dml_grad_norm']:.6f}",
                  f"{c['torch_grad_norm']:.6f}", "yes" if c["ok"] else "NO")
    for name, res in train.items():
        # Each side's own batches: the loss falls on both, not to the same values.
        # A mean over the active triplets only (mean_nonzero) need not fall as easy ones drop out.
        d0, p0 = res["dml"][0], res["peer"][0]
        finite = d0["finite"] and p0["finite"]
        falling = d0["loss_last"] < d0["loss_first"] and p0["loss_last"] < p0["loss_first"]
        nonzero = d0["spec"].get("reduction") == "mean_nonzero" and d0["loss"].startswith("triplet")
        verdict_text = "NOT finite" if not finite else "finite, falling" if falling else \
            "finite (mean over active triplets)" if nonzero else "finite, NOT falling"
        valid.add(f"loss, mean of the first -> last 5 steps, {name}",
                  f"{d0['loss_first']:.4f} -> {d0['loss_last']:.4f}",
                  f"{p0['loss_first']:.4f} -> {p0['loss_last']:.4f}", verdict_text)
    if ev is not None:
        eval_checks(ev, valid)
    return main, ceiling, quality, valid, notes


def rss_report(rss, main, notes):
    main.add("peak RSS MiB, `dml train configs/demo.yaml` vs the PyTorch script", fmt(rss["dml_mb"]),
             fmt(rss["peer_mb"]), f"{rss['peer_mb'] / rss['dml_mb']:.2f}x less", "1 run", "", "")
    notes.append(f"peak RSS: the `dml train configs/demo.yaml{rss['dml_sets']}` run took {rss['dml_s']:.0f} s (data, "
                 f"training, validation, codebooks, final evaluation, outputs); the PyTorch script ran "
                 f"the same set-up, " + ("every training step" if rss["peer_steps"] == "0" else
                 f"the first {rss['peer_steps']} training steps (its peak is its B x B x B batch-all "
                 f"mask, reached at the first step; --full-demo runs them all)") +
                 f", the validation and the final test metrics in {rss['peer_s']:.0f} s, without a "
                 f"product quantizer")


def eval_checks(ev, valid):
    dmap = median([x["map_at_r"] for x in ev["dml"]])
    pmap = median([x["map_at_r"] for x in ev["peer"]])
    valid.add("map_at_r of the test embeddings", f"{dmap:.6f}", f"{pmap:.6f}",
              "yes" if abs(dmap - pmap) < 1e-3 else "NO")
    dk = median([x["kth_dist_mean"] for x in ev["dml"]])
    pk = median([x["kth_dist_mean"] for x in ev["peer"]])
    valid.add("mean 100th-neighbour squared distance", f"{dk:.6f}", f"{pk:.6f}",
              "yes" if abs(dk - pk) <= 1e-4 * max(abs(pk), 1e-12) + 1e-6 else "NO")


def verdict_at_most(ratio, target):
    return "met" if ratio <= target else f"missed by {100.0 * (ratio - target) / target:.0f}%"


def step_s(runs):
    return median([x["seconds"] / x["steps"] for x in runs])


def peak_mb(runs):
    return median([x["max_rss_mb"] for x in runs])


def by_round(runs, base, k=1):
    """Each round's ratio, its two processes seconds apart: the spread the machine's load gave."""
    return ", ".join(f"{step_s([x]) / (k * step_s([y])):.2f}x" for x, y in zip(runs, base))


def self_report(aug, gc, notes):
    """Issue #15's rows: dml's step against dml's step, ratios of the per-side medians."""
    own = Table(["case", "dml", "baseline", "ratio", "target", "result"])
    where = Table([f"{GC_BATCH} samples as", "GEMM GFLOP", "GEMM s at the ceiling", "step s",
                   "outside GEMM s", "peak RSS MiB"])
    if aug:
        a, p = step_s(aug["augment"]), step_s(aug["plain"])
        b = aug["plain"][0]["batch"]
        own.add(f"augment: MNR step ms (batch {b} pairs), fmnist-simclr's data.augment vs none",
                f"{1e3 * a:.2f}", f"{1e3 * p:.2f}", f"{a / p:.2f}x", f"<= {AUGMENT_TARGET:g}x",
                verdict_at_most(a / p, AUGMENT_TARGET))
        notes.append(f"augment: augmented / plain step, round by round: "
                     f"{by_round(aug['augment'], aug['plain'])}")
    if gc:
        k = GC_BATCH // GC_CHUNK
        plain, chunked, one = step_s(gc["plain"]), step_s(gc["gradcache"]), step_s(gc["oneshot"])
        ratio = chunked / (k * plain)
        own.add(f"gradcache: MNR step ms, batch {GC_BATCH} in chunks of {GC_CHUNK} vs {k} steps of "
                f"batch {GC_CHUNK}", f"{1e3 * chunked:.1f}", f"{1e3 * k * plain:.1f}", f"{ratio:.2f}x",
                f"<= {GC_TARGET:g}x", verdict_at_most(ratio, GC_TARGET))
        own.add(f"gradcache: MNR step ms, batch {GC_BATCH} in one shot vs {k} steps of batch {GC_CHUNK}",
                f"{1e3 * one:.1f}", f"{1e3 * k * plain:.1f}", f"{one / (k * plain):.2f}x", "", "")
        own.add(f"gradcache: peak RSS MiB, batch {GC_BATCH} in chunks of {GC_CHUNK} vs in one shot",
                fmt(peak_mb(gc["gradcache"])), fmt(peak_mb(gc["oneshot"])),
                f"{peak_mb(gc['gradcache']) / peak_mb(gc['oneshot']):.2f}x", "", "")
        for label, runs, times in ((f"{k} steps of {GC_CHUNK}", gc["plain"], k),
                                   ("one step in one shot", gc["oneshot"], 1),
                                   (f"one step in chunks of {GC_CHUNK}", gc["gradcache"], 1)):
            flops = times * runs[0]["gemm"]["flops_per_step"]
            gemm_s = times * median([x["gemm"]["seconds_per_step"] for x in runs])
            s = times * step_s(runs)
            where.add(label, f"{flops / 1e9:.1f}", f"{gemm_s:.3f}", f"{s:.3f}", f"{s - gemm_s:.3f}",
                      fmt(peak_mb(runs)))
        notes.append(f"gradcache: chunked / {k} x plain, round by round: "
                     f"{by_round(gc['gradcache'], gc['plain'], k)}; one shot / {k} x plain: "
                     f"{by_round(gc['oneshot'], gc['plain'], k)}")
    return own, where


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dml", default="build/dml", help="the dml CLI (case 5)")
    p.add_argument("--bench", default="build/bench_dml", help="the bench program (bench/bench_dml.c)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--out", default=os.path.join(HERE, "results.md"))
    p.add_argument("--quick", action="store_true", help="tiny counts, one round: checks it all runs")
    p.add_argument("--full-demo", action="store_true",
                   help="case 5: run every step of the PyTorch demo script (minutes), not the first 50")
    p.add_argument("--root", default=os.path.dirname(HERE), help="the repository (paths are relative to it)")
    p.add_argument("--cases", default=",".join(CASES),
                   help=f"comma-separated, of {', '.join(CASES)} (default: all); only those rows are written")
    args = p.parse_args()
    cases = args.cases.split(",")
    if not set(cases) <= set(CASES):
        p.error(f"--cases: unknown {', '.join(sorted(set(cases) - set(CASES)))}; known: {', '.join(CASES)}")
    args.dml, args.bench = os.path.abspath(args.dml), os.path.abspath(args.bench)
    if args.quick:
        args.rounds = 1
        q = {"steps": 3, "steps_small": 3, "steps_torch_slow": 2, "warmup": 1, "gemm_reps": 2, "pq_iters": 1,
             "embed_steps": 2, "demo_sets": ["train.steps=3", "eval.pq=false"],
             "demo_torch_steps": "3", "steps_big": 1, "reps_big": 1}
    else:
        q = {"steps": 40, "steps_small": 1000, "steps_torch_slow": 15, "warmup": 5, "gemm_reps": 20, "pq_iters": 25,
             "embed_steps": 100, "demo_sets": [], "demo_torch_steps": "0" if args.full_demo else "50",
             "steps_big": 3, "reps_big": 3}
    t_start = time.perf_counter()
    work = tempfile.mkdtemp(prefix="dml-bench-")
    try:
        r = Runner(args, work)
        checks, train, pq, ev, rss, aug, gc = [], {}, {}, None, None, None, None
        if "pq" in cases or "eval" in cases:
            train_emb, test_emb = prepare_embeddings(r, q)
        if "train" in cases:
            train_list = TRAIN_CASES + [("small_triplet_hard", "configs/fmnist-triplet.yaml",
                                         [f"data.train={prepare_small(r)}"] + SMALL_SETS)]
            checks = validate(r, train_list)
            if not all(c["ok"] for c in checks):
                log("bench: dml and the PyTorch peer disagree on a first step; timing them would "
                    "compare different work")
                raise SystemExit(1)
            train = train_cases(r, q, train_list)
        if "pq" in cases:
            pq = pq_cases(r, q, train_emb, test_emb)
        if "eval" in cases:
            ev = eval_case(r, train_emb, test_emb)
        if "memory" in cases:
            rss = rss_case(r, q)
        if "augment" in cases:
            aug = augment_case(r, q)
        if "gradcache" in cases:
            gc = gradcache_case(r, q)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    main_t, ceil_t, qual_t, valid_t, notes = report(r, checks, train, pq, ev, rss)
    own_t, where_t = self_report(aug, gc, notes)
    cpu, cores = machine()
    ver = versions(args)
    total = time.perf_counter() - t_start
    head = (f"dml {ver['dml']} against PyTorch {ver['torch']} and FAISS {ver['faiss']}; "
            f"{cpu}, {cores} cores; {args.threads} threads; median of {args.rounds} rounds"
            f"{' (QUICK: smoke counts, not a measurement)' if args.quick else ''}")
    # (printed title, results.md title, its introduction, table): those with rows, as --cases chose.
    sections = [s for s in (
        ("Results", "Results", "Ratios read \"dml is N times the peer\" (throughput over throughput, "
         "or the peer's time over dml's): the median of the rounds' own ratios, over the rounds where "
         f"both sides saw the same machine (neither process's start-up probe more than "
         f"{100 * SLOW_PROBE:.0f}% below the run's best; `rounds` says how many, the notes which were "
         "slow); dml and peer: each side's median over those rounds.", main_t),
        ("dml against itself (issue #15)", "dml against itself (issue #15)",
         "Step time over step time, each side a fresh `bench_dml train` process, alternated round by "
         "round; the ratio of the two medians, which the target bounds from above.", own_t),
        ("GradCache: where the time goes", "GradCache: where the time goes",
         f"{GC_BATCH} samples of the MNR step three ways. GEMM: the step's `dml_gemm` calls replayed "
         "at their shapes (as for the ceiling below); outside GEMM: the rest of the step (the batch "
         "gather, the loss's element-wise passes over its [B, B] scores on one thread, Adam). Peak "
         "RSS: the process's, data and model included, before the replay. A negative time outside GEMM: "
         "the replay, run after the steps, found the machine slower than they did.", where_t),
        ("Fraction of the GEMM ceiling", "Fraction of the GEMM ceiling",
         "The ceiling: the same step's GEMM calls (every `dml_gemm` the step makes, noted by wrapping "
         "it) replayed through `dml_gemm` in the same run, median of 20 replays: blocks of rows or "
         "columns on dml's threads, one single-threaded `cblas_sgemm` each (about as fast as "
         "OpenBLAS's own threads at these shapes). % of ceiling = GEMM time at those shapes / step "
         "time. Parameter passes alone: the gradient norm, the optimizer step and the zeroing over "
         "all the parameters, as the step does them, timed back to back after the run (median of 20, "
         "data as warm as it gets): a floor for them inside a step; the last column is what a step "
         "would reach if nothing else ran outside GEMM (the batch gather, the layers' and the loss's "
         "passes) and its products ran at the replay's rate: its fraction of the ceiling, and the "
         "peer's step over it.", ceil_t),
        ("PQ quality (same data, same iterations)", "PQ quality", "", qual_t),
        ("Validation", "Validation (before timing)", "", valid_t)) if s[3].rows]
    print("\n" + head + "\n")
    for title, _, _, t in sections:
        print(f"{title}\n{t.text()}\n")
    print(f"total {total:.0f} s; wall time by part: " +
          ", ".join(f"{k} {v:.0f} s" for k, v in r.wall.items()))
    date = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    with open(args.out, "w") as f:
        f.write(f"# make bench results\n\n{date}. {head}.\n\n")
        f.write(f"- machine: {cpu}, {cores} cores ({platform.machine()}), {platform.platform()}\n")
        f.write(f"- versions: dml {ver['dml']}, torch {ver['torch']}, faiss {ver['faiss']}, "
                f"numpy {ver['numpy']}, OpenBLAS `{ver['openblas']}`, {ver['cc']}\n")
        f.write(f"- threads: dml `dml_set_threads({args.threads})` and {args.threads} search threads; "
                f"PyTorch OpenBLAS {args.threads} threads, intra-op 1 and {args.threads} tried every "
                f"round, the faster counted; FAISS OpenMP {args.threads}, OpenBLAS {args.threads}\n")
        f.write(f"- the whole run took {total:.0f} s\n\n")
        for _, title, intro, t in sections:
            f.write(f"## {title}\n\n" + (intro + "\n\n" if intro else "") + t.markdown() + "\n\n")
        if notes:
            f.write("## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
