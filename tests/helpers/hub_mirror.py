"""The offline Hub mirror the user exported (``HARNESS_HUB_MIRROR``), read once when tests/conftest.py imports
this module: before its session fixture takes the variable out of the environment, so that ordinary tests run
without a mirror and the tests that need one get the user's value through the ``hub_mirror`` fixture (which
they pass into the harness's subprocess: ``harness(..., env=mirror_env(hub_mirror))``)."""
from __future__ import annotations

import os
from pathlib import Path

from harness.hub import MIRROR_ENV

_EXPORTED = os.environ.get(MIRROR_ENV) or None


def exported_mirror() -> Path | None:
    """The folder HARNESS_HUB_MIRROR named when the test session started, or None when it was not set."""
    return Path(_EXPORTED).expanduser() if _EXPORTED else None


def mirror_env(mirror: Path) -> dict[str, str]:
    """The environment a harness subprocess needs to resolve Hub ids in ``mirror``."""
    return {MIRROR_ENV: str(mirror)}


def ok_runs_of_a_mirror_sweep(out: Path, mirror: Path, args: tuple[str, ...], control: str) -> dict:
    """Run ``python -m harness run ARGS -m`` into ``out`` with the mirror; every run must be ok. The runs by
    (framework, the profile field ``control`` of their job): a native run and its controlled rerun."""
    from tests.cli import harness, results

    run = harness("run", *args, f"results_dir={out}", "report=false", "-m", env=mirror_env(mirror), timeout=1500)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    runs = {(r["framework"]["name"], r["job"]["profile"].get(control)): r for r in results(out)}
    assert all(r["status"] == "ok" for r in runs.values()), {k: r["reason"] for k, r in runs.items()}
    return runs
