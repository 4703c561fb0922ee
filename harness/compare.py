"""Baseline vs current results: ``field:N%`` checks, repeats as the noise floor, exit 1 on a regression.

    python -m harness compare                                  # results/ against this machine's baselines
    python -m harness compare results/bench --suite seed_0.5b --check "tokens_per_s:-5% eval_loss:+0.02"
    python -m harness compare results/bench --accept           # make these results the new baseline

A baseline is a committed JSON file per machine and suite, ``benchmarks/baselines/<machine_id>/<suite>.json``
(layout in ``BASELINE_LAYOUT``). Results are only compared on the machine kind they came from.

Checks are written ``field:N%`` (relative) or ``field:+X`` / ``field:-X`` (absolute). The number is how much
change is tolerated in the metric's *bad* direction, which is data (``METRICS[field].higher_is_better``), not
code; the sign, when written, must agree with it (``tokens_per_s:-5%``: a drop of more than 5% fails;
``peak_mem:+5%``: growth of more than 5% fails; ``eval_loss:+0.02``: a rise of more than 0.02 fails).
A change is a regression only when it exceeds the threshold AND is outside the noise of the repeats
(``harness.measure.stats.difference_is_noise``); with a single value on a side, the threshold alone decides.

Exit status: 0 no regression (or ``--accept`` done); 1 at least one regression, or a (point, framework) of the
baseline with no current ok result (it failed, or was not run: a check that silently shrinks is no check;
``--allow-missing`` makes those notes); 2 bad input (check syntax, unknown metric, missing or foreign
baseline, no results): always one line on stderr.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from harness.atomic import atomic_write_json, read_json
from harness.measure.stats import difference_is_noise, summarize
from harness.records import Result
from harness.results import METRICS, flatten, load_records

# The checks run when --check is not given. Throughput may not drop, memory and step time may not grow by
# more than 5%; eval loss (a quality guard: a faster run that learns less is no win) may not rise by 0.02.
DEFAULT_CHECKS = ("tokens_per_s:-5% supervised_tokens_per_s:-5% step_time_s:+5% "
                  "peak_mem:+5% torch_peak_reserved:+5% eval_loss:+0.02")

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

VERDICTS = ("ok", "REGRESSION", "noise", "improved", "missing", "new")
_CHECK_RE = re.compile(r"^(?P<field>[A-Za-z_][A-Za-z0-9_]*):(?P<sign>[+-])?"
                       r"(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?P<percent>%)?$")
_EPS = 1e-9


class CompareError(Exception):
    """Bad input (syntax, unknown metric, missing or foreign baseline): exit 2 with this one line."""


# ----------------------------------------------------------------------------------------------- checks

@dataclass(frozen=True)
class Check:
    metric: str
    amount: float  # tolerated change in the bad direction: percent when ``relative``, else metric units
    relative: bool
    text: str

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.metric].higher_is_better

    @property
    def threshold(self) -> str:
        sign = "-" if self.higher_is_better else "+"
        return f"{sign}{self.amount:g}%" if self.relative else f"{sign}{self.amount:g}"

    def change(self, baseline: float, current: float) -> float:
        """Signed change in this check's units: percent of the baseline when relative, else absolute."""
        delta = current - baseline
        if not self.relative:
            return delta
        if baseline == 0:
            return 0.0 if delta == 0 else math.copysign(math.inf, delta)
        return 100.0 * delta / abs(baseline)

    def worsening(self, baseline: float, current: float) -> float:
        """How much worse (positive) or better (negative) current is, in this check's units."""
        change = self.change(baseline, current)
        return -change if self.higher_is_better else change


def parse_checks(spec: str | Iterable[str]) -> list[Check]:
    """``"tokens_per_s:-5% eval_loss:+0.02"`` (or a list of such strings) -> checks.

    Raises CompareError naming the offending check: bad syntax, unknown metric, a sign that contradicts
    the metric's direction, or a metric checked twice."""
    texts = spec.split() if isinstance(spec, str) else [t for s in spec for t in s.split()]
    checks: dict[str, Check] = {}
    for text in texts:
        match = _CHECK_RE.match(text)
        if not match:
            raise CompareError(f"bad check {text!r}: write FIELD:N% (relative) or FIELD:+X / FIELD:-X "
                               f"(absolute), e.g. tokens_per_s:-5% eval_loss:+0.02")
        name = match["field"]
        if name not in METRICS:
            raise CompareError(f"bad check {text!r}: unknown metric {name!r} (known: {', '.join(METRICS)})")
        amount = float(match["number"])
        if not math.isfinite(amount):
            raise CompareError(f"bad check {text!r}: the tolerance must be a finite number")
        higher = METRICS[name].higher_is_better
        bad_sign = "-" if higher else "+"
        if match["sign"] and match["sign"] != bad_sign:
            direction = "higher" if higher else "lower"
            raise CompareError(f"bad check {text!r}: {name} is better {direction}, so its bad direction is "
                               f"{bad_sign}: write {name}:{bad_sign}{match['number']}{match['percent'] or ''}")
        if name in checks:
            raise CompareError(f"bad check {text!r}: {name} is checked twice")
        checks[name] = Check(name, amount, bool(match["percent"]), text)
    if not checks:
        raise CompareError("bad check '': no check given")
    return list(checks.values())


