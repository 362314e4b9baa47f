"""bench/run.py's report for the training cases, on fabricated records whose figures are worked
out by hand: the main table's ratio and verdict, and the ceiling table's fractions, time outside
GEMM and parameter passes (issue #30). Run by `make python-test`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

BATCH = 256


def record(step_s, gemm_s=None, passes_s=None, probe=300.0):
    """One side's round: a step of step_s seconds at BATCH samples."""
    r = {"samples_per_s": BATCH / step_s, "batch": BATCH, "probe_gflops": probe, "finite": True,
         "loss_first": 1.0, "loss_last": 0.5, "loss": "mnr", "spec": {}, "intra_threads": 1}
    if gemm_s is not None:
        r["gemm"] = {"seconds_per_step": gemm_s, "flops_per_step": 1.5e9}
        r["parameter_passes"] = {"seconds_per_step": passes_s}
    return r


def training_report(dml_steps, peer_steps, gemm_s, passes_s):
    train = {"mnr": {"dml": [record(s, gemm_s, passes_s) for s in dml_steps],
                     "peer": [record(s) for s in peer_steps]}}
    main, ceiling, _, valid, notes = run.report(None, [], train, {}, None, None)
    return main, ceiling, valid, notes


def cells(table):
    assert len(table.rows) == 1
    return dict(zip(table.header, table.rows[0]))


def test_ratio_and_verdict_of_a_missed_target():
    # dml 6 ms, PyTorch 11.4 ms every round: 1.90x against a 2x target, missed by 5%
    main, _, _, _ = training_report([0.006] * 3, [0.0114] * 3, 0.0045, 0.00025)
    row = cells(main)
    assert row["dml vs peer"] == "1.90x"
    assert row["result"] == "missed by 5%"
    assert row["rounds"] == "3 of 3 rounds"


def test_ceiling_row_from_gemm_and_parameter_passes():
    # GEMM 4.5 ms of a 6 ms step: 75% of the ceiling, 1.5 ms outside; PyTorch's 10 ms step 45%;
    # the passes 0.5 ms, so with only them outside GEMM 4.5 / 5.0 = 90% and 10 / 5 = 2.00x
    _, ceiling, _, _ = training_report([0.006] * 3, [0.010] * 3, 0.0045, 0.0005)
    row = cells(ceiling)
    assert row["GEMM GFLOP/step"] == "1.500"
    assert row["GEMM ceiling GFLOP/s"] == "333"
    assert row["dml step ms"] == "6.00"
    assert row["dml % of ceiling"] == "75% (target 85%: missed by 12%)"
    assert row["peer % of ceiling"] == "45%"
    assert row["dml time outside GEMM"] == "1.50 ms (25%)"
    assert row["parameter passes alone"] == "0.50 ms"
    assert row["only them outside GEMM: % of ceiling, vs peer"] == "90%, 2.00x"


def test_medians_over_rounds_feed_the_ceiling_row():
    # the middle round's step and replay are the medians: 6 ms and 4.5 ms as above
    train = {"mnr": {"dml": [record(0.005, 0.004, 0.0004), record(0.006, 0.0045, 0.0005),
                             record(0.007, 0.005, 0.0006)],
                     "peer": [record(0.012)] * 3}}
    _, ceiling, _, _, _ = run.report(None, [], train, {}, None, None)
    row = cells(ceiling)
    assert row["dml step ms"] == "6.00"
    assert row["dml time outside GEMM"] == "1.50 ms (25%)"
    assert row["parameter passes alone"] == "0.50 ms"


def test_validation_says_the_loss_fell_on_both_sides():
    _, _, valid, _ = training_report([0.006] * 3, [0.012] * 3, 0.0045, 0.0005)
    row = dict(zip(valid.header, valid.rows[-1]))
    assert row["agree"] == "finite, falling"
