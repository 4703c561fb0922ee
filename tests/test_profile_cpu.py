"""profile=time and profile=memory through the real CLI, runner and worker on CPU (the embedded tiny model).

trl really trains (its environment under HARNESS_ENV_ROOT); the time profile's parts must add up to the
profiled steps' wall time and the trace must open. profile=memory needs CUDA: on CPU the run trains and
its profile says why there is none, never a crash. Neither changes an unprofiled job: its hash and run
folder are those of a run from before profiling existed (tests/report/test_reproduce.py checks the
committed ones).
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from tests.cli import harness

# The StepMeter's clock (perf_counter, read in its on_step_end) and the trace's (kineto's, our mark in the
# next callback) time the same steps; each step end is read a callback apart, a constant offset that
# cancels between consecutive ends. What remains is the scheduler preempting the worker between the two
# reads at the window's two ends: 50 ms covers a loaded 2-core machine, and 5% the profiler's own cost
# landing on one side of a read (recording ops between the two clocks' reads).
CLOCK_TOLERANCE_S = 0.05
CLOCK_TOLERANCE_REL = 0.05


def _result(results: Path) -> dict:
    (path,) = list(results.rglob("result.json"))
    return json.loads(path.read_text())


def test_profile_time_through_trl_adds_up_and_keeps_an_openable_trace(tmp_path):
    results = tmp_path / "results"
    proc = harness("run", "framework=trl", "experiment=cpu_smoke", "profile=time", "train.max_steps=6",
                   f"results_dir={results}", f"reports_dir={tmp_path / 'reports'}", timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = _result(results)
    assert record["status"] == "ok" and record["job"]["profile"]["kind"] == "time"
    prof = record["profile"]["time"]
    assert prof["status"] == "ok" and prof["view"] == "host" and prof["steps"] == [3, 4, 5]
    assert sum(prof["parts_s"].values()) == __import__("pytest").approx(prof["window_s"], abs=1e-5)
    assert all(prof["parts_s"][k] > 0 for k in ("forward", "loss", "backward", "optimizer"))
    # transformers' model calls its final norm module: the head is marked there (harness/worker/model_marks.py)
    assert prof["head_mark"] == "final norm output" and "not_separated" not in prof
    assert abs(prof["window_s"] - prof["step_meter_s"]) <= CLOCK_TOLERANCE_S + CLOCK_TOLERANCE_REL * prof["step_meter_s"]
    trace_path = Path(record["run_dir"]) / prof["trace_file"]
    trace = json.loads(gzip.decompress(trace_path.read_bytes()))
    assert any(e.get("name") == "harness::mark::step_end" for e in trace["traceEvents"])
    assert prof["trace_bytes"] == trace_path.stat().st_size and prof["top_ops"]


def test_profile_memory_on_cpu_trains_and_says_why_there_is_no_profile(tmp_path):
    results = tmp_path / "results"
    proc = harness("run", "framework=fake", "experiment=cpu_smoke", "profile=memory", "train.max_steps=3",
                   "train.measure_warmup_steps=1", f"results_dir={results}", "report=false", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = _result(results)
    assert record["status"] == "ok" and record["train"]["steps"] == 3
    memory = record["profile"]["memory"]
    assert memory["status"] == "unavailable" and "needs a CUDA device" in memory["reason"]


def test_an_unprofiled_job_has_no_profile_and_a_profiled_one_is_its_own_job(tmp_path):
    from harness.cli.plan import plan_jobs

    plain = plan_jobs(["framework=trl"], False)[0]
    none = plan_jobs(["framework=trl", "profile=none"], False)[0]
    timed = plan_jobs(["framework=trl", "profile=time"], False)[0]
    assert plain["job_hash"] == none["job_hash"] and "profile" not in plain["job"]
    assert timed["job_hash"] != plain["job_hash"] and timed["point_hash"] != plain["point_hash"]


def test_profile_knobs_are_refused_by_name_before_anything_runs(tmp_path):
    proc = harness("run", "framework=fake", "profile=time", "profile.steps=0", f"results_dir={tmp_path}")
    assert proc.returncode == 2 and "profile.steps" in proc.stderr and not list(tmp_path.rglob("result.json"))
    proc = harness("run", "framework=fake", "profile.alloc_conf=expandable_segments:True", f"results_dir={tmp_path}")
    assert proc.returncode == 2 and "profile.alloc_conf needs profile=memory|time" in proc.stderr
