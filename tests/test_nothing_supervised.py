"""A run whose training steps held no supervised token fails with the likely cause, instead of an "ok" with a zero
loss that the sweep, the audit and a baseline accepted (a new user's `train.max_length=1`: LLaMA-Factory, ms-swift
and axolotl trained on masked tokens alone)."""
from __future__ import annotations

from tests.cli import harness, results


def test_a_max_length_that_cuts_every_response_away_fails_the_run_naming_it(tmp_path):
    proc = harness("run", "framework=fake", "train.max_length=1", "train.max_steps=2", "train.measure_warmup_steps=1",
                   f"results_dir={tmp_path}", "report=false", timeout=300)
    assert proc.returncode != 0
    (run,) = results(tmp_path)
    assert run["status"] == "failed"
    assert run["reason"].startswith("NothingSupervised: no supervised token in any of the 2 training steps")
    assert "train.max_length=1" in run["reason"]
    assert run["train"]["supervised_tokens"] == 0 and run["train"]["steps"] == 2  # what was measured is kept


def test_an_ordinary_run_is_untouched(tmp_path):
    proc = harness("run", "framework=fake", "train.max_steps=2", "train.measure_warmup_steps=1",
                   f"results_dir={tmp_path}", "report=false", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run,) = results(tmp_path)
    assert run["status"] == "ok" and run["train"]["supervised_tokens"] > 0


def test_a_count_the_meter_could_not_make_is_not_taken_for_zero():
    """A framework that takes the labels out before the forward leaves the meter without a count (its note says
    undercounted): that run is not refused."""
    import pytest

    from harness.records.training import Train
    from harness.worker.run_job import NothingSupervised, _refuse_an_unsupervised_run

    train = Train(steps=4, supervised_tokens=0)
    _refuse_an_unsupervised_run(train, 1024, counted=False)
    with pytest.raises(NothingSupervised, match="train.max_length=1024"):
        _refuse_an_unsupervised_run(train, 1024, counted=True)
    _refuse_an_unsupervised_run(Train(steps=4, supervised_tokens=10), 1024, counted=True)
