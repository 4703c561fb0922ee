"""``python -m harness run [OVERRIDES...] [-m]``: check every job of the sweep, then hand the overrides to Hydra.

A bad value exits 2 with one line before anything trains; the sweep itself (results dir lock, signals,
end-of-sweep audit and report) is :mod:`harness.launch.sweep`."""
from __future__ import annotations

import os
import sys

from harness.cli.args import fail, single_line


def main(argv: list[str]) -> int:
    """The exit status of the sweep (see :func:`exit_status`); bad input: 2, before anything runs."""
    import hydra

    from harness.config.schema import ConfigError, register_configs
    from harness.sampling.devices import cuda_available
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
        return fail(single_line(str(err)))
    except (OSError, ValueError, LookupError, TypeError) as err:  # bad input that reached the checks raw
        return fail(single_line(f"{type(err).__name__}: {err}"))
    except Exception as err:  # a bug in the checks: still one readable line, traceback on request
        if os.environ.get("HARNESS_DEBUG"):
            raise
        return fail(single_line(f"preflight failed unexpectedly ({type(err).__name__}: {err}); "
                                  "set HARNESS_DEBUG=1 for the traceback"), code=1)
    register_configs()
    sys.argv = [sys.argv[0], *overrides, *flags]  # Hydra's parser wants the overrides before -m
    main = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base=None)(task)
    status = run_sweep(main, overrides, multirun, tuple(flags))  # the results dir's lock; SIGINT/TERM/HUP: 128 + N
    if status is not None:
        return status
    if not SweepOutcome.concluded:
        return fail("the end-of-sweep step (fairness audit, report) failed; see the warning above")
    return exit_status(SweepOutcome.not_ok, SweepOutcome.unfair_points)


def exit_status(not_ok: int, unfair_points: int) -> int:
    """0: all ran (or were unavailable here) and were fair; 10 + N: N runs did not succeed (capped
    at 109); 3: every run succeeded but the strict fairness audit refused a comparison. 2 stays
    reserved for bad input."""
    if not_ok:
        return 10 + min(not_ok, 99)
    return 3 if unfair_points else 0
