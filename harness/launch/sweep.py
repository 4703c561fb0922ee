"""Hydra entry and sweep end: the task runs one job's repeats; the callback audits the sweep's
runs for fairness, renders the report and decides the exit status. :func:`run_sweep` wraps the
whole Hydra run: it holds the results dir (harness/launch/sweep_lock.py), logs the sweep's output to
``RESULTS_DIR/sweep.log`` (harness/launch/sweep_log.py) and turns SIGINT, SIGTERM and SIGHUP into a clean
stop (harness/launch/interrupts.py): the running worker's process group ended, its run recorded
``interrupted``, no further run started, a report of what finished, exit 128 + the signal.

Each Hydra job writes the result paths it produced to ``runs.json`` in its own Hydra output folder,
so the end-of-sweep callback finds them the same way whether jobs ran in this process or on a
cluster (submitit). It is rewritten after every run, so a sweep stopped by a signal still names
every run it finished (and the one it interrupted).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.records import run_files
from harness.atomic import atomic_write_json, read_json
from harness.records import Result

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


class _Active:
    """The running job's sweep folder and config: what the report after a signal is made of (Hydra
    calls no end-of-sweep callback when an exception leaves its launcher)."""
    root: Path | None = None
    config: DictConfig | None = None


def task(cfg: DictConfig) -> None:
    from harness.launch.repeats import execute

    job_num, total = _position()
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    _Active.root = Path(hc.sweep.dir if hc.mode == RunMode.MULTIRUN else hc.run.dir)
    _Active.config = cfg
    paths: list[str] = []

    def finished(record: Result) -> None:
        paths.append(str(run_files.result_path(record.run_dir)))
        atomic_write_json(out_dir / RUNS_FILE, paths)

    execute(cfg, job_num=job_num, total_jobs=total, on_record=finished)


def _collect(root: Path) -> list[Result]:
    from harness.results.load import load_records

    paths: list[Path] = []
    for runs_file in sorted(root.rglob(RUNS_FILE)):
        paths.extend(Path(p) for p in read_json(runs_file))
    return load_records(p for p in paths if p.exists())


def _conclude(root: Path, config: DictConfig) -> None:
    SweepOutcome.concluded = False
    records = _collect(root)
    # 'unavailable' (unsloth on a machine without CUDA, say) is reported, but is not a failure.
    SweepOutcome.not_ok = sum(r.status not in ("ok", "unavailable") for r in records)
    from harness.audit.fairness import audit_sweep, write_audit

    audits = audit_sweep(records, config.fairness)
    write_audit(root / "fairness.json", audits)
    SweepOutcome.unfair_points = sum(not a["valid"] for a in audits)
    from harness.audit.recipe_audit import summary_lines

    for audit in audits:
        for m in audit.get("mismatches", []):
            print(f"fairness: {m['field']} differs: {json.dumps(m['values'], default=str)}")
        for line in summary_lines(audit):
            print(line)
    unavailable = [r for r in records if r.status == "unavailable"]
    here = (f", {len(unavailable)} unavailable here ({', '.join(sorted({r.label for r in unavailable}))})"
            if unavailable else "")
    print(f"sweep: {len(records)} runs: {sum(r.ok for r in records)} ok{here}, {SweepOutcome.not_ok} did not succeed, "
          f"{SweepOutcome.unfair_points} sweep point(s) failing the {config.fairness} fairness audit{_unstarted(records)}")
    if config.report and records:
        from harness.report.render import render_report

        SweepOutcome.report = render_report(records, Path(config.reports_dir), audits=audits,
                                            command=_reproduce_command())
        print(f"report: {SweepOutcome.report}")
    SweepOutcome.concluded = True


def _unstarted(records: list[Result]) -> str:
    """The sweep's jobs that never started (a stopped sweep): its job count against the jobs with a run."""
    total = os.environ.get(TOTAL_ENV, "")
    started = len({r.job_hash for r in records})
    if not total.isdigit() or started >= int(total):
        return ""
    return f"; {int(total) - started} of its {total} jobs never started"


def _reproduce_command() -> str:
    import shlex
    import sys

    return "python -m harness run " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _count_jobs(config: DictConfig) -> int | None:
    try:
        from harness.config.preflight import expand_sweep

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


def _targets(overrides: list[str], multirun: bool) -> tuple[list[Path], bool]:
    """The results dirs the sweep writes to (usually one) and whether any job asks to wait_for_lock."""
    from harness.config.preflight import compose_job, expand_sweep

    dirs: list[Path] = []
    wait = False
    for job in expand_sweep(overrides, multirun):
        cfg = compose_job(job)
        path = Path(cfg.results_dir).resolve()
        if path not in dirs:
            dirs.append(path)
        wait = wait or bool(cfg.get("wait_for_lock", False))
    return dirs, wait


def _report_after_interruption(stop: BaseException) -> None:
    from harness.launch import interrupts

    interrupts.note(f"{interrupts.as_interruption(stop).name}: sweep stopped; the running worker's process group "
                    "was ended and no further run starts; finished results and history are kept")
    if _Active.root is None or _Active.config is None:
        return
    with interrupts.abortable():  # a second signal skips the report; its files are written atomically
        try:
            _conclude(_Active.root, _Active.config)
        except KeyboardInterrupt:
            interrupts.note("report skipped (second signal); `python -m harness report RESULTS_DIR` renders it")
        except Exception as err:  # noqa: BLE001  (the runs are recorded; only the report is lost)
            interrupts.note(f"report of the finished runs failed: {type(err).__name__}: {err}")


def _held_sweep(main: Callable[[], Any], locks: list[Any], dirs: list[Path], wait: bool, command: str) -> None:
    """Take every results dir's lock (LockBusy, or wait), then run the sweep with its output logged."""
    from harness.launch import interrupts, sweep_log

    for lock in locks:  # before the first job; a second sweep refuses (or waits) here
        lock.acquire(command, wait=wait, warn=interrupts.note)
    with sweep_log.teeing(dirs, command):
        try:
            main()
        except KeyboardInterrupt as err:
            _report_after_interruption(err)
            raise


# Hydra flags that print and exit instead of running: no lock is taken and nothing is written for them.
PRINT_ONLY_FLAGS = ("-h", "--help", "--hydra-help", "--version")


def run_sweep(main: Callable[[], Any], overrides: list[str], multirun: bool, flags: tuple[str, ...] = ()) -> int | None:
    """Run Hydra's ``main`` holding the sweep's results dir(s), logging to their ``sweep.log``, with
    SIGINT/SIGTERM/SIGHUP stopping it cleanly. Returns the exit status when it is decided here (2: a
    results dir is held by another sweep; 128 + N: stopped by signal N), else None (SweepOutcome decides)."""
    from harness.launch import interrupts
    from harness.launch.sweep_lock import LockError, SweepLock

    if any(flag in PRINT_ONLY_FLAGS for flag in flags):
        main()
        return None
    locks: list[SweepLock] = []
    status: int | None = None
    with interrupts.handling():
        try:
            dirs, wait = _targets(overrides, multirun)
            locks = [SweepLock(d) for d in sorted(dirs)]  # one order for every sweep: two never wait on each other
            _held_sweep(main, locks, dirs, wait, _reproduce_command())
        except LockError as err:
            interrupts.note(f"error: {err}")
            status = 2
        except KeyboardInterrupt as err:  # while waiting for the lock, or the sweep's own stop
            status = interrupts.as_interruption(err).exit_status
        finally:
            interrupts.quiet()  # from here on a signal only decides the exit status
            for lock in locks:
                lock.release()
        first = interrupts.received()
    return 128 + first if first is not None else status
