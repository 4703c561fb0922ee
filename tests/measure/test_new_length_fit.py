"""benchmarks/host_speed_summary.py's per-new-length fit, on a committed H200 result whose step times are replaced by
times built from a known fixed part, cost per padded token and cost of a step with an unseen padded length."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from benchmarks.host_speed_summary import new_length_fit
from harness.results.load import load_records

RESULTS = Path(__file__).resolve().parents[2] / "results/h200/session6/throughput_7b"


@pytest.fixture(scope="module")
def trl_run():
    runs = [r for r in load_records([RESULTS]) if r.ok and r.framework.name == "trl"] if RESULTS.exists() else []
    if not runs:
        pytest.skip("the committed session-6 results are not in this checkout")
    return runs[0]


def test_the_fit_recovers_the_cost_of_a_new_length(trl_run):
    run = copy.deepcopy(trl_run)
    seen: set[int] = set()
    for step in run.train.log:
        new = step["max_seq_len"] not in seen
        seen.add(step["max_seq_len"])
        step["time_s"] = 0.1 + 0.9 * step["padded_tokens"] / 1e4 + (0.2 if new else 0.0)
    fixed, per_new, steps = new_length_fit(run)
    assert fixed == pytest.approx(0.1) and per_new == pytest.approx(0.2)
    assert steps == 28  # of the 40 timed steps of throughput_7b, 28 bring a padded length not seen before


def test_no_fit_without_the_step_shapes(trl_run):
    run = copy.deepcopy(trl_run)
    for step in run.train.log:
        step.pop("max_seq_len")
    assert new_length_fit(run) is None
