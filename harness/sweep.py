"""Hydra entry and sweep end: the task runs one job's repeats; the callback audits the sweep's
runs for fairness, renders the report and decides the exit status.

Each Hydra job writes the result paths it produced to ``runs.json`` in its own Hydra output folder,
so the end-of-sweep callback finds them the same way whether jobs ran in this process or on a
cluster (submitit).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from harness.atomic import atomic_write_json, read_json

RUNS_FILE = "runs.json"


class SweepOutcome:
    """Filled by the callback, read by ``__main__`` to choose the exit status."""
    not_ok = 0
    unfair_points = 0
    report: Path | None = None
    concluded = False  # Hydra only warns when a callback raises; __main__ checks this instead


# How many Hydra jobs the sweep has, set by the callback in the launching process before any job starts;
# inherited by jobs that run elsewhere (submitit's local subprocesses) through the environment.
TOTAL_ENV = "HARNESS_SWEEP_TOTAL"


def _position() -> tuple[int | None, int | None]:
    """This Hydra job's number (0-based) and the sweep's job count, where known."""
    try:
        hc = HydraConfig.get()
        num = hc.job.get("num")
        total = int(os.environ[TOTAL_ENV]) if os.environ.get(TOTAL_ENV, "").isdigit() else None
        if num is None:  # a single run
            return (0, 1)
        return int(num), total
    except Exception:  # noqa: BLE001  (progress is cosmetic)
        return None, None


def task(cfg: DictConfig) -> None:
    from harness.run import execute

    job_num, total = _position()
    records = execute(cfg, job_num=job_num, total_jobs=total)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    atomic_write_json(out_dir / RUNS_FILE, [str(Path(r["run_dir"]) / "result.json") for r in records])


def _collect(root: Path) -> list[dict[str, Any]]:
    from harness.results import load_results

    paths: list[Path] = []
    for runs_file in sorted(root.rglob(RUNS_FILE)):
        paths.extend(Path(p) for p in read_json(runs_file))
    return load_results(p for p in paths if p.exists())


def _conclude(root: Path, config: DictConfig) -> None:
    SweepOutcome.concluded = False
    records = _collect(root)
    # 'unavailable' (unsloth on a machine without CUDA, say) is reported, but is not a failure.
    SweepOutcome.not_ok = sum(r["status"] not in ("ok", "unavailable") for r in records)
    from harness.audit.fairness import audit_sweep, write_audit

    audits = audit_sweep(records, config.fairness)
    write_audit(root / "fairness.json", audits)
    SweepOutcome.unfair_points = sum(not a["valid"] for a in audits)
    for audit in audits:
        for m in audit.get("mismatches", []):
            print(f"fairness: {m['field']} differs: {json.dumps(m['values'], default=str)}")
    print(f"sweep: {len(records)} runs, {SweepOutcome.not_ok} did not succeed, "
          f"{SweepOutcome.unfair_points} sweep point(s) failing the {config.fairness} fairness audit")
    if config.report and records:
        from harness.report.render import render_report

        SweepOutcome.report = render_report(records, Path(config.reports_dir), audits=audits,
                                            command=_reproduce_command())
        print(f"report: {SweepOutcome.report}")
    SweepOutcome.concluded = True


def _reproduce_command() -> str:
    import shlex
    import sys

    return "python -m harness run " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _count_jobs(config: DictConfig) -> int | None:
    try:
        from harness.preflight import expand_sweep

        return len(expand_sweep(list(config.hydra.overrides.task), True))
    except Exception:  # noqa: BLE001  (progress is cosmetic)
        return None


class SweepCallback(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        total = _count_jobs(config)
        if total:
            os.environ[TOTAL_ENV] = str(total)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        _conclude(Path(config.hydra.sweep.dir), config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        _conclude(Path(config.hydra.run.dir), config)
