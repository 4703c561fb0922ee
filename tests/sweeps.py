"""Real sweeps started in the background, for tests that signal them or run two at once.

Each sweep is the real CLI in a subprocess of its own process group (so a test can signal exactly
it), with stdout and stderr in files under the test's tmp_path. Tests wait for what the sweep has
done (the fake worker's "hanging" line in its log, a line on stderr), never for a fixed time.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from tests.cli import REPO_ROOT

FAST = ("run", "framework=fake", "train.max_steps=3", "train.measure_warmup_steps=1")
HANGING = re.compile(r"fake: hanging \(pid (\d+), process group (\d+)\)")
WAIT_S = 240.0  # generous: a loaded 2-core machine imports torch slowly


class Sweep:
    def __init__(self, name: str, args: list[str], tmp_path: Path, stdout: int | None = None) -> None:
        self.out_path, self.err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        self.err_file = open(self.err_path, "w")  # noqa: SIM115  (closed in wait)
        out = stdout if stdout is not None else open(self.out_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO_ROOT,
                                     env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=out,
                                     stderr=self.err_file, text=True, start_new_session=True)
        if stdout is None:
            out.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float = WAIT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.err_file.close()

    def stop(self) -> None:
        """End what this test started if an assertion failed first (its own process group only)."""
        if self.proc.poll() is None:
            self.proc.terminate()  # the harness ends its worker's group on SIGTERM
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self.err_file.close()

    def out(self) -> str:
        return self.out_path.read_text() if self.out_path.exists() else ""

    def err(self) -> str:
        return self.err_path.read_text()


def wait_until(what: str, check: Callable[[], object], sweep: Sweep, timeout: float = WAIT_S) -> object:
    """Poll ``check`` until it returns something true; fail at once if the sweep exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if sweep.proc.poll() is not None:
            raise AssertionError(f"sweep exited ({sweep.proc.returncode}) before {what}:\n{sweep.out()}\n{sweep.err()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}:\n{sweep.out()}\n{sweep.err()}")


def hanging_workers(results_dir: Path, count: int = 1) -> list[tuple[int, int]]:
    """(pid, process group) of every fake worker now hanging under ``results_dir`` (``count`` or none)."""
    found = []
    for log in Path(results_dir).rglob("worker.log"):
        found += [(int(p), int(g)) for p, g in HANGING.findall(log.read_text(errors="replace"))]
    return found if len(found) >= count else []


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def pid_gone(pid: int) -> bool:
    """Gone or a zombie (exited; only its parent's wait is missing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    """For what the kernel finishes just after the parent exits (init reaping reparented processes)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def alive_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose command line names ``marker`` (a test's own tmp path): what a
    test started and should have seen ended."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and not pid_gone(int(name)):
            pids.append(int(name))
    return pids
