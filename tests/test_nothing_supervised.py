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
