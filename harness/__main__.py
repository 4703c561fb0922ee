"""Command line: ``python -m harness {run,plan,report,compare,audit,env} ...`` (``COMMANDS``).

``run`` hands its arguments to Hydra (``-m`` for a sweep) after checking every job of the sweep;
a bad value exits 2 with one line before anything trains. Every command and sub-command answers
``--help`` with its help and exit 0 (tests/test_help.py walks them from the ``commands:`` list of
``python -m harness --help``). The run history (``results/history/*.jsonl``) has no command of its
own: ``report --trend`` renders it and ``compare`` checks against accepted baselines.
"""
from __future__ import annotations

import os
import sys

# name -> ("module:function" that takes the argv after the name and returns the exit code, one-line synopsis)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("harness.__main__:cmd_run", "[OVERRIDES...] [-m]   train and measure (Hydra; -m sweeps, e.g. "
                                "framework=NAME,NAME)"),
    "plan": ("harness.cli.plan:main", "[OVERRIDES...] [-m]   print the jobs (point hash, run folders) a run command "
                                  "would start; runs nothing (--json)"),
    "report": ("harness.cli.report:main", "[RESULTS...]          render the HTML comparison report (--trend: history)"),
    "compare": ("harness.regression.compare:main", "[--accept] ...        check results against the machine's baseline "
                                   "(exit 1 on a regression)"),
    "audit": ("harness.cli.audit:main", "[RESULTS...]          fairness audit of finished runs (exit 3 if a strict "
                                   "comparison is refused)"),
    "env": ("harness.cli.env:main", "build|list ...        build or list the per-framework environments"),
}
USAGE = ("usage: python -m harness COMMAND [ARGS]   (python -m harness COMMAND --help for a command's help)\n"
         "commands:\n" + "".join(f"  {name:8s} {synopsis}\n" for name, (_, synopsis) in COMMANDS.items()))


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _single_line(message: str) -> str:
    """Preflight errors are one line: later lines of a library's message are folded in."""
    parts = [p.strip() for p in str(message).strip().splitlines() if p.strip()]
    return " | ".join(parts) if parts else "invalid input"


def cmd_run(argv: list[str]) -> int:
    import hydra

    from harness.config.schema import ConfigError, register_configs
    from harness.sampling.sampler import cuda_available
    from harness.config.preflight import CONF_DIR, check_flags, preflight
    from harness.launch.sweep import SweepOutcome, run_sweep, task

    multirun = "-m" in argv or "--multirun" in argv
    overrides = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    asks_help = any(f in ("-h", "--help", "--hydra-help") for f in flags)
    try:
        check_flags(flags)
        if not asks_help:  # help describes the config; it needs no valid job (and runs none)
            preflight(overrides, multirun, cuda_available=cuda_available())
    except ConfigError as err:
        return _fail(_single_line(str(err)))
    except (OSError, ValueError, LookupError, TypeError) as err:  # bad input that reached the checks raw
        return _fail(_single_line(f"{type(err).__name__}: {err}"))
    except Exception as err:  # a bug in the checks: still one readable line, traceback on request
        if os.environ.get("HARNESS_DEBUG"):
            raise
        return _fail(_single_line(f"preflight failed unexpectedly ({type(err).__name__}: {err}); "
                                  "set HARNESS_DEBUG=1 for the traceback"), code=1)
    register_configs()
    sys.argv = [sys.argv[0], *overrides, *flags]  # Hydra's parser wants the overrides before -m
    main = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)(task)
    status = run_sweep(main, overrides, multirun, tuple(flags))  # the results dir's lock; SIGINT/TERM/HUP: 128 + N
    if status is not None:
        return status
    if not SweepOutcome.concluded:
        return _fail("the end-of-sweep step (fairness audit, report) failed; see the warning above")
    return exit_status(SweepOutcome.not_ok, SweepOutcome.unfair_points)


def exit_status(not_ok: int, unfair_points: int) -> int:
    """0: all ran (or were unavailable here) and were fair; 10 + N: N runs did not succeed (capped
    at 109); 3: every run succeeded but the strict fairness audit refused a comparison. 2 stays
    reserved for bad input."""
    if not_ok:
        return 10 + min(not_ok, 99)
    return 3 if unfair_points else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        return _fail(f"unknown command {command!r} (commands: {', '.join(COMMANDS)}; python -m harness --help)")
    if command == "run":  # handles its own failures (preflight, Hydra, the sweep's results)
        return cmd_run(rest)
    import importlib

    module, function = COMMANDS[command][0].split(":")
    try:
        return getattr(importlib.import_module(module), function)(rest)
    except Exception as err:  # a bug, or input no check foresaw: still one readable line
        if os.environ.get("HARNESS_DEBUG"):
            raise
        return _fail(_single_line(f"{command} failed unexpectedly ({type(err).__name__}: {err}); "
                                  "set HARNESS_DEBUG=1 for the traceback"), code=1)


def console_main() -> None:
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    console_main()
