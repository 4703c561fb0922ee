"""``python -m harness plan [OVERRIDES...] [-m] [--json]``: the jobs a ``run`` command would start, run nothing.

The same composition and checks as ``run`` (:func:`harness.config.preflight.checked_jobs`: the sweep expanded as
Hydra's basic sweeper does, every job composed and validated, the dataset prepared for its digest), so the
point hash, job hash and run folders printed are the ones ``run`` would use and a command ``plan`` accepts
is one ``run`` accepts: a report's reproduce command can be checked against the runs it came from without
training anything. What only says whether this machine can run the job is left to ``run``: CUDA (a plan of
a 4-bit job is made on any machine) and whether the results dirs are writable (plan writes nothing).
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from harness.config.schema import ConfigError
from harness.config.preflight import check_flags, checked_jobs

PLAN_FLAGS = ("--json",)


def plan_jobs(overrides: list[str], multirun: bool) -> list[dict[str, Any]]:
    """One entry per Hydra job: framework, version, suite, point/job hash, repeats and run folders.

    Raises ConfigError (one line naming the field) on bad input, like ``run``'s preflight."""
    from harness.config.job import job_from_config, job_hash, point_hash, run_dir_for

    planned = []
    # cuda_available=True: a plan describes the job; whether this machine can run it is run's check
    for job_overrides, cfg, data in checked_jobs(overrides, multirun, cuda_available=True):
        job = job_from_config(cfg, data_digest=data.digest, data_format=data.format)  # exactly as run makes it
        results_dir = Path(cfg.results_dir).resolve()
        planned.append({
            "overrides": job_overrides, "framework": job["framework"]["name"],
            "version": job["framework"]["version"], "suite": job["suite"], "model": job["model"]["name"],
            "dataset": job["dataset"]["name"], "point_hash": point_hash(job), "job_hash": job_hash(job),
            "repeats": int(cfg.repeats),
            "run_dirs": [str(run_dir_for(results_dir, job, r)) for r in range(int(cfg.repeats))],
            "job": job,
        })
    return planned


def format_plan(planned: list[dict[str, Any]]) -> str:
    lines = [f"{len(planned)} job{'s' if len(planned) != 1 else ''}, "
             f"{sum(p['repeats'] for p in planned)} run{'s' if sum(p['repeats'] for p in planned) != 1 else ''}"]
    for i, p in enumerate(planned, start=1):
        lines.append(f"[{i}] {p['framework']} {p['version']}  suite {p['suite']}  point {p['point_hash']}  "
                     f"job {p['job_hash']}  repeats {p['repeats']}")
        lines.extend(f"    {d}" for d in p["run_dirs"])
    return "\n".join(lines)


PLAN_HELP = """usage: python -m harness plan [OVERRIDES...] [-m] [--json]

Compose and validate the jobs a `python -m harness run` with the same arguments would start, and print
them (framework, version, suite, point hash, job hash, repeats, run folders) without running anything.
--json prints the full job of each. Bad input exits 2 with one line, as `run` does."""


def main(argv: list[str]) -> int:
    from harness.cli.args import fail as _fail, single_line as _single_line

    if "-h" in argv or "--help" in argv:
        print(PLAN_HELP)
        return 0
    multirun = "-m" in argv or "--multirun" in argv
    as_json = "--json" in argv
    overrides = [a for a in argv if not a.startswith("-")]
    flags = [a for a in argv if a.startswith("-") and a not in PLAN_FLAGS]
    try:
        check_flags(flags)
        # What preparing the data says goes to stderr: stdout is the plan, JSON with --json.
        with contextlib.redirect_stdout(sys.stderr):
            planned = plan_jobs(overrides, multirun)
    except ConfigError as err:
        return _fail(_single_line(str(err)))
    except (OSError, ValueError, LookupError, TypeError) as err:
        return _fail(_single_line(f"{type(err).__name__}: {err}"))
    print(json.dumps(planned, indent=1) if as_json else format_plan(planned))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
