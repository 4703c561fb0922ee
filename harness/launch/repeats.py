"""The Hydra task: one sweep point and framework -> ``repeats`` runs, each a result on disk.

Validation already happened for the whole sweep (``harness.config.preflight``) before any job started.
A failed run is a result like any other; only a stop signal (SIGINT, SIGTERM, SIGHUP) stops the
sweep, after the running worker's process group is ended and its run recorded ``interrupted``.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig

from harness.launch import interrupts, venv_build, venvs
from harness.records import run_files
from harness.atomic import atomic_write_json
from harness.config.validation import validate
from harness.data.dataset import PreparedData, prepare, write_jsonl
from harness.config.job import Job, identical_twin, job_from_config, job_hash, point_hash, run_dir_for, write_job
from harness.sampling.devices import cuda_available
from harness.sampling.sampler import NvmlSampler
from harness.results.assemble import build_record
from harness.records import JobFile, JobSpec, Result, Runtime
from harness.launch.child import existing_ok_result, log_tail, spawn_worker

RESULT_NAME, LOG_NAME = run_files.RESULT, run_files.WORKER_LOG


def interpreter(cfg: DictConfig) -> str:
    """The python that runs this framework: its own environment (built on first use), or as told."""
    fw = cfg.framework
    if fw.python == "current":
        return sys.executable
    if fw.python != "env":
        return fw.python
    try:
        return venvs.python_for(fw.name, fw.version, use_current=False)
    except venvs.EnvError:
        if not cfg.env_auto_build:
            raise
    wheelhouse = Path(cfg.env_wheelhouse) if cfg.env_wheelhouse else None
    print(f"building environment for {fw.name} {fw.version} ...", flush=True)
    return str(venv_build.build_env(fw.name, fw.version, wheelhouse=wheelhouse) / "bin" / "python")


def world_size(job: Job) -> int:
    launcher = job.get("launcher") or {}
    return int(launcher.get("nproc", 1)) if launcher.get("name") == "torchrun" else 1


def _runtime(job: Job, run_dir: Path, repeat: int) -> JobFile:
    """The job.json of this run: the job and the parent's part of its runtime."""
    return JobFile(spec=JobSpec.from_dict(job), runtime=Runtime.for_run(
        run_dir=str(run_dir), data_dir=str(run_dir / run_files.DATA), repeat=repeat, world_size=world_size(job)))


def _single_process_only(job: Job) -> str | None:
    """Why this framework cannot run at this world size (checked before spawning anything), or None."""
    if world_size(job) <= 1:
        return None
    from harness.frameworks import load_adapter  # adapter modules are light: heavy imports happen in train()

    return load_adapter(job["framework"]["name"]).multi_gpu_unsupported


OnRecord = Callable[[Result], None]


def _noop(record: Result) -> None:
    pass


def run_one(cfg: DictConfig, job: Job, data: PreparedData, repeat: int, position: str = "",
            on_record: OnRecord = _noop) -> Result:
    """Run (or skip, on resume) one repeat; ``on_record`` hears of its record as soon as it exists,
    an interrupted run's included (the caller's list of finished runs stays whole when a signal
    stops the sweep)."""
    run_dir = run_dir_for(Path(cfg.results_dir).resolve(), job, repeat)
    label = f"{job['framework']['name']} {job['framework']['version']} r{repeat}"
    if world_size(job) > 1:
        label += f" x{world_size(job)}"
    if position:
        print(f"{position} {label} ...", flush=True)
    if not cfg.force:
        earlier = existing_ok_result(run_dir)
        if earlier is not None:
            print(f"[{label}] skipped: ok result exists at {run_dir / RESULT_NAME} (force=true reruns)", flush=True)
            on_record(earlier)
            return earlier
        earlier = _unavailable_here(run_dir)
        if earlier is not None:  # retrying would only append the same 'unavailable' to the history again
            print(f"[{label}] skipped: unavailable on this machine ({earlier.reason}) at "
                  f"{run_dir / RESULT_NAME} (force=true retries)", flush=True)
            on_record(earlier)  # still one of the sweep's runs: its summary and report name it
            return earlier
    write_jsonl(run_dir / run_files.DATA / "train.jsonl", data.train)
    write_jsonl(run_dir / run_files.DATA / "eval.jsonl", data.eval)
    runtime_job = _runtime(job, run_dir, repeat)
    write_job(run_dir, runtime_job)
    _write_placeholder(run_dir, runtime_job, repeat)
    print(f"[{label}] running in {run_dir}", flush=True)
    sampler = NvmlSampler(interval_s=cfg.sample_interval_ms / 1000.0)
    unsupported = _single_process_only(job)
    python: str | None = None
    try:
        if unsupported:
            view = {"status": "unavailable", "reason": unsupported, "wall_time_s": 0.0, "log_tail": ""}
        else:
            try:
                python = interpreter(cfg)  # may build the framework's environment: minutes, a signal can come
            except venvs.EnvError as err:
                view = {"status": "unavailable", "reason": str(err), "wall_time_s": 0.0, "log_tail": ""}
        if python is not None:
            with sampler:
                view = spawn_worker(run_dir, python, cfg.timeout_s, sampler, launcher=job.get("launcher"),
                                    label=label)
    except KeyboardInterrupt as err:  # the worker's process group, if one started, is already ended (runner)
        view = {"status": "interrupted", "reason": interrupts.reason(err), "wall_time_s": None,
                "log_tail": log_tail(run_dir / LOG_NAME)}
        with interrupts.shielded():  # the attempt's real record replaces its placeholder
            on_record(_finish(run_dir, runtime_job, view, sampler, cfg, repeat))
        raise
    # A signal arriving while the result and its history line are written waits until both are:
    # then it stops the sweep before the next run starts.
    with interrupts.shielded():
        record = _finish(run_dir, runtime_job, view, sampler, cfg, repeat)
        on_record(record)
    return record


