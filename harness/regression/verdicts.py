"""Baseline vs current, per metric: a regression only when the change exceeds the threshold AND is
outside the noise of the repeats (``harness.stats.difference_is_noise``); the comparison table."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from harness.stats import difference_is_noise, summarize
from harness.records import Result
from harness.results.load import METRICS
from harness.regression.thresholds import Check, EPS
from harness.regression.grouping import group_current, metric_values, ok_records


VERDICTS = ("ok", "REGRESSION", "noise", "improved", "missing", "new")


@dataclass
class Row:
    suite: str
    point_hash: str
    framework: str
    baseline_version: str | None
    version: str
    metric: str
    n_baseline: int
    n_current: int
    baseline_median: float | None
    current_median: float | None
    change: float | None  # in the check's units (percent when relative)
    check: Check
    verdict: str

    @property
    def regression(self) -> bool:
        return self.verdict == "REGRESSION"


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # baseline entries with no current ok result: (framework, version, point_hash)
    missing: list[tuple[str, str, str]] = field(default_factory=list)
    # (point, framework) pairs found in both the baseline and the results
    matched: int = 0
    # checked metrics measured neither in the baseline nor in the results of any matched pair (NVML peaks
    # on a CPU machine): not checked, and said so, never silently
    unmeasured: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.regression]

    def exit_code_for(self, *, allow_missing: bool = False) -> int:
        return 1 if self.regressions or (self.missing and not allow_missing) else 0

    @property
    def exit_code(self) -> int:
        return self.exit_code_for()

    def table(self) -> str:
        return format_table(self.rows)


def verdict(check: Check, baseline_values: Sequence[float], current_values: Sequence[float]) -> tuple[str, float | None]:
    """(verdict, change) for one metric. Beyond the threshold and outside the noise: REGRESSION or improved;
    beyond the threshold but inside the repeats' spread: noise; otherwise ok."""
    if not current_values:
        return "missing", None
    if not baseline_values:
        return "new", None
    base, cur = summarize(baseline_values)["median"], summarize(current_values)["median"]
    change = check.change(base, cur)
    worse = check.worsening(base, cur)
    limit = check.amount * (1 + EPS) + EPS
    if worse > limit:
        return ("noise" if difference_is_noise(baseline_values, current_values) else "REGRESSION"), change
    if -worse > limit:
        return ("noise" if difference_is_noise(baseline_values, current_values) else "improved"), change
    return "ok", change


def compare(records: Iterable[Result], baseline: dict[str, Any], checks: Sequence[Check]) -> Comparison:
    """Compare ok ``records`` (one machine, the baseline's) with ``baseline`` metric by metric."""
    entries = {(e["point_hash"], e["framework"]): e for e in baseline.get("entries", [])}
    result = Comparison()
    seen: set[tuple[str, str]] = set()
    for (suite, point, framework, version), group in group_current(ok_records(records)).items():
        entry = entries.get((point, framework))
        if entry is None:
            result.notes.append(f"no baseline for {framework} {version} at point {point} of suite {suite} "
                                f"(--accept adds it)")
            continue
        seen.add((point, framework))
        for check in checks:
            base_values = [float(v) for v in (entry.get("metrics") or {}).get(check.metric, []) if v is not None]
            cur_values = metric_values(group, check.metric)
            if not base_values and not cur_values:
                continue  # not measured on this machine (NVML peak on a CPU box, say)
            verdict_, change = verdict(check, base_values, cur_values)
            result.rows.append(Row(
                suite=suite, point_hash=point, framework=framework, baseline_version=entry.get("version"),
                version=version, metric=check.metric, n_baseline=len(base_values), n_current=len(cur_values),
                baseline_median=summarize(base_values)["median"], current_median=summarize(cur_values)["median"],
                change=change, check=check, verdict=verdict_))
    for (point, framework), entry in sorted(entries.items()):
        if (point, framework) not in seen:
            result.missing.append((framework, str(entry.get("version")), point))
    result.matched = len(seen)
    checked = {row.metric for row in result.rows}
    result.unmeasured = [check.metric for check in checks if check.metric not in checked] if seen else []
    return result


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value / 2**20:,.1f} MiB"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def change_text(row: Row) -> str:
    if row.change is None:
        return "-"
    if row.check.relative:
        return f"{row.change:+.1f}%"
    unit = METRICS[row.metric].unit
    return f"{row.change:+.4g}" if unit != "bytes" else f"{row.change / 2**20:+,.1f} MiB"


def to_frame(rows: Sequence[Row]):
    import pandas as pd

    columns = ["suite", "point", "framework", "version", "metric", "n", "baseline median", "current median",
               "change", "threshold", "verdict"]
    data = []
    for row in rows:
        unit = METRICS[row.metric].unit
        version = row.version if row.baseline_version in (None, row.version) else f"{row.baseline_version} -> {row.version}"
        data.append([row.suite, row.point_hash, row.framework, version, row.metric,
                     f"{row.n_baseline}/{row.n_current}", _number(row.baseline_median, unit),
                     _number(row.current_median, unit), change_text(row), row.check.threshold, row.verdict])
    return pd.DataFrame(data, columns=columns)


def format_table(rows: Sequence[Row]) -> str:
    import pandas as pd

    if not rows:
        return "(nothing to compare)"
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_rows", None,
                           "display.max_colwidth", 60):
        return to_frame(rows).to_string(index=False)
