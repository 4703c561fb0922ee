"""SIGINT, SIGTERM and SIGHUP to a real sweep, and a stdout closed under it (``... | head -1``).

Each test starts the real CLI in a process group of its own, waits until the fake worker says it is
hanging (its line in worker.log names its pid and process group), signals the parent and checks what
a user must find: the exit status 128 + N, the worker's process group gone, the run recorded
``interrupted`` with the signal, the finished run and its history line untouched, no later run
started, the results dir's lock released, and a report of what finished.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from tests.cli import by_fault
from tests.sweeps import FAST, WAIT_S, Sweep, alive_with, eventually, group_gone, hanging_workers, pid_gone, wait_until


def _history(results_dir):
    (path,) = (results_dir / "history").glob("*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_ends_the_worker_group_records_it_and_stops_the_sweep(tmp_path, sig):
    results_dir, reports_dir = tmp_path / "results", tmp_path / "reports"
    sweep = Sweep("sweep", [*FAST, "framework.fault=none,hang,exception", f"results_dir={results_dir}",
                            f"reports_dir={reports_dir}", "-m"], tmp_path)
    try:
        ((worker_pid, worker_pgid),) = wait_until("the hanging worker", lambda: hanging_workers(results_dir), sweep)
        finished = by_fault(results_dir)["none"]
        finished_bytes = (results_dir / finished["run_dir"] / "result.json").read_bytes()
        history_before = (next((results_dir / "history").glob("*.jsonl"))).read_text()
        assert (results_dir / ".sweep.lock").exists()
        sweep.proc.send_signal(sig)
        code = sweep.wait()
    finally:
        sweep.stop()
    assert code == 128 + sig, sweep.out() + sweep.err()
    assert eventually(lambda: group_gone(worker_pgid)), f"worker group {worker_pgid} outlived the sweep"
    assert pid_gone(worker_pid)
    found = by_fault(results_dir)
    assert set(found) == {"none", "hang"}  # the sweep stopped: the third run never started
    assert found["hang"]["status"] == "interrupted"
    assert f"interrupted by {sig.name}" in found["hang"]["reason"]
    assert (results_dir / finished["run_dir"] / "result.json").read_bytes() == finished_bytes
    history = (next((results_dir / "history").glob("*.jsonl"))).read_text()
    assert history.startswith(history_before)  # the finished run's line untouched, one line added
    assert [e["status"] for e in _history(results_dir)] == ["ok", "interrupted"]
    assert not (results_dir / ".sweep.lock").exists()
    err = sweep.err()
    assert "Traceback" not in err and f"{sig.name}: sweep stopped" in err
    # What finished is reported (the interrupted run included); the report is a whole file.
    log = (results_dir / "sweep.log").read_text()
    assert "sweep: 2 runs: 1 ok, 1 did not succeed" in log
    assert "; 1 of its 3 jobs never started" in log  # the summary says what the stop left undone
    (report,) = reports_dir.glob("default-*.html")
    assert report.read_text().rstrip().endswith("</html>")


def test_sigterm_under_torchrun_ends_torchrun_and_every_rank(tmp_path):
    import psutil

    results_dir = tmp_path / "results"
    sweep = Sweep("sweep", [*FAST, "framework.fault=hang", "launcher=torchrun", "launcher.nproc=2", "report=false",
                            f"results_dir={results_dir}"], tmp_path)
    try:
        ranks = wait_until("both hanging ranks", lambda: hanging_workers(results_dir, count=2), sweep)
        (torchrun,) = psutil.Process(sweep.pid).children()  # the worker command is torchrun itself
        assert "torch.distributed.run" in " ".join(torchrun.cmdline())
        torchrun_pid, torchrun_pgid = torchrun.pid, torchrun.pid  # its own process group (start_new_session)
        sweep.proc.send_signal(signal.SIGTERM)
        code = sweep.wait()
    finally:
        sweep.stop()
    assert code == 143, sweep.out() + sweep.err()
    assert eventually(lambda: group_gone(torchrun_pgid) and pid_gone(torchrun_pid))
    for pid, pgid in ranks:  # torchrun starts its ranks in sessions of their own: each must be gone too
        assert eventually(lambda: pid_gone(pid) and group_gone(pgid)), f"rank {pid} outlived the sweep"
    (record,) = by_fault(results_dir).values()
    assert record["status"] == "interrupted" and "SIGTERM" in record["reason"]


def test_closed_stdout_never_ends_a_sweep(tmp_path):
    """``python -m harness run -m | head -1``: the reader goes away after one line."""
    results_dir, reports_dir = tmp_path / "results", tmp_path / "reports"
    sweep = Sweep("sweep", [*FAST, "framework.fault=none,exception", f"results_dir={results_dir}",
                            f"reports_dir={reports_dir}", "-m"], tmp_path, stdout=subprocess.PIPE)
    try:
        first = sweep.proc.stdout.readline()
        sweep.proc.stdout.close()  # what head -1 does
        code = sweep.wait()
    finally:
        sweep.stop()
    assert first.strip()
    assert code == 10 + 1, sweep.err()  # the injected exception's run; the sweep itself went on
    assert {f: r["status"] for f, r in by_fault(results_dir).items()} == {"none": "ok", "exception": "failed"}
    assert len(_history(results_dir)) == 2
    err = sweep.err()
    assert "BrokenPipeError" not in err and "Traceback" not in err, err
    log = (results_dir / "sweep.log").read_text()
    assert "[stdout closed" in log  # the pipe really broke under the sweep
    assert "[fake r0] failed" in log and "sweep: 2 runs: 1 ok, 1 did not succeed" in log  # written after it broke
    (report,) = reports_dir.glob("default-*.html")
    assert f"report: {report}" in log


def test_a_timed_out_test_run_leaves_no_worker_behind(tmp_path):
    """tests/cli.py's harness() past its timeout stops the harness with SIGTERM (then kills it), so the
    harness ends its worker's process group: no torchrun agent or rank of the run outlives the call (with
    subprocess.run's own timeout, a SIGKILL of the harness alone, both ranks were left running)."""
    from tests.cli import harness

    results_dir = tmp_path / "results"
    with pytest.raises(subprocess.TimeoutExpired):
        harness(*FAST, "framework.fault=hang", "launcher=torchrun", "launcher.nproc=2", "report=false",
                f"results_dir={results_dir}", timeout=12)
    ranks = hanging_workers(results_dir, count=1)  # empty if a loaded machine had not reached the hang yet
    for pid, pgid in ranks:
        assert eventually(lambda: pid_gone(pid) and group_gone(pgid)), f"rank {pid} outlived the timed-out run"
    assert eventually(lambda: not alive_with(str(results_dir))), alive_with(str(results_dir))



