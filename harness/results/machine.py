"""The machine and code a result came from: GPU, driver, CUDA, Python, git commit.

``machine_id`` keys history and baselines: results are only compared on the same kind of machine.
"""
from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
from functools import lru_cache
from typing import Any

from harness.hub import REPO_ROOT


# Folders of the checkout the harness writes its outputs into (git pathspecs, relative to the repository root).
OUTPUTS = ("reports", "results", "benchmarks/baselines")


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None
    declared = os.environ.get("HARNESS_SOURCE_COMMIT")
    if declared:
        # A copy of the working tree whose git metadata is not the source's (the GPU machine gets the
        # files, but .git as of an older snapshot): the sender names the commit it sent, clean.
        return {"commit": declared, "dirty": False, "declared_by": "HARNESS_SOURCE_COMMIT"}
    commit = git("rev-parse", "HEAD")
    # Dirty means changed code or config: what the harness writes into the checkout itself (reports/index.html,
    # which every sweep rebuilds, results, accepted baselines) must not mark a fresh clone dirty after its
    # Quick start, or every later run would be disclosed as "uncommitted code".
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in OUTPUTS))
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def machine_id(gpu: dict[str, Any]) -> str:
    if gpu.get("gpu_count"):
        name = re.sub(r"[^a-z0-9]+", "-", str(gpu.get("gpu_name", "gpu")).lower()).strip("-")
        return f"{gpu['gpu_count']}x{name}-driver{gpu.get('driver', 'unknown')}"
    cpu = re.sub(r"[^a-z0-9]+", "-", (platform.processor() or platform.machine()).lower()).strip("-")
    return f"cpu-{cpu}-{os.cpu_count()}cores"


def cpu_affinity() -> str | None:
    """The CPUs this process (and the worker it starts, which inherits them) may run on, as ranges ("0-3,8"),
    or None when that is every CPU: a pinned run (``taskset -c 0-7 python -m harness run ...``) says so."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) == os.cpu_count():
        return None
    ranges: list[str] = []
    start = prev = cpus[0]
    for cpu in cpus[1:] + [None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if cpu is not None:
            start = prev = cpu
    return ",".join(ranges)


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    from harness.sampling.devices import gpu_environment

    gpu = gpu_environment()
    return {
        "hostname": socket.gethostname(),
        "machine_id": machine_id(gpu),
        **gpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": cpu_affinity(),
        "git": git_commit(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
