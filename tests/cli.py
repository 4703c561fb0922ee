"""Run the harness CLI exactly as a user does, in a subprocess, and read back what it wrote."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


# After a timeout, how long the harness gets to end its worker's process group (torchrun and its ranks).
STOP_GRACE_S = 30


def harness(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m harness ARGS``; past ``timeout`` it is stopped the way a user stops it (SIGTERM: the
    harness ends its worker's whole process group and records the run ``interrupted``), and killed only if
    it has not exited ``STOP_GRACE_S`` later. subprocess.run's own timeout would SIGKILL the harness alone
    and orphan its worker (a torchrun agent and its ranks, each in its own session, were found still
    running 25 minutes after a timed-out test on a loaded machine). Raises TimeoutExpired as run() does."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise subprocess.TimeoutExpired(proc.args, timeout, output=out, stderr=err) from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def results(results_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).rglob("result.json"))
            if ".hydra" not in p.parts]


def by_fault(results_dir: Path) -> dict[str, dict[str, Any]]:
    return {r["job"]["framework"]["fault"]: r for r in results(results_dir)}