def test_ctrl_c_during_preflight_is_one_line_and_130(tmp_path):
    """Ctrl-C while preflight still checks the jobs (a large dataset, a Hub lookup): one line, exit 130,
    nothing written, never a traceback. The model check is held (announced on stdout) so the signal
    lands inside preflight, whatever the machine's speed; everything around it is the real CLI."""
    import os
    import sys

    from tests.cli import REPO_ROOT

    results_dir = tmp_path / "results"
    driver = ("import sys, time\n"
              "import harness.config.preflight as preflight\n"
              "def held(cfg):\n"
              "    print('preflight: checking the model', flush=True)\n"
              "    time.sleep(300)\n"
              "preflight.check_model = held\n"
              "from harness.__main__ import console_main\n"
              "sys.argv = ['harness', *sys.argv[1:]]\n"
              "console_main()\n")
    # SIGINT at its default in the child even when this test runs where SIGINT is ignored (a background job)
    proc = subprocess.Popen([sys.executable, "-c", driver, "run", *FAST[1:], f"results_dir={results_dir}"],
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        import select

        ready, _, _ = select.select([proc.stdout], [], [], WAIT_S)  # never a read that could wait for ever
        assert ready, f"preflight never reached the model check in {WAIT_S:.0f} s"
        assert proc.stdout.readline().startswith("preflight: checking the model")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert err.splitlines() == ["error: interrupted by SIGINT (Ctrl-C) before any run started"], err
    assert not results_dir.exists()


def test_a_worker_whose_parent_was_killed_ends_its_own_group(tmp_path):
    """kill -9 of the harness (the OOM killer, a hard kill) runs no handler of the parent's: the worker, in a
    session of its own, trained on as an orphan. It now sees its parent gone and ends its process group."""
    results_dir = tmp_path / "results"
    sweep = Sweep("killed", [*FAST, "framework.fault=hang", f"results_dir={results_dir}", "report=false"], tmp_path)
    pid = pgid = None
    try:
        ((pid, pgid),) = wait_until("the hanging worker", lambda: hanging_workers(results_dir), sweep)
        sweep.proc.kill()
        assert sweep.wait(timeout=60) == -signal.SIGKILL
        assert eventually(lambda: group_gone(pgid), timeout=60), f"worker {pid} outlived its killed parent"
    finally:
        sweep.stop()
        if pgid is not None and not group_gone(pgid):  # what this test started, by its process group
            os.killpg(pgid, signal.SIGKILL)
    log = next(results_dir.rglob("worker.log")).read_text()
    assert "the harness parent" in log and "is gone" in log
    # the attempt's own result says what happened, not an earlier attempt's status (nothing of the parent ran)
    (result,) = [json.loads(p.read_text()) for p in results_dir.rglob("result.json")]
    assert result["status"] == "interrupted" and "harness parent ended before this run finished" in result["reason"]


def test_parent_alive_tells_a_live_parent_from_a_gone_or_reused_pid(tmp_path):
    import sys

    from harness.parent_watch import parent_alive, parent_token

    token = parent_token()
    assert parent_alive(token)
    pid, start = token.split(":")
    assert not parent_alive(f"{pid}:{float(start) - 100:.3f}")  # same pid, another process's start time
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert not parent_alive(f"{done.stdout.strip()}:{start}")  # exited
    assert not parent_alive("not-a-pid:0")
