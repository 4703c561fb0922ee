"""The job record: what one run trains and measures (``job.json``), and the runtime facts beside it.

The job is composed by the parent from the Hydra config (``harness.config.job.job_from_config``) and hashed
there; this module only gives it a type. ``train`` stays a mapping: it is the recipe's hyperparameters
exactly as configured (conf/train), which the adapters translate, and the hash covers it as it is.

``runtime`` has one owner per field: the parent writes where the run lives and how many ranks it launches
(:meth:`Runtime.for_run`); the worker adds what only its process can see (device, bf16, CUDA build, rank;
:meth:`Runtime.worker_facts`). The result's runtime is the worker's copy when the worker reported one, else
the parent's (:func:`harness.records.result.runtime_of`): the worker's copy always extends the parent's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.records import run_files
from harness.records.base import OMIT_NONE, Record
from harness.records.profile import ProfileSpec


@dataclass
class FrameworkSpec(Record):
    name: str | None = None
    version: str | None = None
    # recommended jobs only (harness/frameworks/recipes.py): the framework's features and what is on anyway
    recommended: list[dict[str, Any]] | None = field(default=None, metadata=OMIT_NONE)
    always_on: list[dict[str, Any]] | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class RecipeSpec(Record):
    name: str = "identical"
    packing: str = "framework"


@dataclass
class ModelSpec(Record):
    name: str | None = None
    hub_id: str | None = None
    weights: str | None = None
    init_seed: int | None = None
    path: str | None = None


@dataclass
class DatasetSpec(Record):
    name: str | None = None
    hub_id: str | None = None
    path: str | None = None
    digest: str | None = None
    format: str | None = None


@dataclass
class LauncherSpec(Record):
    name: str = "local"
    nproc: int = 1


@dataclass
class Runtime(Record):
    run_dir: str | None = None
    data_dir: str | None = None
    repeat: int | None = None
    world_size: int | None = None
    rank: int | None = field(default=None, metadata=OMIT_NONE)  # only under torchrun
    device: str | None = None
    bf16_supported: bool | None = None
    gpu_name: str | None = None
    torch_cuda: str | None = None
    dist_backend: str | None = field(default=None, metadata=OMIT_NONE)

    @classmethod
    def for_run(cls, *, run_dir: str, data_dir: str, repeat: int, world_size: int) -> "Runtime":
        """The parent's part: written into job.json before the worker starts."""
        return cls.from_dict({"run_dir": run_dir, "data_dir": data_dir, "repeat": repeat, "world_size": world_size})

    def plain(self) -> "Runtime":
        """What a result records of it: plain values only (an adapter may stash an object beside them)."""
        return Runtime.from_dict({k: v for k, v in self.to_dict().items()
                                  if isinstance(v, (str, int, float, bool, type(None)))})


@dataclass
class JobSpec(Record):
    """The job without its runtime: what ``job_hash`` and ``point_hash`` identify."""
    framework: FrameworkSpec = field(default_factory=FrameworkSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    train: dict[str, Any] = field(default_factory=dict)
    suite: str | None = None
    fairness: str | None = None
    mfu_peak_flops: float | None = None
    launcher: LauncherSpec | None = None  # absent in results from before the launcher group
    profile: ProfileSpec | None = field(default=None, metadata=OMIT_NONE)  # only in profiled jobs
    recipe: RecipeSpec | None = field(default=None, metadata=OMIT_NONE)  # only in recommended jobs

    @property
    def recipe_name(self) -> str:
        return self.recipe.name if self.recipe is not None else "identical"

    @property
    def world_size(self) -> int:
        """The ranks this job launches (the launcher is part of the job)."""
        launcher = self.launcher or LauncherSpec()
        return int(launcher.nproc or 1) if launcher.name == "torchrun" else 1


@dataclass
class JobFile(Record):
    """``job.json``: the job and the runtime the worker reads (the worker's only input)."""
    spec: JobSpec = field(default_factory=JobSpec)
    runtime: Runtime = field(default_factory=Runtime)

    @classmethod
    def from_dict(cls, data: Any, where: str = run_files.JOB) -> "JobFile":  # type: ignore[override]
        if not isinstance(data, dict):
            return super().from_dict(data, where)
        spec = {k: v for k, v in data.items() if k != "runtime"}
        return cls(spec=JobSpec.from_dict(spec, where), runtime=Runtime.from_dict(data.get("runtime") or {},
                                                                                  f"{where}.runtime"))

    def to_dict(self) -> dict[str, Any]:
        return {**self.spec.to_dict(), "runtime": self.runtime.to_dict()}
