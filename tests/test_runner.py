"""The real runner and worker, driven through every status by the fault-injecting test double."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.cli import REPO_ROOT, by_fault, harness, results

FAST = ("run", "framework=fake", "train.max_steps=3", "train.measure_warmup_steps=1", "report=false")


def test_every_fault_is_a_result_and_the_sweep_goes_on(tmp_path):
    run = harness(*FAST, "framework.fault=none,exception,import_error,unavailable,oom,segfault,exit",
                  f"results_dir={tmp_path}", "-m")
    found = by_fault(tmp_path)
    assert {f: r["status"] for f, r in found.items()} == {
        "none": "ok", "exception": "failed", "import_error": "unavailable", "unavailable": "unavailable",
        "oom": "oom", "segfault": "crashed", "exit": "crashed"}
    assert "RuntimeError: injected failure" in found["exception"]["reason"]
    assert "Traceback" in found["exception"]["log_tail"]
    assert "install with" in found["import_error"]["reason"]
    assert "SIGSEGV" in found["segfault"]["reason"]
    assert "code 3" in found["exit"]["reason"]
    assert found["oom"]["train"] is not None  # what was measured before the OOM is kept
    # failed, oom, 2 x crashed did not succeed; unavailable is reported but is not a failure
    assert run.returncode == 10 + 4, run.stdout + run.stderr
    assert "4 did not succeed" in run.stdout


def test_timeout_kills_the_process_group(tmp_path):
    started = time.time()
    harness(*FAST, "framework.fault=hang", "timeout_s=8", f"results_dir={tmp_path}")
    (record,) = results(tmp_path)
    assert record["status"] == "timeout"
    assert time.time() - started < 60
    assert "process group killed" in record["reason"]


def test_resume_skips_ok_runs_and_force_reruns(tmp_path):
    first = harness(*FAST, f"results_dir={tmp_path}")
    assert first.returncode == 0, first.stderr
    again = harness(*FAST, f"results_dir={tmp_path}")
    assert "skipped: ok result exists" in again.stdout
    forced = harness(*FAST, f"results_dir={tmp_path}", "force=true")
    assert "skipped" not in forced.stdout and "running in" in forced.stdout
    history = list((tmp_path / "history").glob("*.jsonl"))
    assert len(history) == 1 and len(history[0].read_text().splitlines()) == 2  # skipped runs add no line


def test_ctrl_c_records_interrupted_and_keeps_finished_results(tmp_path):
    done = harness(*FAST, f"results_dir={tmp_path}")
    assert done.returncode == 0
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness", *FAST, "framework.fault=hang",
                             f"results_dir={tmp_path}"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.rglob("worker.log"))[1:]:
        time.sleep(0.2)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    statuses = sorted(r["status"] for r in results(tmp_path))
    assert statuses == ["interrupted", "ok"]
    history = next((tmp_path / "history").glob("*.jsonl")).read_text().splitlines()
    assert len(history) == 2
