"""Assemble the final result record from the worker's measurements and the parent's own."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

from harness.records import run_files
from harness.results.cross_checks import run_checks
from harness.results.machine import environment
from harness.sampling.gpu_clocks import clocks_record
from harness.sampling.host_activity import host_disclosure
from harness.phases import durations
from harness.records import JobFile, Result, WorkerResult, runtime_of
from harness.records.machine import Env, FrameworkInfo, Host
from harness.records.memory import Energy, GpuActivity, GpuClocks, Memory, Mfu
from harness.records.profile import MemoryProfile, Profile
from harness.records.recipe import RecipeResult


def _mfu(record: Result, model_path: str | None, job: JobFile) -> Mfu | None:
    from harness.results.flops import flops_per_token, mfu, peak_flops

    train = record.train
    config_path = Path(model_path or "") / "config.json"
    if train is None or not train.tokens_per_s or not config_path.is_file() or not train.samples:
        return None
    config = json.loads(config_path.read_text())
    seq_len = max(1, round(train.tokens / train.samples))
    trainable = (record.audit.trainable_params if record.audit is not None else None) or 0
    flops = flops_per_token(config, seq_len, trainable_params=trainable,
                            gradient_checkpointing=job.spec.train["gradient_checkpointing"])
    peak = peak_flops(record.env.gpu_name, job.spec.mfu_peak_flops)
    achieved = train.tokens_per_s * flops["flops_per_token"]
    return Mfu.from_dict({**flops, "mean_seq_len": seq_len, "achieved_flops_per_s": achieved,
                          "peak_flops_per_s": peak, "mfu": mfu(train.tokens_per_s, flops["flops_per_token"], peak)})


def _nvml_peak_between(sampler: Any, nvml: dict[str, Any], t0: float | None, t1: float | None) -> int | None:
    """Peak device-used memory above each device's idle baseline between two wall-clock times."""
    if not nvml.get("available") or t0 is None or t1 is None:
        return None
    baselines = {d.get("nvml_index"): d.get("baseline_used_bytes") or 0 for d in nvml.get("per_device") or []}
    peaks = [row["used_bytes"] - baselines.get(row["device"], 0) for row in sampler.timeline()
             if t0 <= row["t"] <= t1 and row["used_bytes"] is not None]
    return max(peaks) if peaks else None


def _memory(worker: WorkerResult | None, sampler: Any, nvml: dict[str, Any], phases: dict[str, float]) -> Memory:
    """The worker's allocator peaks, and the parent's NVML readings beside them."""
    memory = Memory.from_dict(worker.memory.to_dict() if worker is not None and worker.memory is not None else {})
    train_peak = _nvml_peak_between(sampler, nvml, phases.get("train_start"), phases.get("train_end"))
    memory.nvml_available = nvml.get("available")
    memory.nvml_reason = nvml.get("reason")
    # headline: the training phase (what the card must hold to train); the whole run, model loading and
    # evaluation included, beside it
    memory.nvml_peak_bytes = train_peak if train_peak is not None else nvml.get("peak_used_bytes")
    memory.nvml_peak_scope = "train" if train_peak is not None else "run"
    memory.nvml_run_peak_bytes = nvml.get("peak_used_bytes")
    memory.nvml_baseline_bytes = nvml.get("baseline_used_bytes")
    memory.nvml_process_peak_bytes = nvml.get("peak_process_bytes")
    memory.nvml_samples = nvml.get("samples")
    memory.nvml_interval_s = nvml.get("interval_s")
    memory.timeline = run_files.MEMORY_TIMELINE
    # every sampled GPU (one per rank under torchrun); the headline is the busiest card
    memory.nvml_per_device = [{k: d.get(k) for k in ("nvml_index", "name", "peak_used_bytes", "peak_process_bytes",
                                                     "baseline_used_bytes", "mean_util_pct", "max_power_w")}
                              for d in nvml.get("per_device") or []]
    # Which part of the run set the card's peak: loading, training, the framework's evaluation, ours.
    start = phases.get("spawned") or phases.get("process_start")
    windows = {"load": (start, phases.get("train_start")), "train": (phases.get("train_start"), phases.get("train_end")),
               "framework_eval": (phases.get("train_end"), phases.get("framework_eval_end")),
               "our_eval": (phases.get("framework_eval_end"), phases.get("eval_end"))}
    memory.nvml_phase_peaks = {name: _nvml_peak_between(sampler, nvml, t0, t1) for name, (t0, t1) in windows.items()}
    return memory


