"""bench/run.py's choice of rounds (issue #30), on fabricated probes: the rounds where both
sides saw the same machine, the slow-machine rounds, and a row's figures over the former.
Run by `make python-test`."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def runs(values, probes, key="adc_s"):
    return [{key: v, "probe_gflops": p} for v, p in zip(values, probes)]


def test_a_slow_process_on_either_side_makes_a_slow_round():
    probes = [(200, 198), (108, 200), (195, 190), (200, 110)]
    assert run.alike_rounds(probes) == ([0, 2], [1, 3])


def test_the_bound_is_slack_below_the_best_either_side_saw():
    # best 200 (the peer's, round 1): 171 is within 15%, 169 is not
    assert run.alike_rounds([(171, 200), (169, 190)]) == ([0], [1])
    assert run.alike_rounds([(171, 200), (169, 190)], slack=0.2) == ([0, 1], [])


def test_times_ratio_is_the_median_of_the_alike_rounds_own_ratios():
    dml = runs([1.0, 3.0, 1.0], [200, 100, 199])
    peer = runs([2.0, 2.0, 1.6], [198, 200, 200])
    row = run.paired(dml, peer, "adc_s", "lower")
    assert row["rounds"] == "2 of 3 rounds"
    assert row["ratio"] == 1.8  # peer / dml in rounds 1 and 3: 2.0 and 1.6; round 2 left out
    assert row["dml"] == 1.0 and row["peer"] == 1.8


def test_throughput_ratio_is_dml_over_peer():
    dml = runs([300.0, 90.0, 310.0], [200, 200, 200], key="samples_per_s")
    peer = runs([100.0, 100.0, 100.0], [200, 120, 200], key="samples_per_s")
    row = run.paired(dml, peer, "samples_per_s", "higher")
    assert row["rounds"] == "2 of 3 rounds" and row["ratio"] == 3.05


def test_no_alike_round_takes_every_round_and_says_so():
    dml = runs([1.0, 2.0], [200, 100])
    peer = runs([2.0, 2.0], [100, 200])
    row = run.paired(dml, peer, "adc_s", "lower")
    assert row["rounds"] == "0 of 2 rounds alike: all 2 taken"
    assert row["ratio"] == 1.5  # the median of 2.0 and 1.0


def test_the_note_names_the_slow_rounds_from_one():
    note = run.probe_note("pq", runs([1, 1, 1], [200, 100, 200]), runs([1, 1, 1], [200, 200, 199]))
    assert "slow-machine rounds (a probe more than 15% below the run's best, 200): 2;" in note
    assert note.endswith("figures over 2 of 3 rounds")
    clean = run.probe_note("pq", runs([1], [200]), runs([1], [195]))
    assert "slow" not in clean and clean.endswith("figures over 1 of 1 rounds")
