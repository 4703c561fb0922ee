"""argparse for the harness's commands: a usage error is one ``error:`` line and exit 2 (argparse
itself prints the whole usage first), ``--help`` prints help and exits 0."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn, Sequence


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog.removeprefix('python -m harness ')}: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | int:
    """The parsed arguments, or the exit code when argparse ended (``--help``: 0, a bad argument: 2)."""
    try:
        return parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


def fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def single_line(message: str) -> str:
    """Preflight errors are one line: later lines of a library's message are folded in."""
    parts = [p.strip() for p in str(message).strip().splitlines() if p.strip()]
    return " | ".join(parts) if parts else "invalid input"


def default_results_dir() -> str:
    """What ``run`` writes to when results_dir is not given (conf/config.yaml), so report, compare and audit
    read the same place by default (and a test's or CI's HARNESS_RESULTS_DIR keeps them out of the checkout)."""
    return os.environ.get("HARNESS_RESULTS_DIR") or "results"


# A committed result set (the README's figures: results/h200, results/cpu, ...) carries this file. report, audit and
# compare without arguments leave such folders out, so a fresh clone's own runs are not pooled with the shipped
# ones (the same point and job hashes: an older run recorded fewer audit fields and the point read "NOT FAIR").
ARCHIVE_MARK = "ARCHIVE.md"


# The positional RESULTS of report, audit and compare (read by :func:`resolve_results`).
RESULTS_HELP = ("result folders or result.json files (default: $HARNESS_RESULTS_DIR, else results/ without the "
                "committed result sets: folders holding ARCHIVE.md)")


def default_result_paths() -> tuple[list[Path], list[Path]]:
    """``(read, left_out)``: what report, audit and compare read when given no results. $HARNESS_RESULTS_DIR as
    it is; else every entry of ``results/`` but the committed result sets (folders holding ``ARCHIVE.md``)."""
    env = os.environ.get("HARNESS_RESULTS_DIR")
    root = Path(env or "results")
    if env or not root.is_dir():
        return [root], []
    # folders only (sweep.log and the lock sit at the top), and not .hydra's config dumps
    entries = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    left_out = [p for p in entries if (p / ARCHIVE_MARK).is_file()]
    read = [p for p in entries if p not in left_out]
    if not read and not left_out:  # nothing at all yet: the commands name the folder they looked in
        return [root], []
    return read, left_out


def resolve_results(given: Sequence[str | Path] | None, err: Any = None) -> list[Path]:
    """The result paths a command reads: those given, else :func:`default_result_paths`, saying on stderr which
    committed result sets it left out (and that naming one reads it); exit 2 when only those are there."""
    if given:
        return [Path(p) for p in given]
    read, left_out = default_result_paths()
    if left_out and not read:  # a fresh clone: nothing of its own yet (exit 2, one line)
        print(f"error: no results of this checkout's own under results/ yet (committed result sets: "
              f"{', '.join(map(str, left_out))}; name one to read it)", file=err or sys.stderr)
        raise SystemExit(2)
    if left_out:
        print(f"note: reading {', '.join(map(str, read))} (committed result sets left out: "
              f"{', '.join(map(str, left_out))}; name one to read it)", file=err or sys.stderr)
    return read


def default_reports_dir() -> str:
    """What ``run`` renders into when reports_dir is not given (conf/config.yaml): $HARNESS_REPORTS_DIR, else
    the rule that follows the default results dir (harness/config/schema.py reports_dir_for)."""
    from harness.config.schema import reports_dir_for

    return os.environ.get("HARNESS_REPORTS_DIR") or reports_dir_for(default_results_dir())
