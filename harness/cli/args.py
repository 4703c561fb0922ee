"""argparse for the harness's commands: a usage error is one ``error:`` line and exit 2 (argparse
itself prints the whole usage first), ``--help`` prints help and exits 0."""
from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn


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


def default_reports_dir() -> str:
    """What ``run`` renders into when reports_dir is not given (conf/config.yaml): $HARNESS_REPORTS_DIR, else
    the rule that follows the default results dir (harness/config/schema.py reports_dir_for)."""
    from harness.config.schema import reports_dir_for

    return os.environ.get("HARNESS_REPORTS_DIR") or reports_dir_for(default_results_dir())
