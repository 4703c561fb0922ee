"""MLPerf's metric through the real runner: eval loss every train.eval_steps and the time to a target."""
from __future__ import annotations

from tests.cli import harness, results


def test_eval_curve_and_time_to_target(tmp_path):
    run = harness("run", "framework=fake", "train.max_steps=6", "train.eval_steps=2", "train.lr=2e-3",
                  "train.target_eval_loss=50.0", "report=false", f"results_dir={tmp_path}")
    assert run.returncode == 0, run.stdout + run.stderr
    (record,) = results(tmp_path)
    curve = record["eval"]["curve"]
    assert [p["step"] for p in curve] == [2, 4]  # the final evaluation is the worker's own
    assert all(p["tokens"] > 0 and p["train_time_s"] > 0 for p in curve)
    target = record["eval"]["target"]
    # a random model's loss (~7.4 on the tiny vocabulary) is below 50 at the first evaluation
    assert target["reached"] and target["step"] == 2 and target["tokens_to_target"] == curve[0]["tokens"]


def test_unreached_target_is_reported_as_such(tmp_path):
    harness("run", "framework=fake", "train.max_steps=4", "train.eval_steps=2", "train.target_eval_loss=0.01",
            "report=false", f"results_dir={tmp_path}")
    (record,) = results(tmp_path)
    assert record["eval"]["target"]["reached"] is False and record["eval"]["target"]["time_to_target_s"] is None
