"""The result record: its layout, each metric's meaning and good direction, and loading into pandas.

One ``result.json`` per run (see ``RESULT_LAYOUT``), typed as :class:`harness.records.Result`. Reports,
compare and history read results only through :func:`load_records` / :func:`read_result`, so a corrupt file
is reported by name and skipped, and an older schema is upgraded (harness/records/schema.py).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.records import run_files
from harness.atomic import read_json
from harness.records import Result, RecordError
from harness.records.schema import SCHEMA_VERSION, upgrade

__all__ = ["METRICS", "SCHEMA_VERSION", "STATUSES", "find_result_files", "flatten", "get_path", "load_records",
           "parse_result", "read_result", "shape_problem", "to_frame"]
STATUSES = ("ok", "failed", "unavailable", "oom", "timeout", "crashed", "interrupted")

RESULT_LAYOUT = """
result.json
  schema, run_id, run_dir, job_hash, point_hash, suite, repeat, status, reason, log_tail
  framework: {name, version, packages: {torch, transformers, peft, ...: the adapter's packages}}
  job: the job.json the worker ran
  env: {hostname, machine_id, gpu_name, gpu_count, driver, cuda, python, git_commit, platform}
  phases: {NAME: unix time} for process_start, imports_done, model_loaded, data_ready, train_start,
          train_end, eval_end, result_written; durations: {imports, model_load, data, train, eval, total}
  wall_time_s: total seen by the parent (spawn to exit)
  train: {steps, timed_steps, tokens, supervised_tokens, samples, tokens_per_s, supervised_tokens_per_s,
          samples_per_s, step_time_s: {median, mean, min, max, p10, p90}, log: [per step], ...}
  eval: {loss, tokens, records, framework_loss, curve: [{step, tokens, loss}], target: {...}}
  memory: {nvml_peak_bytes, nvml_baseline_bytes, nvml_process_peak_bytes, torch_max_allocated_bytes,
           torch_max_reserved_bytes, timeline}
  host: {cpu_count, cpu_shared, other_busy_cores_mean, ..., disclosure: {shared, because}}
  gpu_activity: {mean_util_pct, max_power_w}
  energy: {train_joules, method, joules_per_1k_tokens}
  mfu: {flops_per_token, formula, achieved_flops_per_s, peak_flops_per_s, mfu}
  audit: live-object fairness fields (harness/audit)
  checks: [{name, passed, detail}]
"""


@dataclass(frozen=True)
class Metric:
    name: str
    path: str  # dotted path into result.json
    label: str
    unit: str
    higher_is_better: bool


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("tokens_per_s", "train.tokens_per_s", "tokens/s", "tok/s", True),
    Metric("supervised_tokens_per_s", "train.supervised_tokens_per_s", "supervised tokens/s", "tok/s", True),
    Metric("samples_per_s", "train.samples_per_s", "samples/s", "1/s", True),
    Metric("step_time_s", "train.step_time_s.median", "step time (median)", "s", False),
    Metric("mfu", "mfu.mfu", "MFU", "", True),
    Metric("peak_mem", "memory.nvml_peak_bytes", "peak GPU memory (NVML, above idle)", "bytes", False),
    Metric("torch_peak_allocated", "memory.torch_max_allocated_bytes", "torch max allocated", "bytes", False),
    Metric("torch_peak_reserved", "memory.torch_max_reserved_bytes", "torch max reserved", "bytes", False),
    Metric("wall_time_s", "wall_time_s", "wall time", "s", False),
    Metric("train_time_s", "durations.train", "training phase", "s", False),
    Metric("eval_loss", "eval.loss", "eval loss (ours)", "", False),
    Metric("energy_per_1k_tokens", "energy.joules_per_1k_tokens", "energy per 1k tokens", "J", False),
)}


def get_path(record: Result, dotted: str) -> Any:  # the metric paths are data: see Result.lookup
    """A recorded value by dotted path (a metric's ``path``), None where not recorded."""
    return record.lookup(dotted)


def flatten(record: Result) -> dict[str, Any]:
    """One row per run: identity columns plus every metric (None where not measured)."""
    row = {
        "run_id": record.run_id, "run_dir": record.run_dir, "suite": record.suite,
        "point_hash": record.point_hash, "job_hash": record.job_hash,
        "framework": record.framework.name, "version": record.framework.version, "repeat": record.repeat,
        "status": record.status, "reason": record.reason,
        "model": record.job.model.name, "dataset": record.job.dataset.name,
        "machine_id": record.env.machine_id,
        "finished_at": record.phases.get("result_written"),
    }
    for metric in METRICS.values():
        row[metric.name] = record.lookup(metric.path)
    return row


# What readers (report, audit, compare, history) rely on, beyond "it parses": a file that has the wrong
# shape is skipped with its path and the first problem, never a traceback deep in a renderer. The typed
# record catches a section that is not an object (RecordError, naming it); these are the value checks.
_TEXT_FIELDS = ("run_id", "run_dir", "suite", "job_hash", "point_hash", "reason", "log_tail")
_OBJECT_FIELDS = ("phases", "durations")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shape_problem(record: Result) -> str | None:
    """Why ``record`` is not a result record readers can use, or None when it is."""
    if record.status not in STATUSES:
        return f"'status' is {record.status!r}, expected one of {', '.join(STATUSES)}"
    if not isinstance(record.framework.name, str):
        return "'framework' must be an object with a 'name'"
    for name in _TEXT_FIELDS:
        value = getattr(record, name)
        if value is not None and not isinstance(value, str):
            return f"'{name}' is {type(value).__name__}, expected text"
    if record.repeat is not None and (not isinstance(record.repeat, int) or isinstance(record.repeat, bool)):
        return f"'repeat' is {record.repeat!r}, expected an integer"
    for name in _OBJECT_FIELDS:
        if not isinstance(getattr(record, name), dict):
            return f"'{name}' is {type(getattr(record, name)).__name__}, expected an object"
    if not isinstance(record.framework.packages, dict):
        return f"'framework.packages' is {type(record.framework.packages).__name__}, expected an object"
    if not isinstance(record.job.train, dict):
        return f"'job.train' is {type(record.job.train).__name__}, expected an object"
    if record.job.fairness is not None and record.job.fairness not in ("strict", "native"):
        return f"'job.fairness' is {record.job.fairness!r}, expected strict or native"
    log = record.train.log if record.train is not None else None
    if log is not None and (not isinstance(log, list) or not all(isinstance(e, dict) for e in log)):
        return "'train.log' must be a list of objects"
    for name in ("phases", "durations"):
        bad = [k for k, v in getattr(record, name).items() if v is not None and not _is_number(v)]
        if bad:
            return f"'{name}.{bad[0]}' is not a number"
    for metric in METRICS.values():
        value = record.lookup(metric.path)
        if value is not None and not _is_number(value):
            return f"'{metric.path}' is {value!r}, expected a number"
    return None


def parse_result(data: Any) -> Result:
    """The typed record of one result.json's content, upgraded to the current schema; ValueError
    (RecordError) naming the first problem when it is not one."""
    if not isinstance(data, dict):
        raise RecordError(f"not a result record (a JSON {type(data).__name__}, expected an object)")
    for name in ("checks", "checks_at_run"):
        value = data.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(c, dict) for c in value)):
            raise RecordError(f"'{name}' must be a list of objects")
    record = Result.from_dict(upgrade(data))
    problem = shape_problem(record)
    if problem:
        raise RecordError(problem)
    return record


def read_result(path: Path) -> Result:
    """One result.json, typed, with ``source`` set; OSError / ValueError naming the file."""
    try:
        record = parse_result(read_json(path))
    except RecordError as err:
        raise RecordError(f"{path}: {err}") from None
    record.source = str(path)
    return record


def find_result_files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(p for p in sorted(path.rglob(run_files.RESULT)) if ".hydra" not in p.parts)
    return found


def load_records(paths: Iterable[Path], *, warn=lambda msg: print(msg, file=sys.stderr)) -> list[Result]:
    """Every result.json under ``paths`` as a typed record; a corrupt or truncated one is named and skipped."""
    records = []
    for path in find_result_files(paths):
        try:
            record = read_result(path)
        except (OSError, ValueError) as err:
            warn(f"skipped: {err}")
            continue
        judge_checks_again(record)
        complete_durations(record)
        records.append(record)
    return records


def complete_durations(record: Result) -> None:
    """Phase spans added after a result was written (``to_first_step``), derived from its recorded phase marks."""
    from harness.phases import durations  # noqa: PLC0415

    if record.phases:
        for name, seconds in durations(record.phases).items():
            record.durations.setdefault(name, seconds)


def judge_checks_again(record: Result) -> None:
    """Cross-checks are a judgement of recorded measurements: every result is judged by today's rules
    (one rule for old and new results alike), the verdict written at run time kept as ``checks_at_run``
    where it differs. The measurements themselves are never touched."""
    if record.status != "ok" or not record.checks:
        return
    from harness.results.cross_checks import run_checks  # noqa: PLC0415

    now = run_checks(record)
    if [(c.name, c.passed) for c in now] != [(c.name, c.passed) for c in record.checks]:
        record.checks_at_run = record.checks
    record.checks = now


def to_frame(records: list[Result]):
    import pandas as pd

    return pd.DataFrame([flatten(r) for r in records])
