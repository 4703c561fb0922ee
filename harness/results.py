"""The result record: its layout, each metric's meaning and good direction, and loading into pandas.

One ``result.json`` per run (see ``RESULT_LAYOUT``). Reports, compare and history read results only
through :func:`load_results` / :func:`flatten`, so a corrupt file is reported by name and skipped.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from harness.atomic import read_json

SCHEMA_VERSION = 1
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
  energy: {train_joules, joules_per_1k_tokens}
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


def get_path(record: dict[str, Any], dotted: str) -> Any:
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One row per run: identity columns plus every metric (None where not measured)."""
    job = record.get("job") or {}
    fw = record.get("framework") or {}
    row = {
        "run_id": record.get("run_id"), "run_dir": record.get("run_dir"), "suite": record.get("suite"),
        "point_hash": record.get("point_hash"), "job_hash": record.get("job_hash"),
        "framework": fw.get("name"), "version": fw.get("version"), "repeat": record.get("repeat"),
        "status": record.get("status"), "reason": record.get("reason"),
        "model": (job.get("model") or {}).get("name"), "dataset": (job.get("dataset") or {}).get("name"),
        "machine_id": (record.get("env") or {}).get("machine_id"),
        "finished_at": get_path(record, "phases.result_written"),
    }
    for metric in METRICS.values():
        row[metric.name] = get_path(record, metric.path)
    return row


# What readers (report, audit, compare, history) rely on, beyond "it parses": a file that has the wrong
# shape is skipped with its path and the first problem, never a traceback deep in a renderer.
_TEXT_FIELDS = ("run_id", "run_dir", "suite", "job_hash", "point_hash", "reason", "log_tail")
_OBJECT_FIELDS = ("framework", "job", "runtime", "env", "train", "eval", "audit", "phases", "durations", "memory",
                  "gpu_activity", "energy", "mfu")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def shape_problem(record: Any) -> str | None:
    """Why ``record`` is not a result record readers can use, or None when it is."""
    if not isinstance(record, dict):
        return f"not a result record (a JSON {type(record).__name__}, expected an object)"
    status = record.get("status")
    if status not in STATUSES:
        return f"'status' is {status!r}, expected one of {', '.join(STATUSES)}"
    framework = record.get("framework")
    if not isinstance(framework, dict) or not isinstance(framework.get("name"), str):
        return "'framework' must be an object with a 'name'"
    for name in _TEXT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], str):
            return f"'{name}' is {type(record[name]).__name__}, expected text"
    if record.get("repeat") is not None and (not isinstance(record["repeat"], int) or isinstance(record["repeat"], bool)):
        return f"'repeat' is {record['repeat']!r}, expected an integer"
    for name in _OBJECT_FIELDS:
        if record.get(name) is not None and not isinstance(record[name], dict):
            return f"'{name}' is {type(record[name]).__name__}, expected an object"
    for parent, name in (("framework", "packages"), ("env", "git")):
        value = (record.get(parent) or {}).get(name)
        if value is not None and not isinstance(value, dict):
            return f"'{parent}.{name}' is {type(value).__name__}, expected an object"
    job = record.get("job") or {}
    for name in ("framework", "model", "dataset", "train", "launcher"):
        if name in job and not isinstance(job[name], dict):
            return f"'job.{name}' is {type(job[name]).__name__}, expected an object"
    if "fairness" in job and job["fairness"] not in ("strict", "native"):
        return f"'job.fairness' is {job['fairness']!r}, expected strict or native"
    log = (record.get("train") or {}).get("log")
    if log is not None and (not isinstance(log, list) or not all(isinstance(e, dict) for e in log)):
        return "'train.log' must be a list of objects"
    for name in ("phases", "durations"):
        bad = [k for k, v in (record.get(name) or {}).items() if v is not None and not _is_number(v)]
        if bad:
            return f"'{name}.{bad[0]}' is not a number"
    checks = record.get("checks")
    if checks is not None and (not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks)):
        return "'checks' must be a list of objects"
    for metric in METRICS.values():
        value = get_path(record, metric.path)
        if value is not None and not _is_number(value):
            return f"'{metric.path}' is {value!r}, expected a number"
    return None


def find_result_files(paths: Iterable[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(p for p in sorted(path.rglob("result.json")) if ".hydra" not in p.parts)
    return found


def load_results(paths: Iterable[Path], *, warn=lambda msg: print(msg, file=sys.stderr)) -> list[dict[str, Any]]:
    """Load every result.json under ``paths``; a corrupt or truncated one is named and skipped."""
    records = []
    for path in find_result_files(paths):
        try:
            record = read_json(path)
            problem = shape_problem(record)
            if problem:
                raise ValueError(f"{path}: {problem}")
        except (OSError, ValueError) as err:
            warn(f"skipped: {err}")
            continue
        # Where the record was read from: run folders move (a clone elsewhere, results copied back
        # from a GPU machine), so files beside result.json are found from here, not from run_dir.
        record["_source"] = str(path)
        _judge_checks_again(record)
        records.append(record)
    return records


def _judge_checks_again(record: dict[str, Any]) -> None:
    """Cross-checks are a judgement of recorded measurements: every result is judged by today's rules
    (one rule for old and new results alike), the verdict written at run time kept as ``checks_at_run``
    where it differs. The measurements themselves are never touched."""
    if record.get("status") != "ok" or not record.get("checks"):
        return
    from harness.checks import run_checks  # noqa: PLC0415

    now = run_checks(record)
    if [(c["name"], c["passed"]) for c in now] != [(c.get("name"), c.get("passed")) for c in record["checks"]]:
        record["checks_at_run"] = record["checks"]
    record["checks"] = now


def to_frame(records: list[dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame([flatten(r) for r in records])
