"""One sweep at a time per results dir: two real concurrent sweeps of the fake framework, a stale lock,
and the lock's own take/wait/release (RESULTS_DIR/.sweep.lock)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from harness.launch.sweep_lock import LOCK_NAME, LockBusy, SweepLock
from tests.cli import by_fault, harness
from tests.sweeps import FAST, Sweep, hanging_workers, wait_until


def _tree(root):
    """Every file under ``root`` with its size and mtime (the hanging run's own log excluded)."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
            and p.name != "worker.log"}


def _history_lines(results_dir):
    return [json.loads(line) for path in (results_dir / "history").glob("*.jsonl")
            for line in path.read_text().splitlines()]


def test_a_second_sweep_refuses_or_waits_then_resumes(tmp_path):
    results_dir = tmp_path / "results"
    common = [f"results_dir={results_dir}", "report=false"]
    # The holder: one run that finishes, then one that hangs until the test stops it.
    holder = Sweep("holder", [*FAST, "framework.fault=none,hang", *common, "-m"], tmp_path)
    waiter = None
    try:
        wait_until("the holder's hanging run", lambda: hanging_workers(results_dir), holder)
        before = _tree(results_dir)

        refused = harness(*FAST, "framework.fault=none", *common)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        (line,) = refused.stderr.strip().splitlines()
        assert line.startswith(f"error: {results_dir} is in use by pid {holder.pid} on host {socket.gethostname()} since ")
        assert line.endswith("wait_for_lock=true waits")
        assert _tree(results_dir) == before  # it wrote nothing: no run dir, no history line, no log

        # A waiter told to stop while it waits exits 128 + N, having written nothing.
        quitter = Sweep("quitter", [*FAST, *common, "wait_for_lock=true"], tmp_path)
        wait_until("the quitter to wait", lambda: f"is in use by pid {holder.pid}" in quitter.err(), quitter)
        quitter.proc.send_signal(signal.SIGHUP)
        assert quitter.wait() == 128 + signal.SIGHUP, quitter.err()
        assert "Traceback" not in quitter.err()
        assert _tree(results_dir) == before

        waiter = Sweep("waiter", [*FAST, "framework.fault=none,exception", *common, "wait_for_lock=true", "-m"],
                       tmp_path)
        wait_until("the waiter to wait", lambda: f"is in use by pid {holder.pid}" in waiter.err(), waiter)
        assert _tree(results_dir) == before
        holder.proc.send_signal(signal.SIGTERM)  # the holder stops (recording its run) and lets go
        assert holder.wait() == 143
        code = waiter.wait()
    finally:
        holder.stop()
        if waiter is not None:
            waiter.stop()
    assert code == 10 + 1, waiter.out() + waiter.err()  # the injected exception; the rest was resumed
    assert "skipped: ok result exists" in waiter.out()  # the holder's ok run is not trained again
    assert {f: r["status"] for f, r in by_fault(results_dir).items()} == {
        "none": "ok", "hang": "interrupted", "exception": "failed"}
    history = _history_lines(results_dir)
    assert sorted(e["status"] for e in history) == ["failed", "interrupted", "ok"]  # one line per run trained
    assert len({e["run_dir"] for e in history}) == 3  # no run dir trained twice
    assert not (results_dir / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path):
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid names a holder that is gone; it never held the flock
    holder = {"pid": dead.pid, "host": socket.gethostname(), "since": "2000-01-01 00:00:00", "command": "x"}
    (results_dir / LOCK_NAME).write_text(json.dumps(holder))
    # The lock is under test, not the training: a run that is a result within a second (unavailable: exit 0).
    run = harness(*FAST, "framework.fault=unavailable", f"results_dir={results_dir}", "report=false")
    assert run.returncode == 0, run.stdout + run.stderr
    warnings = [line for line in run.stderr.splitlines() if "stale lock" in line]
    assert warnings == [f"warning: taking over the stale lock of {results_dir} from pid {dead.pid} on host "
                        f"{socket.gethostname()} since 2000-01-01 00:00:00 (its pid is gone)"]
    assert [r["status"] for r in by_fault(results_dir).values()] == ["unavailable"]
    assert not (results_dir / LOCK_NAME).exists()


def test_lock_names_its_holder_and_a_waiter_gets_the_live_file(tmp_path):
    first = SweepLock(tmp_path)
    first.acquire("python -m harness run a")
    text = json.loads((tmp_path / LOCK_NAME).read_text())
    assert (text["pid"], text["host"], text["command"]) == (os.getpid(), socket.gethostname(), "python -m harness run a")
    with pytest.raises(LockBusy, match=f"in use by pid {os.getpid()} on host"):
        SweepLock(tmp_path).acquire("b")  # flock conflicts between open files, in one process too

    waiter, waiting = SweepLock(tmp_path), threading.Event()
    thread = threading.Thread(target=waiter.acquire, args=("c",),
                              kwargs={"wait": True, "warn": lambda message: waiting.set()})
    thread.start()
    assert waiting.wait(60)
    first.release()  # deletes the file it locked: the waiter must lock the file now at the path
    thread.join(60)
    assert not thread.is_alive() and waiter.fd is not None
    assert json.loads((tmp_path / LOCK_NAME).read_text())["command"] == "c"
    with pytest.raises(LockBusy):
        SweepLock(tmp_path).acquire("d")  # the waiter's lock is the live one
    waiter.release()
    assert not (tmp_path / LOCK_NAME).exists()
    again = SweepLock(tmp_path)
    again.acquire("e")  # free again
    again.release()
