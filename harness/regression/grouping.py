"""Results grouped as a baseline keeps them: ok results per (suite, point, framework, version) on one machine."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from harness.records import Result
from harness.results.load import flatten
from harness.regression.thresholds import CompareError


def ok_records(records: Iterable[Result], suite: str | None = None) -> list[Result]:
    """Only successful runs are compared or accepted (a failure is a result, but has no figures)."""
    return [r for r in records if r.ok and (suite is None or r.suite == suite)]


def machine_of(records: Sequence[Result]) -> str:
    """The one machine_id of these results; results from several machines cannot share a baseline."""
    machines = sorted({str(r.env.machine_id or "unknown") for r in records})
    if len(machines) != 1:
        raise CompareError(f"results come from several machines ({', '.join(machines)}): "
                           f"compare one machine's results at a time")
    return machines[0]


def group_current(records: Iterable[Result]) -> dict[tuple[str, str, str, str], list[Result]]:
    """(suite, point_hash, framework, version) -> records in repeat order. The baseline is keyed by
    (point_hash, framework) only, so each version of a bisection is compared with the same baseline."""
    groups: dict[tuple[str, str, str, str], list[Result]] = {}
    for record in records:
        row = flatten(record)
        key = (str(row["suite"]), str(row["point_hash"]), str(row["framework"]), str(row["version"]))
        groups.setdefault(key, []).append(record)
    for group in groups.values():
        group.sort(key=lambda r: (r.repeat or 0, r.phases.get("result_written") or 0))
    return dict(sorted(groups.items()))


def metric_values(records: Iterable[Result], metric: str) -> list[float]:
    values = []
    for record in records:
        value = flatten(record)[metric]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values.append(float(value))
    return values
