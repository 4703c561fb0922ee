"""Memory, energy, GPU activity and MFU of a run: the parent's NVML readings beside the worker's allocator peaks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.records.base import Record


@dataclass
class Memory(Record):
    # the worker's (torch allocator; the busiest rank's under torchrun, each rank's in per_rank)
    torch_max_allocated_bytes: int | None = None
    torch_max_reserved_bytes: int | None = None
    per_rank: list[dict[str, Any]] | None = None
    phase_peaks: dict[str, Any] | None = None
    run_peaks: dict[str, Any] | None = None
    # the parent's (NVML, from outside the framework)
    nvml_available: bool | None = None
    nvml_reason: str | None = None
    nvml_peak_bytes: int | None = None
    nvml_peak_scope: str | None = None  # "train" or "run"; absent in results from before the split
    nvml_run_peak_bytes: int | None = None
    nvml_baseline_bytes: int | None = None
    nvml_process_peak_bytes: int | None = None
    nvml_samples: int | None = None
    nvml_interval_s: float | None = None
    timeline: str | None = None  # the CSV beside result.json (harness.records.run_files.MEMORY_TIMELINE)
    nvml_per_device: list[dict[str, Any]] | None = None
    nvml_phase_peaks: dict[str, Any] | None = None


@dataclass
class GpuActivity(Record):
    mean_util_pct: float | None = None
    max_power_w: float | None = None


@dataclass
class ClockWindow(Record):
    """NVML clock readings over one window (harness/sampling/gpu_clocks.py window_summary)."""
    samples: int | None = None
    sm_mhz_mean: float | None = None
    sm_mhz_min: int | None = None
    sm_mhz_max: int | None = None
    temperature_c_max: int | None = None
    temperature_c_start: int | None = None
    temperature_c_mean: float | None = None
    power_capped_share: float | None = None
    thermal_share: float | None = None


@dataclass
class GpuClocks(Record):
    """The SM clock during the timed steps and per step (aligned with ``train.log``), the power limit."""
    timed: ClockWindow = field(default_factory=ClockWindow)
    per_step_sm_mhz: list[float | None] = field(default_factory=list)
    power_limit_w: float | None = None
    source: str | None = None


@dataclass
class Energy(Record):
    train_joules: float | None = None
    method: str | None = None  # the sampler's energy source (counter, or power integrated over time)
    joules_per_1k_tokens: float | None = None


@dataclass
class Mfu(Record):
    flops_per_token: float | None = None
    formula: str | None = None
    parts: dict[str, Any] | None = None
    mean_seq_len: int | None = None
    achieved_flops_per_s: float | None = None
    peak_flops_per_s: float | None = None
    mfu: float | None = None
