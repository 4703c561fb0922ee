"""Run one job in a fresh child process and turn whatever happens into a result record. Never raises
for a fault of the run: failures are results. Only a stop signal to the parent (SIGINT, SIGTERM,
SIGHUP: harness/launch/interrupts.py) propagates, after the child's whole tree has been ended.

The child is ``INTERPRETER -m harness.worker RUN_DIR`` (or, with ``launcher=torchrun``,
``INTERPRETER -m torch.distributed.run --standalone --nproc_per_node N -m harness.worker RUN_DIR``) in
its own process group, so a timeout or an interrupt kills the whole tree (dataloader workers, compile
workers, every rank: torchrun starts its ranks in sessions of their own, so they are also found by
walking the process tree) and nothing is left on the GPU. The parent samples NVML from outside the
framework while the child runs, and echoes the worker's ``step ...`` progress lines (polling its log
once a second: the parent does next to nothing while the child measures).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness.launch import interrupts
from harness.records import run_files
from harness.atomic import read_json
from harness.hub import REPO_ROOT
from harness.records import Result, WorkerResult

LOG_NAME = run_files.WORKER_LOG  # kept for importers; the name lives in harness.records.run_files
RESULT_NAME = run_files.RESULT
KILL_GRACE_S = 10.0
POLL_S = 1.0  # how often the parent reads the worker log for progress lines
# Rank 0 writes worker_result.json as its last act; what is left is the processes' exit. A rank can hang there
# (LLaMA-Factory under torchrun on a loaded 2-core machine, ~1 run in 10: rank 1's gloo thread joined in
# ~ProcessGroupGloo, waiting on a peer that had already exited; LF's ddp_timeout is 3 hours). The result is
# complete, so after this grace the parent ends the worker's process group and keeps it, with a note.
# HARNESS_TEARDOWN_GRACE_S overrides it (tests).
TEARDOWN_GRACE_S = 60.0
PROGRESS_PREFIX = b"step "


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
    from harness.parent_watch import PARENT_ENV, parent_token  # noqa: PLC0415  (light: psutil only)

    env[PARENT_ENV] = parent_token()  # the worker ends its own group if this process dies unseen (SIGKILL)
    return env


def worker_command(python: str, run_dir: Path, launcher: dict[str, Any] | None = None) -> list[str]:
    """The child's argument list (never a shell): the worker, or torchrun starting ``nproc`` of them."""
    launcher = launcher or {}
    if launcher.get("name", "local") == "torchrun":
        return [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                str(int(launcher.get("nproc", 1))), "-m", "harness.worker", str(run_dir)]
    return [python, "-m", "harness.worker", str(run_dir)]


def _descendants(pid: int) -> list[int]:
    try:
        import psutil  # noqa: PLC0415

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # noqa: BLE001  (no psutil, or the process is gone)
        return []