# ----------------------------------------------------------------------------------------------- records

def ok_records(records: Iterable[Result], suite: str | None = None) -> list[Result]:
    """Only successful, unprofiled runs are compared or accepted (a failure is a result, but has no figures;
    a profiled run's figures include the profiler's cost: it explains, it never sets or fails a baseline)."""
    return [r for r in records if r.ok and not r.profiled and (suite is None or r.suite == suite)]


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


# ----------------------------------------------------------------------------------------------- baseline

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


# ----------------------------------------------------------------------------------------------- compare

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
    limit = check.amount * (1 + _EPS) + _EPS
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
    return result


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "bytes":
        return f"{value / 2**20:,.1f} MiB"
    if abs(value) >= 100:
        return f"{value:,.1f}"
    return f"{value:.4g}"


def _change(row: Row) -> str:
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
                     _number(row.current_median, unit), _change(row), row.check.threshold, row.verdict])
    return pd.DataFrame(data, columns=columns)


def format_table(rows: Sequence[Row]) -> str:
    import pandas as pd

    if not rows:
        return "(nothing to compare)"
    with pd.option_context("display.width", 250, "display.max_columns", None, "display.max_rows", None,
                           "display.max_colwidth", 60):
        return to_frame(rows).to_string(index=False)


# ----------------------------------------------------------------------------------------------- command line

class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print the usage too)
        raise CompareError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", default=["results"], help="result folders or files (default results/)")
    parser.add_argument("--baseline", type=Path, help="baseline file (default: BASELINES/<machine_id>/<suite>.json)")
    parser.add_argument("--baselines-dir", type=Path, help=f"baselines folder (default ${BASELINES_ENV} or {BASELINES_DIR})")
    parser.add_argument("--suite", help="only results of this suite")
    # argparse %-formats help strings: the checks' own % signs must be written %%
    parser.add_argument("--check", action="append",
                        help=f"checks, replacing the default {DEFAULT_CHECKS!r}".replace("%", "%%"))
    parser.add_argument("--accept", action="store_true", help="write the current results as the new baseline")
    parser.add_argument("--allow-missing", action="store_true",
                        help="a baseline framework/point without a current ok result is a note, not a failure (exit 1)")
    return parser


def run(argv: Sequence[str], *, out=None, err=None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(list(argv))
    checks = parse_checks(args.check if args.check else DEFAULT_CHECKS)
    paths = [Path(p) for p in (args.results or ["results"])]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise CompareError(f"no such results: {', '.join(missing)}")
    records = ok_records(load_records(paths, warn=lambda msg: print(msg, file=err)), args.suite)
    if not records:
        where = ", ".join(str(p) for p in paths)
        raise CompareError(f"no ok results{f' of suite {args.suite!r}' if args.suite else ''} in {where}")
    machine = machine_of(records)
    suites = sorted({str(r.suite) for r in records})
    if args.baseline and len(suites) > 1:
        raise CompareError(f"--baseline is one suite's file but the results hold {', '.join(suites)}: add --suite")

    if args.accept:
        command = "python -m harness compare " + " ".join(argv)
        for suite in suites:
            path = args.baseline or baseline_path(machine, suite, args.baselines_dir)
            baseline = accept(records, path, suite=suite, command=command)
            print(f"accepted: {path} ({len(baseline['entries'])} point/framework entries, machine {machine})",
                  file=out)
        return 0

    code = 0
    for suite in suites:
        path = args.baseline or baseline_path(machine, suite, args.baselines_dir)
        baseline = load_baseline(path)
        require_same_machine(machine, baseline, path)
        result = compare(ok_records(records, suite), baseline, checks)
        if not result.rows:
            raise CompareError(f"no result of suite {suite} matches a point/framework of the baseline {path} "
                               f"(--accept to make them the baseline)")
        print(f"suite {suite} on {machine} vs {path} (accepted {baseline.get('accepted_at')})", file=out)
        print(result.table(), file=out)
        for note in result.notes:
            print(f"note: {note}", file=out)
        for framework, version, point in result.missing:
            print(f"{'note' if args.allow_missing else 'MISSING'}: baseline {framework} {version} at point {point} "
                  f"has no current ok result (it failed or was not run)", file=out)
        regressions = result.regressions
        print(f"{len(regressions)} regression(s) in {len(result.rows)} checked metric(s)"
              + (": " + ", ".join(f"{r.framework} {r.metric} {_change(r)}" for r in regressions) if regressions else ""),
              file=out)
        if result.missing and not args.allow_missing:
            names = sorted({framework for framework, _, _ in result.missing})
            print(f"error: no current ok result for baseline framework(s) {', '.join(names)} of suite {suite} "
                  f"(--allow-missing to compare the rest only)", file=err)
        code = max(code, result.exit_code_for(allow_missing=args.allow_missing))
    return code


def main(argv: Sequence[str]) -> int:
    try:
        return run(argv)
    except CompareError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
