"""Command line: ``python -m harness {run,report,compare,env,history} ...``.

``run`` hands its arguments to Hydra (``-m`` for a sweep) after checking every job of the sweep;
a bad value exits 2 with one line before anything trains.
"""
from __future__ import annotations

import os
import sys

USAGE = """usage: python -m harness COMMAND [ARGS]
  run [OVERRIDES...] [-m]      train and measure (Hydra; -m sweeps, e.g. framework=trl,unsloth,llamafactory)
  plan [OVERRIDES...] [-m] [--json]  print the jobs (point hash, run folders) a run command would start; runs nothing
  report [RESULTS...]          render the HTML comparison report of result folders/files
  compare [--accept] ...       check results against the machine's baseline (exit 1 on a regression)
  audit [RESULTS...]           fairness audit of finished runs (exit 3 if a strict comparison is refused)
  env build framework=NAME [version=V] [wheelhouse=DIR] | env list
"""


def _fail(message: str, code: int = 2) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _single_line(message: str) -> str:
    """Preflight errors are one line: later lines of a library's message are folded in."""
    parts = [p.strip() for p in str(message).strip().splitlines() if p.strip()]
    return " | ".join(parts) if parts else "invalid input"


def cmd_run(argv: list[str]) -> int:
    import hydra

    from harness.config import ConfigError, register_configs
    from harness.measure.nvml_sampler import cuda_available
    from harness.preflight import CONF_DIR, check_flags, preflight
    from harness.sweep import SweepOutcome, task

    multirun = "-m" in argv or "--multirun" in argv
    overrides = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-")]
    try:
        check_flags(flags)
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
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: finished results and history are kept", file=sys.stderr)
        return 130
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
    if command == "run":
        return cmd_run(rest)
    if command == "plan":
        from harness.plan import main as plan_main
        return plan_main(rest)
    if command == "report":
        from harness.report.cli import main as report_main
        return report_main(rest)
    if command == "compare":
        from harness.compare import main as compare_main
        return compare_main(rest)
    if command == "audit":
        from harness.audit.cli import main as audit_main
        return audit_main(rest)
    if command == "env":
        from harness.envs_cli import main as env_main
        return env_main(rest)
    return _fail(f"unknown command {command!r}\n{USAGE}")


def console_main() -> None:
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    console_main()