def _profile(worker: WorkerResult | None, memory: Memory) -> Profile | None:
    """The worker's profile; a memory profile completed with the parent's NVML (non-PyTorch memory)."""
    profile = worker.profile if worker is not None else None
    if profile is not None and profile.memory is not None and profile.memory.status == "ok":
        from harness.results.memory_attribution import with_nvml

        done = with_nvml(profile.memory.to_dict(), nvml_peak=memory.nvml_peak_bytes if memory.nvml_peak_scope == "train"
                         else None, reserved=profile.memory.reserved_bytes)
        profile.memory = MemoryProfile.from_dict(done, "profile.memory")
    return profile


def build_record(*, job: JobFile, view: dict[str, Any], sampler: Any, run_dir: Path, repeat: int,
                 job_hash: str, point_hash: str, identical_hashes: tuple[str, str] | None = None) -> Result:
    """``view``: the parent's view of the worker (harness.launch.child.spawn_worker), its WorkerResult under "worker".
    ``identical_hashes``: a recommended job's identical twin's (job, point) hashes (harness.config.job.identical_twin)."""
    worker: WorkerResult | None = view.get("worker")
    status = view.get("status") or (worker.status if worker is not None else "crashed")
    record = Result(
        run_id=f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}",
        run_dir=str(run_dir), suite=job.spec.suite, job_hash=job_hash, point_hash=point_hash, repeat=repeat,
        status=status, reason=view.get("reason") or (worker.reason if worker is not None else ""),
        log_tail=view.get("log_tail", ""),
        framework=FrameworkInfo(name=job.spec.framework.name, version=job.spec.framework.version,
                                packages=worker.framework_packages if worker is not None else {}),
        job=job.spec, runtime=runtime_of(worker, job.runtime), env=Env.from_dict(environment()),
        wall_time_s=view.get("wall_time_s"), teardown_note=view.get("teardown_note"),
        train=worker.train if worker is not None else None,
        eval=worker.eval if worker is not None else None,
        audit=worker.audit if worker is not None else None,
        traceback=worker.traceback if worker is not None else None,
    )
    # Only the worker imports torch: the CUDA build it reports joins the machine's facts.
    record.env.torch_cuda = record.runtime.torch_cuda
    phases = dict(worker.phases or {}) if worker is not None else {}
    if view.get("spawned_at"):
        phases["spawned"] = view["spawned_at"]
    record.phases = phases
    record.durations = {**durations(phases), "parent_total": view.get("wall_time_s")}
    nvml = sampler.summary()
    record.memory = _memory(worker, sampler, nvml, phases)
    record.host = Host.from_dict({**(nvml.get("host") or {})})
    record.host.disclosure = host_disclosure(record.host.to_dict())
    record.gpu_activity = GpuActivity(mean_util_pct=nvml.get("mean_util_pct"), max_power_w=nvml.get("max_power_w"))
    # The SM clock of every step and of the timed window: what a repeat's speed owes to the GPU's power
    # management rather than to the framework (harness/sampling/gpu_clocks.py)
    clocks = clocks_record(getattr(sampler, "clocks", None), record.train.log if record.train else [],
                           record.train.warmup_steps if record.train else None,
                           getattr(sampler, "power_limit_w", lambda: None)())
    record.gpu_clocks = GpuClocks.from_dict(clocks, "gpu_clocks") if clocks is not None else None
    tokens = record.train.tokens if record.train is not None else None
    joules = sampler.energy_between(phases["train_start"], phases["train_end"]) \
        if "train_start" in phases and "train_end" in phases else None
    record.energy = Energy(train_joules=joules, method=nvml.get("energy_source"),
                           joules_per_1k_tokens=joules / (tokens / 1000) if joules and tokens else None)
    record.profile = _profile(worker, record.memory)
    record.mfu = _mfu(record, worker.model_path if worker is not None else None, job) if record.ok else None
    if identical_hashes is not None:
        # the run this one is checked against, found by hash rather than guessed (audit, report)
        spec = job.spec.recipe
        record.recipe = (worker.recipe if worker is not None and worker.recipe is not None
                         else RecipeResult(name=spec.name if spec else None, packing=spec.packing if spec else None))
        record.recipe.identical_job_hash, record.recipe.identical_point_hash = identical_hashes
    record.checks = run_checks(record) if record.ok else []  # after the recipe: its packing explains two checks
    return record
