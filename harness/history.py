"""Append-only run history, one JSON-lines file per machine, safe under concurrent sweeps.

Every finished run (any status) adds one line: when, the machine, the commit, the framework and its
package versions, the job hash and the headline metrics. Lines are never rewritten; a writer holds
an exclusive ``flock`` for the append so lines from parallel sweeps never interleave.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from harness.results import flatten

HISTORY_DIR = "history"


def history_path(results_dir: Path, machine_id: str) -> Path:
    return Path(results_dir) / HISTORY_DIR / f"{machine_id}.jsonl"


def history_entry(record: dict[str, Any]) -> dict[str, Any]:
    env = record.get("env") or {}
    return {
        **flatten(record),
        "git_commit": (env.get("git") or {}).get("commit"),
        "git_dirty": (env.get("git") or {}).get("dirty"),
        "packages": (record.get("framework") or {}).get("packages"),
        "gpu_name": env.get("gpu_name"), "gpu_count": env.get("gpu_count"), "driver": env.get("driver"),
    }


def append_history(record: dict[str, Any], results_dir: Path) -> Path:
    entry = history_entry(record)
    path = history_path(results_dir, entry["machine_id"] or "unknown")
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
    with open(path, "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            os.write(handle.fileno(), line)  # one write call per line, under the lock
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return path


def read_history(path: Path, *, warn=print) -> list[dict[str, Any]]:
    """All entries of a history file; a torn or corrupt line is named and skipped."""
    entries = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            warn(f"skipped: {path}:{number}: corrupt history line")
    return entries


def read_all(results_dir: Path, *, warn=print) -> list[dict[str, Any]]:
    """Every entry of every machine's history under ``results_dir`` (file order, machines sorted by id);
    an empty list when there is no history yet."""
    folder = Path(results_dir) / HISTORY_DIR
    entries: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        entries.extend(read_history(path, warn=warn))
    return entries
