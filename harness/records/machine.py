"""Where a run ran: the framework's packages, the machine and checkout (``env``), and what else the host did."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.records.base import NULL_AS_EMPTY, OMIT_NONE, Record


@dataclass
class FrameworkInfo(Record):
    name: str | None = None
    version: str | None = None
    packages: dict[str, str | None] = field(default_factory=dict, metadata=NULL_AS_EMPTY)


@dataclass
class Git(Record):
    commit: str | None = None
    dirty: bool | None = None
    declared_by: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class Env(Record):
    hostname: str | None = None
    machine_id: str | None = None
    gpu_name: str | None = None
    gpu_names: list[str] | None = None
    gpu_count: int | None = None
    driver: str | None = None
    cuda_driver_version: str | None = None
    cuda: str | None = None
    reason: str | None = None  # why no GPU was seen
    python: str | None = None
    platform: str | None = None
    cpu_count: int | None = None
    cpu_affinity: str | None = None  # the CPUs the run may use ("0-7"), when fewer than cpu_count (taskset)
    git: Git = field(default_factory=Git, metadata=NULL_AS_EMPTY)
    cuda_visible_devices: str | None = None
    torch_cuda: str | None = None  # the CUDA build torch reports in the worker (None: a CPU build)


@dataclass
class Host(Record):
    """Other work on the host while the run trained (harness.sampling.host_activity)."""
    cpu_count: int | None = None
    cpu_shared: bool | None = None
    reason: str | None = None
    disclosure: dict[str, Any] | None = None  # the verdict: {shared, because: [...]}
