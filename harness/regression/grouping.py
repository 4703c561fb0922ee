"""Results grouped as a baseline keeps them: ok results per (suite, point, framework, version) on one machine."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from harness.records import Result
from harness.results.load import flatten
from harness.regression.thresholds import CompareError


def ok_records(records: Iterable[Result], suite: str | None = None) -> list[Result]:
    """Only successful, unprofiled runs are compared or accepted (a failure is a result, but has no figures;
    a profiled run's figures include the profiler's cost: it explains, it never sets or fails a baseline)."""
    return [r for r in records if r.ok and not r.profiled and (suite is None or r.suite == suite)]


def machine_of(records: Sequence[Result]) -> str:
    """The one machine_id of these results; results from several machines cannot share a baseline."""
    machines = sorted({str(r.env.machine_id or "unknown") for r in records})
    if len(machines) != 1:
        raise CompareError(f"results come from several machines ({', '.join(machines)}): compare one machine's "
                           f"results at a time: python -m harness compare FOLDER, e.g. {_folder_of_one_machine(records)}")
    return machines[0]


def _folder_of_one_machine(records: Sequence[Result]) -> str:
    """A hint: folders that each hold one machine's results only (a suite folder, widened to its parents
    while everything under them is still that machine's), up to three."""
    import os

    def machine(r: Result) -> str:
        return str(r.env.machine_id or "unknown")

    located = [(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(r.source)))), machine(r))
               for r in records if r.source]  # RESULTS/<suite>/<point>/<framework>/<rN>/result.json

    def machines_under(folder: str) -> set[str]:
        return {m for d, m in located if d == folder or d.startswith(folder + os.sep)}

    hints: list[str] = []
    for suite_dir, m in sorted(set(located)):
        folder = suite_dir
        while os.path.dirname(folder) != folder and machines_under(os.path.dirname(folder)) == {m}:
            folder = os.path.dirname(folder)
        shown = os.path.relpath(folder) if folder.startswith(os.getcwd() + os.sep) or not os.path.isabs(folder) else folder
        hint = f"{shown} ({m})"
        if hint not in hints:
            hints.append(hint)
    return "; ".join(hints[:3]) + (" ..." if len(hints) > 3 else "") if hints else "one results folder per machine"


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