# What a run's result says until the parent replaces it with the real one (harness/parent_watch.py: nothing of
# the parent runs after a SIGKILL, so nothing else would tell this attempt from an earlier one's result).
PARENT_GONE = ("no result was written: the harness parent ended before this run finished (kill -9, the OOM "
               "killer, a lost machine), or the run is still going")


def _write_placeholder(run_dir: Path, job: JobFile, repeat: int) -> None:
    """An 'interrupted' result for this attempt, before the worker starts: after a kill -9 of the parent the
    folder says so instead of showing an earlier attempt's status. Not a history line: no run was measured."""
    view = {"status": "interrupted", "reason": PARENT_GONE, "wall_time_s": None, "log_tail": ""}
    record = build_record(job=job, view=view, sampler=NvmlSampler(), run_dir=run_dir, repeat=repeat, **_hashes(job))
    atomic_write_json(run_dir / RESULT_NAME, record.to_dict())


def _hashes(job: JobFile) -> dict[str, Any]:
    """The record's hashes: the job's, its point's, and a recommended job's identical twin's."""
    spec = job.spec.to_dict()
    twin = identical_twin(spec) if job.spec.recipe_name == "recommended" else None
    return {"job_hash": job_hash(spec), "point_hash": point_hash(spec),
            "identical_hashes": (job_hash(twin), point_hash(twin)) if twin is not None else None}


def _unavailable_here(run_dir: Path) -> Result | None:
    """An earlier 'unavailable' result of this run dir recorded on this kind of machine, or None.
    One copied from another machine (a CPU box's unsloth result on a GPU node) is retried."""
    from harness.results.machine import environment
    from harness.results.load import read_result

    try:
        record = read_result(run_dir / RESULT_NAME)
    except (OSError, ValueError):
        return None
    if record.status != "unavailable":
        return None
    here = environment().get("machine_id")
    return record if record.env.machine_id == here else None


def _finish(run_dir: Path, job: JobFile, view: dict[str, Any], sampler: NvmlSampler, cfg: DictConfig,
            repeat: int) -> Result:
    record = build_record(job=job, view=view, sampler=sampler, run_dir=run_dir, repeat=repeat, **_hashes(job))
    sampler.write_timeline(run_dir / run_files.MEMORY_TIMELINE)
    if not cfg.keep_outputs:
        # Adapters, checkpoints and the data copy are large and not results: the job hash and
        # the data digest in job.json say how to recreate them.
        for name in run_files.DISPOSABLE:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    atomic_write_json(run_dir / RESULT_NAME, record.to_dict())
    from harness.results.history import append_history

    append_history(record, Path(cfg.results_dir))
    reason = f": {record.reason}" if not record.ok else ""
    print(f"[{job.spec.framework.name} r{repeat}] {record.status}{reason}", flush=True)
    return record


def execute(cfg: DictConfig, *, job_num: int | None = None, total_jobs: int | None = None,
            on_record: OnRecord = _noop) -> list[Result]:
    """Run every repeat of this config; return the records (validation errors raise ConfigError).

    ``job_num`` (0-based) / ``total_jobs``: this Hydra job's place in the sweep, for the progress line
    ``[2/6] trl 1.16.0 r0 ...`` (a run's number over all runs when every job has ``repeats`` runs)."""
    validate(cfg, cuda_available=cuda_available())
    data = prepare(cfg.dataset)
    job = job_from_config(cfg, data_digest=data.digest, data_format=data.format)
    records = []
    for repeat in range(cfg.repeats):
        position = ""
        if job_num is not None:
            n = job_num * cfg.repeats + repeat + 1
            position = f"[{n}/{total_jobs * cfg.repeats}]" if total_jobs else f"[{n}]"
        records.append(run_one(cfg, job, data, repeat, position, on_record))
    return records
