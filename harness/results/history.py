"""Append-only run history, one JSON-lines file per machine, safe under concurrent sweeps.

Every finished run (any status) adds one line: when, the machine, the commit, the framework and its
package versions, the job hash and the headline metrics. Lines are never rewritten; a writer holds
an exclusive ``flock`` for the append so lines from parallel sweeps never interleave. A line torn by a
crash mid-append (no trailing newline) is closed with a newline before the next entry is written, so it
costs only itself: readers name it (file and line) and skip it, and the next record stays readable.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from harness.records import Result
from harness.results.load import flatten

HISTORY_DIR = "history"


def history_path(results_dir: Path, machine_id: str) -> Path:
    return Path(results_dir) / HISTORY_DIR / f"{machine_id}.jsonl"


def history_entry(record: Result) -> dict[str, Any]:
    env = record.env
    return {
        **flatten(record),
        "git_commit": env.git.commit,
        "git_dirty": env.git.dirty,
        "packages": record.framework.packages if record.framework.has("packages") else None,
        "gpu_name": env.gpu_name, "gpu_count": env.gpu_count, "driver": env.driver,
        # profiled runs only (memory | time): labelled, so trends and regressions can leave them out
        **({"profile": record.profiled} if record.profiled else {}),
    }


def append_history(record: Result, results_dir: Path) -> Path:
    entry = history_entry(record)
    path = history_path(results_dir, entry["machine_id"] or "unknown")
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, ensure_ascii=False, default=str) + "\n").encode()
    with open(path, "a+b") as handle:  # a+: the last byte must be readable (torn-line check)
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            size = os.fstat(handle.fileno()).st_size  # read under the lock: no writer is mid-line now
            if size and os.pread(handle.fileno(), 1, size - 1) != b"\n":
                line = b"\n" + line  # a torn last line: start ours on a fresh one
            os.write(handle.fileno(), line)  # one write call per line, under the lock
            os.fsync(handle.fileno())
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    return path


def read_history(path: Path, *, warn=print) -> list[dict[str, Any]]:
    """All entries of a history file; a torn or corrupt line is named (file:line) and skipped.

    Lines are decoded one at a time: a crash can tear a line inside a multi-byte character."""
    entries = []
    for number, raw in enumerate(Path(path).read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            warn(f"skipped: {path}:{number}: corrupt history line (torn by a crash mid-append?)")
            continue
        if not isinstance(entry, dict):
            warn(f"skipped: {path}:{number}: not a history entry (a JSON {type(entry).__name__})")
            continue
        entries.append(entry)
    return entries


def read_all(results_dir: Path, *, warn=print) -> list[dict[str, Any]]:
    """Every entry of every machine's history under ``results_dir`` (file order, machines sorted by id);
    an empty list when there is no history yet."""
    folder = Path(results_dir) / HISTORY_DIR
    entries: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        entries.extend(read_history(path, warn=warn))
    return entries
