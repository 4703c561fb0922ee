"""The real runner and worker, driven through every status by the fault-injecting test double."""
from __future__ import annotations

import signal

from tests.cli import by_fault, harness, results
from tests.sweeps import Sweep, alive_with, hanging_workers, wait_until

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
    assert "sweep: 7 runs: 1 ok, 2 unavailable here (fake-0), 4 did not succeed" in run.stdout


def test_timeout_kills_the_process_group(tmp_path):
    # The hang sleeps an hour: the sweep's return at all shows the kill. No upper bound on the wall clock, which a
    # loaded 2-core machine can break; the lower one says the limit was waited out, not cut short.
    harness(*FAST, "framework.fault=hang", "timeout_s=8", f"results_dir={tmp_path}")
    (record,) = results(tmp_path)
    assert record["status"] == "timeout"
    assert record["wall_time_s"] >= 8
    assert "process group killed" in record["reason"]


def test_a_worker_that_hangs_after_writing_its_result_is_ended_and_the_result_kept(tmp_path):
    # The worker trains, writes its result, then never exits (an atexit handler that sleeps: a rank stuck in
    # teardown). After the grace the parent ends its group; the run is ok, with the note, and nothing is left.
    run = harness(*FAST, "framework.fault=hang_at_exit", "timeout_s=300", f"results_dir={tmp_path}",
                  env={"HARNESS_TEARDOWN_GRACE_S": "2"})
    (record,) = results(tmp_path)
    assert record["status"] == "ok", record["reason"] + record["log_tail"]
    assert "hung in teardown" in record["teardown_note"] and "hung in teardown" in run.stdout
    assert run.returncode == 0, run.stdout + run.stderr
    assert alive_with(str(tmp_path)) == []
    # a worker that exits normally gets no note (the default grace: a loaded machine's exit can take seconds)
    harness(*FAST, f"results_dir={tmp_path / 'plain'}")
    (plain,) = results(tmp_path / "plain")
    assert plain["status"] == "ok" and "teardown_note" not in plain


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
    results_dir = tmp_path / "results"
    done = harness(*FAST, f"results_dir={results_dir}")
    assert done.returncode == 0
    sweep = Sweep("hang", [*FAST, "framework.fault=hang", f"results_dir={results_dir}"], tmp_path)
    try:
        wait_until("the hanging worker", lambda: hanging_workers(results_dir), sweep)  # not a fixed sleep
        sweep.proc.send_signal(signal.SIGINT)
        assert sweep.wait(timeout=60) == 130, sweep.out() + sweep.err()
    finally:
        sweep.stop()
    statuses = sorted(r["status"] for r in results(results_dir))
    assert statuses == ["interrupted", "ok"]
    history = next((results_dir / "history").glob("*.jsonl")).read_text().splitlines()
    assert len(history) == 2
