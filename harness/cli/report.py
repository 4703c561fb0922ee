"""``python -m harness report [RESULTS...] [--out DIR] [--reference trl] [--name NAME] [--trend]``.

Renders one self-contained HTML report of every result.json found under RESULTS (default ``results/``)
into ``--out`` (default ``reports/``), rebuilds ``reports/index.html`` and prints the report's path.
``--trend`` renders the history trend page instead, from the ``history/*.jsonl`` files under RESULTS.
A corrupt result file is named on stderr and skipped; nothing found exits 2 with one line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.args import RESULTS_HELP, default_reports_dir, resolve_results


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse would print the usage too)
        print(f"error: report: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m harness report", description="Render the HTML comparison report of results.")
    p.add_argument("results", nargs="*", default=[], help=RESULTS_HELP)
    p.add_argument("--out", default=default_reports_dir(), help="reports folder (default: $HARNESS_REPORTS_DIR or reports)")
    p.add_argument("--reference", default=None, help="framework the ratios are against (default: the framework "
                   "registry's reference, the first of a plain -m; else the first)")
    p.add_argument("--name", default=None, help="report file name (default: SUITE-TIMESTAMP)")
    p.add_argument("--trend", action="store_true", help="render the history trend page instead")
    p.add_argument("--index", action="store_true", help="only rebuild OUT/index.html, the list of the reports in "
                   "OUT (every report rebuilds it; it is not committed)")
    return p


def history_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_file() and path.suffix == ".jsonl":
            found.append(path)
        elif path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.jsonl")) if p.parent.name == "history")
    return found


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    if args.index:
        from harness.report.index_page import render_index

        print(f"index: {render_index(Path(args.out))}")
        return 0
    paths = resolve_results(args.results)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        print(f"error: report: not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.trend:
        from harness.report.render import render_trend

        files = history_files(paths)
        if not files:
            print(f"error: report: no history files (history/*.jsonl) under {', '.join(map(str, paths))}", file=sys.stderr)
            return 2
        path = render_trend(files, Path(args.out), name=args.name or "trend",
                            warn=lambda msg: print(msg, file=sys.stderr))
        print(f"trend: {path}")
        return 0
    from harness.results.load import load_records

    records = load_records(paths)
    if not records:
        print(f"error: report: no result files found under {', '.join(map(str, paths))}", file=sys.stderr)
        return 2
    frameworks = sorted({r.framework.name for r in records})
    if args.reference is not None and args.reference not in frameworks:
        print(f"error: report: --reference {args.reference}: no result of that framework "
              f"(frameworks present: {', '.join(frameworks)})", file=sys.stderr)
        return 2
    from harness.report.render import render_report

    path = render_report(records, Path(args.out), reference=args.reference, name=args.name)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
