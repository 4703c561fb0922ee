"""The accepted baselines: one committed JSON file per machine and suite,
``benchmarks/baselines/<machine_id>/<suite>.json`` (layout in ``BASELINE_LAYOUT``); reading, checking the
machine, and ``--accept``."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from harness.atomic import atomic_write_json, read_json
from harness.records import Result
from harness.results.load import METRICS, flatten
from harness.regression.thresholds import CompareError
from harness.regression.grouping import group_current, machine_of, metric_values, ok_records


BASELINES_DIR = Path("benchmarks") / "baselines"  # relative to the working directory, like results/
BASELINES_ENV = "HARNESS_BASELINES_DIR"  # overrides BASELINES_DIR (tests, CI checkouts elsewhere)
BASELINE_SCHEMA = 1
BASELINE_LAYOUT = """
benchmarks/baselines/<machine_id>/<suite>.json
  schema, machine_id, suite, accepted_at (ISO UTC), accepted_by (the command)
  entries: [ one per (point_hash, framework), sorted by both ]
    point_hash, framework, version, job_hash, packages: {torch, transformers, ...},
    model, dataset, commit, dirty, date (ISO UTC of the newest result), run_ids: [...],
    metrics: {METRIC: [value of each ok repeat, in repeat order]}   (metrics never measured are left out)
"""


def baselines_dir(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get(BASELINES_ENV) or BASELINES_DIR)


def baseline_path(machine_id: str, suite: str, root: str | Path | None = None) -> Path:
    return baselines_dir(root) / machine_id / f"{suite}.json"


def load_baseline(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CompareError(f"no baseline at {path}: run `python -m harness compare RESULTS --accept` "
                           f"to make these results the baseline")
    try:
        baseline = read_json(path)
    except (OSError, ValueError) as err:
        raise CompareError(f"unreadable baseline: {err}") from None
    if not isinstance(baseline, dict) or not isinstance(baseline.get("entries"), list) \
            or "machine_id" not in baseline:
        raise CompareError(f"{path}: not a baseline file (expected machine_id, suite and entries)")
    return baseline


def require_same_machine(machine_id: str, baseline: dict[str, Any], path: Path | str = "") -> None:
    if baseline.get("machine_id") != machine_id:
        raise CompareError(f"refusing to compare results from machine {machine_id} with the baseline of machine "
                           f"{baseline.get('machine_id')} ({path}): numbers only compare on the same machine kind")


def _iso(unix: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix)) if unix else None


def baseline_entry(records: Sequence[Result]) -> dict[str, Any]:
    """One (point_hash, framework) of a baseline from its ok repeats (a single version and job)."""
    first = flatten(records[0])
    versions = sorted({str(flatten(r)["version"]) for r in records})
    jobs = sorted({str(r.job_hash) for r in records})
    if len(versions) > 1 or len(jobs) > 1:
        raise CompareError(f"cannot accept {first['framework']} at point {first['point_hash']}: the results hold "
                           f"several versions/jobs ({', '.join(versions)}; {', '.join(jobs)}); pass the result "
                           f"folders of one version")
    newest = max(records, key=lambda r: r.phases.get("result_written") or 0)
    git = newest.env.git
    metrics = {}
    for name in METRICS:
        values = metric_values(records, name)
        if values:
            metrics[name] = values
    return {
        "point_hash": first["point_hash"], "framework": first["framework"], "version": versions[0],
        "job_hash": jobs[0], "packages": newest.framework.packages or {},
        "model": first["model"], "dataset": first["dataset"],
        "commit": git.commit, "dirty": any(r.env.git.dirty for r in records),
        "date": _iso(newest.phases.get("result_written")),
        "run_ids": [r.run_id for r in records],
        "metrics": metrics,
    }


def build_baseline(records: Sequence[Result], *, suite: str, previous: dict[str, Any] | None = None,
                   command: str | None = None) -> dict[str, Any]:
    """The baseline for one suite from ok results of one machine. Entries of ``previous`` for other
    (point, framework) pairs are kept, so frameworks can be accepted one at a time."""
    records = ok_records(records, suite)
    if not records:
        raise CompareError(f"nothing to accept: no ok result of suite {suite!r}")
    machine = machine_of(records)
    if previous is not None:
        require_same_machine(machine, previous)
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in (previous or {}).get("entries", []):
        entries[(entry["point_hash"], entry["framework"])] = entry
    by_pair: dict[tuple[str, str], list[Result]] = {}
    for (_, point, framework, _), group in group_current(records).items():
        by_pair.setdefault((point, framework), []).extend(group)
    for pair, group in by_pair.items():
        entries[pair] = baseline_entry(group)
    return {
        "schema": BASELINE_SCHEMA, "machine_id": machine, "suite": suite,
        "accepted_at": _iso(time.time()), "accepted_by": command,
        "entries": [entries[k] for k in sorted(entries)],
    }


def accept(records: Sequence[Result], path: Path, *, suite: str, command: str | None = None) -> dict[str, Any]:
    """Write ``records`` as the baseline at ``path`` (atomically, merged with what is there)."""
    previous = load_baseline(path) if Path(path).is_file() else None
    baseline = build_baseline(records, suite=suite, previous=previous, command=command)
    atomic_write_json(Path(path), baseline)
    return baseline
