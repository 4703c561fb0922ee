"""Assemble the final result record from the worker's measurements and the parent's own."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from harness.checks import run_checks
from harness.environment import environment
from harness.measure.gpu_clocks import clocks_record
from harness.measure.host_activity import host_disclosure
from harness.phases import durations
from harness.results import SCHEMA_VERSION


def _mfu(record: dict[str, Any], model_path: str | None, job: dict[str, Any]) -> dict[str, Any] | None:
    from harness.measure.flops import flops_per_token, mfu, peak_flops

    train = record.get("train") or {}
    config_path = Path(model_path or "") / "config.json"
    if not train.get("tokens_per_s") or not config_path.is_file() or not train.get("samples"):
        return None
    config = json.loads(config_path.read_text())
    seq_len = max(1, round(train["tokens"] / train["samples"]))
    flops = flops_per_token(config, seq_len, trainable_params=(record.get("audit") or {}).get("trainable_params") or 0,
                            gradient_checkpointing=job["train"]["gradient_checkpointing"])
    peak = peak_flops(record["env"].get("gpu_name"), job.get("mfu_peak_flops"))
    achieved = train["tokens_per_s"] * flops["flops_per_token"]
    return {**flops, "mean_seq_len": seq_len, "achieved_flops_per_s": achieved, "peak_flops_per_s": peak,
            "mfu": mfu(train["tokens_per_s"], flops["flops_per_token"], peak)}


def _nvml_peak_between(sampler: Any, nvml: dict[str, Any], t0: float | None, t1: float | None) -> int | None:
    """Peak device-used memory above each device's idle baseline between two wall-clock times."""
    if not nvml.get("available") or t0 is None or t1 is None:
        return None
    baselines = {d.get("nvml_index"): d.get("baseline_used_bytes") or 0 for d in nvml.get("per_device") or []}
    peaks = [row["used_bytes"] - baselines.get(row["device"], 0) for row in sampler.timeline()
             if t0 <= row["t"] <= t1 and row["used_bytes"] is not None]
    return max(peaks) if peaks else None


def build_record(*, job: dict[str, Any], view: dict[str, Any], sampler: Any, run_dir: Path, repeat: int,
                 job_hash: str, point_hash: str) -> dict[str, Any]:
    worker = view.get("worker") or {}
    fw = job["framework"]
    record: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "run_id": f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
        "run_dir": str(run_dir),
        "suite": job.get("suite"),
        "job_hash": job_hash,
        "point_hash": point_hash,
        "repeat": repeat,
        "status": view.get("status") or worker.get("status", "crashed"),
        "reason": view.get("reason") or worker.get("reason", ""),
        "log_tail": view.get("log_tail", ""),
        "framework": {"name": fw["name"], "version": fw["version"], "packages": worker.get("framework_packages", {})},
        "job": {k: v for k, v in job.items() if k != "runtime"},
        # The worker's runtime facts; the parent's (world size...) when no worker result came back.
        "runtime": worker.get("runtime") or {k: v for k, v in (job.get("runtime") or {}).items()
                                              if isinstance(v, (str, int, float, bool, type(None)))},
        "env": environment(),
        "wall_time_s": view.get("wall_time_s"),
        "train": worker.get("train"),
        "eval": worker.get("eval"),
        "audit": worker.get("audit"),
    }
    # Only the worker imports torch: the CUDA build it reports joins the machine's facts.
    record["env"]["torch_cuda"] = (record["runtime"] or {}).get("torch_cuda")
    if worker.get("traceback"):
        record["traceback"] = worker["traceback"]
    phases = dict(worker.get("phases") or {})
    if view.get("spawned_at"):
        phases["spawned"] = view["spawned_at"]
    record["phases"] = phases
    record["durations"] = {**durations(phases), "parent_total": view.get("wall_time_s")}
    nvml = sampler.summary()
    memory = dict(worker.get("memory") or {})
    train_peak = _nvml_peak_between(sampler, nvml, phases.get("train_start"), phases.get("train_end"))
    memory.update({"nvml_available": nvml.get("available"), "nvml_reason": nvml.get("reason"),
                   # headline: the training phase (what the card must hold to train); the whole run,
                   # model loading and evaluation included, beside it
                   "nvml_peak_bytes": train_peak if train_peak is not None else nvml.get("peak_used_bytes"),
                   "nvml_peak_scope": "train" if train_peak is not None else "run",
                   "nvml_run_peak_bytes": nvml.get("peak_used_bytes"),
                   "nvml_baseline_bytes": nvml.get("baseline_used_bytes"),
                   "nvml_process_peak_bytes": nvml.get("peak_process_bytes"), "nvml_samples": nvml.get("samples"),
                   "nvml_interval_s": nvml.get("interval_s"), "timeline": "memory_timeline.csv",
                   # every sampled GPU (one per rank under torchrun); the headline is the busiest card
                   "nvml_per_device": [{k: d.get(k) for k in ("nvml_index", "name", "peak_used_bytes",
                                                              "peak_process_bytes", "baseline_used_bytes",
                                                              "mean_util_pct", "max_power_w")}
                                       for d in nvml.get("per_device") or []]})
    # Which part of the run set the card's peak: loading, training, the framework's evaluation, ours.
    start = phases.get("spawned") or phases.get("process_start")
    windows = {"load": (start, phases.get("train_start")), "train": (phases.get("train_start"), phases.get("train_end")),
               "framework_eval": (phases.get("train_end"), phases.get("framework_eval_end")),
               "our_eval": (phases.get("framework_eval_end"), phases.get("eval_end"))}
    memory["nvml_phase_peaks"] = {name: _nvml_peak_between(sampler, nvml, t0, t1) for name, (t0, t1) in windows.items()}
    record["memory"] = memory
    record["host"] = {**(nvml.get("host") or {})}
    record["host"]["disclosure"] = host_disclosure(record["host"])
    record["gpu_activity"] = {k: nvml.get(k) for k in ("mean_util_pct", "max_power_w")}
    # The SM clock of every step and of the timed window: what a repeat's speed owes to the GPU's power
    # management rather than to the framework (harness/measure/gpu_clocks.py)
    record["gpu_clocks"] = clocks_record(getattr(sampler, "clocks", None), record["train"],
                                         getattr(sampler, "power_limit_w", lambda: None)())
    tokens = (record["train"] or {}).get("tokens")
    joules = sampler.energy_between(phases["train_start"], phases["train_end"]) \
        if "train_start" in phases and "train_end" in phases else None
    record["energy"] = {"train_joules": joules, "method": nvml.get("energy_source"),
                        "joules_per_1k_tokens": joules / (tokens / 1000) if joules and tokens else None}
    record["mfu"] = _mfu(record, worker.get("model_path"), job) if record["status"] == "ok" else None
    record["checks"] = run_checks(record) if record["status"] == "ok" else []
    return record
