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
(``harness.stats.difference_is_noise``); with a single value on a side, the threshold alone decides.

Exit status: 0 no regression (or ``--accept`` done); 1 at least one regression, or a (point, framework) of the
baseline with no current ok result (it failed, or was not run: a check that silently shrinks is no check;
``--allow-missing`` makes those notes); 2 bad input (check syntax, unknown metric, missing or foreign
baseline, no results): always one line on stderr."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from harness.cli.args import RESULTS_HELP, resolve_results
from harness.results.load import load_records
from harness.regression.thresholds import CompareError, DEFAULT_CHECKS, parse_checks
from harness.regression.grouping import machine_of, ok_records
from harness.regression.baselines import (BASELINES_DIR, BASELINES_ENV, accept, baseline_path, load_baseline,
                                         require_same_machine)
from harness.regression.verdicts import change_text, compare


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print the usage too)
        raise CompareError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m harness compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="*", default=[], help=RESULTS_HELP)
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
    paths = resolve_results(args.results, err)
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
        if not result.rows and result.matched:
            raise CompareError(f"nothing to check in suite {suite}: {', '.join(result.unmeasured)} "
                               f"{'was' if len(result.unmeasured) == 1 else 'were'} measured neither in these "
                               f"results nor in the baseline {path} (a CPU run has no GPU memory or energy)")
        if not result.rows:
            raise CompareError(f"no result of suite {suite} matches a point/framework of the baseline {path} "
                               f"(--accept to make them the baseline)")
        print(f"suite {suite} on {machine} vs {path} (accepted {baseline.get('accepted_at')})", file=out)
        print(result.table(), file=out)
        for note in result.notes:
            print(f"note: {note}", file=out)
        if result.unmeasured:
            print(f"note: not measured in these results or the baseline, so not checked: "
                  f"{', '.join(result.unmeasured)}", file=out)
        for framework, version, point in result.missing:
            print(f"{'note' if args.allow_missing else 'MISSING'}: baseline {framework} {version} at point {point} "
                  f"has no current ok result (it failed or was not run)", file=out)
        regressions = result.regressions
        print(f"{len(regressions)} regression(s) in {len(result.rows)} checked metric(s)"
              + (": " + ", ".join(f"{r.framework} {r.metric} {change_text(r)}" for r in regressions) if regressions else ""),
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
