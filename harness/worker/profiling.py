"""The worker's side of ``profile=memory|time``: which profiler a job asks for, and its record.

Off by default: a job without a ``profile`` (every unprofiled job, harness/job.py) gets no profiler and
nothing here runs. The profile never changes the run's status: a profile that could not be taken says why
in its own record (harness/records/profile.py).
"""
from __future__ import annotations

import os
from typing import Any

from harness.records.profile import Profile


def apply_alloc_conf(job: dict[str, Any]) -> None:
    """``profile.alloc_conf``: the controlled rerun's allocator setting, before anything touches CUDA."""
    conf = (job.get("profile") or {}).get("alloc_conf")
    if conf:
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = str(conf)


def profiler_for(job: dict[str, Any]) -> Any | None:
    """The callback of the job's profile, or None when the job is not profiled."""
    profile = job.get("profile") or {}
    kind = profile.get("kind")
    if kind and int(os.environ.get("RANK", "0")) != 0:
        return None  # under torchrun rank 0 profiles (and writes the result); its peers train unprofiled
    run_dir = job["runtime"]["run_dir"]
    if kind == "memory":
        from harness.worker.memory_profiler import MemoryProfiler

        return MemoryProfiler(profile, run_dir)
    if kind == "time":
        from harness.worker.time_profiler import TimeProfiler

        t = job["train"]
        return TimeProfiler(profile, run_dir, warmup_steps=t["measure_warmup_steps"], max_steps=t["max_steps"])
    return None


def loss_probe_for(job: dict[str, Any], native_loss: str) -> Any | None:
    """The loss-path read-back of a profiled run (and the same-loss control, ``profile.loss``), or None when
    the job is not profiled. On every rank: the control must change every rank's loss."""
    profile = job.get("profile") or {}
    if not profile.get("kind"):
        return None
    from harness.worker.loss_path import LossPathProbe

    return LossPathProbe(profile.get("loss"), native_loss)


def lora_cast_probe_for(job: dict[str, Any], native: str) -> Any | None:
    """The LoRA input cast read-back of a profiled run (and its control, ``profile.lora_input_cast=off``), or
    None when the job is not profiled. On every rank: the control must change every rank's step."""
    profile = job.get("profile") or {}
    if not profile.get("kind"):
        return None
    from harness.worker.lora_cast import LoraCastProbe

    return LoraCastProbe(profile.get("lora_input_cast"), native)


def finish(profiler: Any, *, step_log: list[dict[str, Any]], memory: dict[str, Any],
           loss_probe: Any = None, lora_cast: Any = None) -> Profile:
    """The run's profile record from its profiler (after training, whatever its outcome). Never raises:
    a profile that fails is recorded as failed, and the run's own status and figures stand."""
    from harness.records.profile import LoraCast, LossPath, MemoryProfile, TimeProfile

    kind = profiler.kind
    try:
        if kind == "memory":
            out = Profile(kind=kind, memory=profiler.finish(memory.get("torch_max_allocated_bytes"),
                                                            memory.get("torch_max_reserved_bytes")))
        else:
            out = Profile(kind=kind, time=profiler.finish(step_log))
    except Exception as err:  # noqa: BLE001
        failed = {"status": "failed", "reason": f"{type(err).__name__}: {str(err)[:300]}"}
        out = Profile(kind=kind, memory=MemoryProfile.from_dict(failed)) if kind == "memory" else \
            Profile(kind=kind, time=TimeProfile.from_dict(failed))
    if loss_probe is not None:
        try:
            out.loss_path = loss_probe.finish()
        except Exception as err:  # noqa: BLE001
            out.loss_path = LossPath(notes=[f"read-back failed: {type(err).__name__}: {str(err)[:300]}"])
    if lora_cast is not None:
        try:
            out.lora_cast = lora_cast.finish()
        except Exception as err:  # noqa: BLE001
            out.lora_cast = LoraCast(notes=[f"read-back failed: {type(err).__name__}: {str(err)[:300]}"])
    return out
