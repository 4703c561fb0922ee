"""train.sdpa_backend through the real CLI, runner and worker on CPU (framework=fake: transformers' Trainer on the
embedded tiny model, whose attention is SDPA).

A CPU build of torch honours two of the four flags: ``flash`` (its CPU flash kernel) and ``math``; cudnn and
efficient have no CPU kernel and are refused before anything runs (tests/test_sdpa_config.py). The time profile
shows which backend op the training steps really dispatched to, so the flags are checked against the work
done, not only read back.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.audit.fairness import diff_point
from tests.cli import harness, results

ALL = ["cudnn", "flash", "efficient", "math"]
# the backend op under aten::scaled_dot_product_attention, per backend the CPU dispatcher can pick
CPU_OPS = {"flash": "aten::_scaled_dot_product_flash_attention_for_cpu", "math": "aten::_scaled_dot_product_attention_math"}


def _log(record: dict) -> str:
    return (Path(record["run_dir"]) / "worker.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def auto_and_math(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("sdpa")
    proc = harness("run", "framework=fake", "experiment=cpu_smoke", "profile=time", "train.max_steps=5",
                   "train.sdpa_backend=auto,math", f"results_dir={root}", "report=false", "-m", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    by = {r["job"]["train"]["sdpa_backend"]: r for r in results(root)}
    assert set(by) == {"auto", "math"} and all(r["status"] == "ok" for r in by.values())
    return by


def test_a_named_backend_is_the_only_one_enabled_and_the_steps_ran_it(auto_and_math):
    run = auto_and_math["math"]
    audit = run["audit"]
    assert audit["sdpa_enabled"] == ["math"]
    assert audit["sdpa_choice"] == {"padded": "math", "causal": "math"}
    probe = audit["sdpa_probe"]
    assert probe["device"] == "cpu" and probe["dtype"] == "float32" and probe["batch"] == 4  # cpu_smoke's batch
    assert probe["length"] == max(audit["padded_lengths"]) and probe["heads"] > 0 and probe["head_dim"] > 0
    assert "sdpa: only math attention enabled (train.sdpa_backend=math)" in _log(run)
    ops = {o["name"] for o in run["profile"]["time"]["sdpa_ops"]}
    assert ops == {CPU_OPS["math"]}  # every attention call of the profiled steps, and nothing else


def test_auto_leaves_the_flags_alone_and_records_what_pytorch_picks(auto_and_math):
    run = auto_and_math["auto"]
    audit = run["audit"]
    assert audit["sdpa_enabled"] == ALL and "sdpa:" not in _log(run).replace("sdpa: the", "")
    chosen = audit["sdpa_choice"]["padded"]
    assert chosen in CPU_OPS
    ops = {o["name"] for o in run["profile"]["time"]["sdpa_ops"]}
    # the dispatcher's pick for the representative call is what the training steps' calls dispatched to
    assert CPU_OPS[chosen] in ops and all(o["count"] > 0 for o in run["profile"]["time"]["sdpa_ops"])


def test_the_strict_audit_flags_two_runs_with_different_backends(auto_and_math):
    audits = {label: auto_and_math[label]["audit"] for label in ("auto", "math")}
    diff = diff_point(audits)
    mismatched = [m["field"] for m in diff["mismatches"]]
    assert diff["valid"] is False and "sdpa_enabled" in mismatched
    expected = {"sdpa_enabled"} | ({"sdpa_choice"} if audits["auto"]["sdpa_choice"] != audits["math"]["sdpa_choice"]
                                   else set())
    assert set(mismatched) == expected  # the same job otherwise: data, LoRA init, loss normalisation all match
    same = diff_point({"a": audits["math"], "b": json.loads(json.dumps(audits["math"]))})
    assert same["valid"] is True


def test_a_framework_that_turns_the_flags_back_on_is_caught(tmp_path):
    # framework.fault=sdpa_flags: the framework enables every backend again after the worker applied the setting
    proc = harness("run", "framework=fake", "framework.fault=sdpa_flags", "experiment=cpu_smoke", "train.max_steps=3",
                   "train.measure_warmup_steps=1", "train.sdpa_backend=math", f"results_dir={tmp_path}",
                   "report=false", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = results(tmp_path)
    assert run["status"] == "ok" and "sdpa: only math attention enabled" in _log(run)
    audit = run["audit"]
    assert audit["sdpa_enabled"] == ALL  # read at train begin, after the framework's change
    assert any("train.sdpa_backend=math was applied, yet ['cudnn', 'flash', 'efficient', 'math'] were enabled" in n
               for n in audit["notes"])


def test_every_torchrun_rank_applies_the_setting(tmp_path):
    proc = harness("run", "framework=fake", "train.max_steps=2", "train.measure_warmup_steps=1", "launcher=torchrun",
                   "launcher.nproc=2", "train.sdpa_backend=math", f"results_dir={tmp_path}", "report=false",
                   timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (run,) = results(tmp_path)
    assert run["status"] == "ok" and run["runtime"]["world_size"] == 2
    assert _log(run).count("sdpa: only math attention enabled (train.sdpa_backend=math)") == 2  # one line per rank
    assert run["audit"]["sdpa_enabled"] == ["math"]