def _signal_all(pgid: int, pids: list[int], sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass
    for pid in pids:  # torchrun's ranks run in sessions of their own: the group signal misses them
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal the child's whole process group (and every descendant, wherever its session), then
    SIGKILL whatever is left after a grace period."""
    tree = _descendants(proc.pid)
    if proc.poll() is not None and not tree:
        return
    _signal_all(proc.pid, tree, sig)
    try:
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    tree = sorted(set(tree) | set(_descendants(proc.pid)))
    deadline = time.time() + KILL_GRACE_S
    while tree and time.time() < deadline and any(pid_alive(p) for p in tree):
        time.sleep(0.1)
    if proc.poll() is None or any(pid_alive(p) for p in tree):
        _signal_all(proc.pid, [p for p in tree if pid_alive(p)], signal.SIGKILL)
    proc.wait()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent's wait is missing
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class _ProgressTail:
    """Echo the worker log's progress lines (``step ...``) to our stdout; reads only what is new."""

    def __init__(self, path: Path, label: str | None) -> None:
        self.path, self.label, self.offset, self.partial = path, label, 0, b""

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return
        if not chunk:
            return
        self.offset += len(chunk)
        lines = (self.partial + chunk).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            if line.startswith(PROGRESS_PREFIX):
                text = line.decode("utf-8", errors="replace").rstrip()
                print(f"[{self.label}] {text}" if self.label else text, flush=True)


def _status_from_exit(returncode: int, timed_out: bool) -> tuple[str, str]:
    if timed_out:
        return "timeout", "run exceeded timeout_s; process group killed"
    if returncode < 0:
        name = signal.Signals(-returncode).name
        return "crashed", f"worker killed by signal {name}"
    return "crashed", f"worker exited with code {returncode} without writing a result"


def spawn_worker(run_dir: Path, python: str, timeout_s: float, sampler: Any,
                 launcher: dict[str, Any] | None = None, label: str | None = None) -> dict[str, Any]:
    """Run the worker; return the parent's view: status (if the child wrote none), wall time, log tail, and
    the worker's :class:`WorkerResult` under "worker" when it wrote one."""
    log_path = run_dir / run_files.WORKER_LOG
    (run_dir / run_files.WORKER_RESULT).unlink(missing_ok=True)
    started = time.time()
    with open(log_path, "wb") as log:
        # An argument list, never a shell: no config value is ever interpreted by one.
        proc = subprocess.Popen(worker_command(python, run_dir, launcher), stdout=log,
                                stderr=subprocess.STDOUT, env=_child_env(), cwd=str(REPO_ROOT),
                                start_new_session=True)
        sampler.watch_pids(proc.pid)
        tail = _ProgressTail(log_path, label)
        timed_out = False
        deadline = started + timeout_s
        grace = float(os.environ.get("HARNESS_TEARDOWN_GRACE_S", TEARDOWN_GRACE_S))
        result_seen: float | None = None
        teardown_note: str | None = None
        try:
            while True:
                try:
                    proc.wait(timeout=max(0.0, min(POLL_S, deadline - time.time())))
                    break
                except subprocess.TimeoutExpired:
                    tail.poll()
                    if result_seen is None and (run_dir / run_files.WORKER_RESULT).exists():
                        result_seen = time.time()
                    if result_seen is not None and time.time() - result_seen >= grace:
                        _kill_group(proc)
                        teardown_note = (f"the worker was still running {grace:.0f} s after its result was written "
                                         "(hung in teardown); the harness ended its process group and kept the result")
                        print(f"[{label}] {teardown_note}" if label else teardown_note, flush=True)
                        break
                    if time.time() >= deadline:
                        timed_out = True
                        _kill_group(proc)
                        break
        except KeyboardInterrupt as err:  # SIGINT, SIGTERM or SIGHUP to the parent (harness.launch.interrupts)
            with interrupts.shielded():  # ending the group is never cut short: no rank is left behind
                _kill_group(proc, interrupts.child_signal(err))
            raise
        tail.poll()
    view: dict[str, Any] = {"wall_time_s": round(time.time() - started, 3), "returncode": proc.returncode,
                            "spawned_at": started, "teardown_note": teardown_note}
    worker_result = run_dir / run_files.WORKER_RESULT
    if worker_result.exists() and not timed_out:
        try:
            view["worker"] = WorkerResult.from_dict(read_json(worker_result), run_files.WORKER_RESULT)
        except ValueError as err:  # corrupt JSON, or not the worker's record (RecordError names the field)
            view["status"], view["reason"] = "crashed", str(err)
    if "worker" not in view and "status" not in view:
        view["status"], view["reason"] = _status_from_exit(proc.returncode, timed_out)
    view["log_tail"] = log_tail(log_path)
    return view


def existing_ok_result(run_dir: Path) -> Result | None:
    """An earlier ok result in ``run_dir`` (resume); a corrupt one is reported and ignored."""
    from harness.results.load import read_result  # noqa: PLC0415  (results imports pandas lazily, runner stays light)

    path = run_files.result_path(run_dir)
    if not path.exists():
        return None
    try:
        record = read_result(path)
    except (OSError, ValueError) as err:
        print(f"warning: {err}; running it again", file=sys.stderr)
        return None
    return record if record.ok else None
