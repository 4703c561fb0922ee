"""Run one job in a fresh child process and turn whatever happens into a result record. Never raises
for a fault of the run: failures are results. Only Ctrl-C propagates (after recording 'interrupted').

The child is ``INTERPRETER -m harness.worker RUN_DIR`` in its own process group, so a timeout or an
interrupt kills the whole tree (dataloader workers, compile workers) and nothing is left on the GPU.
The parent samples NVML from outside the framework while the child runs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_json, read_json
from harness.hub import REPO_ROOT

LOG_NAME = "worker.log"
RESULT_NAME = "result.json"
KILL_GRACE_S = 10.0


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The framework's interpreter imports the harness from this checkout, not from its site-packages.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    return env


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the child's whole process group, then SIGKILL whatever is left after a grace period."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _status_from_exit(returncode: int, timed_out: bool) -> tuple[str, str]:
    if timed_out:
        return "timeout", "run exceeded timeout_s; process group killed"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return "crashed", f"worker killed by signal {name}"
    return "crashed", f"worker exited with code {returncode} without writing a result"


def spawn_worker(run_dir: Path, python: str, timeout_s: float, sampler: Any) -> dict[str, Any]:
    """Run the worker; return the parent's view: status (if the child wrote none), wall time, log tail."""
    log_path = run_dir / LOG_NAME
    (run_dir / "worker_result.json").unlink(missing_ok=True)
    started = time.time()
    with open(log_path, "wb") as log:
        # An argument list, never a shell: no config value is ever interpreted by one.
        proc = subprocess.Popen([python, "-m", "harness.worker", str(run_dir)], stdout=log,
                                stderr=subprocess.STDOUT, env=_child_env(), cwd=str(REPO_ROOT),
                                start_new_session=True)
        sampler.watch_pids(proc.pid)
        timed_out = False
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
        except KeyboardInterrupt:
            _kill_group(proc, signal.SIGINT)
            raise
    view: dict[str, Any] = {"wall_time_s": round(time.time() - started, 3), "returncode": proc.returncode,
                            "spawned_at": started}
    worker_result = run_dir / "worker_result.json"
    if worker_result.exists() and not timed_out:
        try:
            view["worker"] = read_json(worker_result)
        except ValueError as err:
            view["status"], view["reason"] = "crashed", str(err)
    if "worker" not in view and "status" not in view:
        view["status"], view["reason"] = _status_from_exit(proc.returncode, timed_out)
    view["log_tail"] = log_tail(log_path)
    return view


def existing_ok_result(run_dir: Path) -> dict[str, Any] | None:
    """An earlier ok result in ``run_dir`` (resume); a corrupt one is reported and ignored."""
    path = run_dir / RESULT_NAME
    if not path.exists():
        return None
    try:
        record = read_json(path)
    except ValueError as err:
        print(f"warning: {err}; running it again", file=sys.stderr)
        return None
    return record if record.get("status") == "ok" else None
