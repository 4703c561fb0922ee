"""The result record (``result.json``, one per run) and the worker's part of it (``worker_result.json``).

Layout, section by section: :data:`harness.results.load.RESULT_LAYOUT`. The parent assembles a :class:`Result`
from the worker's :class:`WorkerResult` and its own readings (``harness.results.assemble.build_record``); reports,
compare, history and the audit read results only as :class:`Result` (``harness.results.load.load_records``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.records.audit import Audit
from harness.records.base import NULL_AS_EMPTY, OMIT_NONE, TRANSIENT, Record
from harness.records.checks import Check
from harness.records.job import JobSpec, Runtime
from harness.records.machine import Env, FrameworkInfo, Host
from harness.records.memory import Energy, GpuActivity, GpuClocks, Memory, Mfu
from harness.records.profile import Profile
from harness.records.recipe import RecipeResult
from harness.records.schema import SCHEMA_VERSION
from harness.records.training import Eval, Train


@dataclass
class WorkerResult(Record):
    """What the worker writes: its status and measurements; the parent adds what only it can see."""
    status: str = "failed"
    reason: str = ""
    framework_packages: dict[str, str | None] = field(default_factory=dict)
    train: Train | None = field(default=None, metadata=OMIT_NONE)
    memory: Memory | None = field(default=None, metadata=OMIT_NONE)
    audit: Audit | None = field(default=None, metadata=OMIT_NONE)
    eval: Eval | None = field(default=None, metadata=OMIT_NONE)
    traceback: str | None = field(default=None, metadata=OMIT_NONE)
    runtime: Runtime | None = field(default=None, metadata=OMIT_NONE)
    model_path: str | None = field(default=None, metadata=OMIT_NONE)
    phases: dict[str, float] | None = field(default=None, metadata=OMIT_NONE)
    profile: Profile | None = field(default=None, metadata=OMIT_NONE)
    recipe: RecipeResult | None = field(default=None, metadata=OMIT_NONE)  # recommended runs only


@dataclass
class Result(Record):
    schema: int = SCHEMA_VERSION
    run_id: str | None = None
    run_dir: str | None = None
    suite: str | None = None
    job_hash: str | None = None
    point_hash: str | None = None
    repeat: int | None = None
    status: str | None = None
    reason: str | None = None
    log_tail: str | None = None
    framework: FrameworkInfo = field(default_factory=FrameworkInfo)
    job: JobSpec = field(default_factory=JobSpec, metadata=NULL_AS_EMPTY)
    runtime: Runtime = field(default_factory=Runtime, metadata=NULL_AS_EMPTY)
    env: Env = field(default_factory=Env, metadata=NULL_AS_EMPTY)
    wall_time_s: float | None = None
    # set when the parent ended a worker that outlived its written result (harness/launch/child.py)
    teardown_note: str | None = field(default=None, metadata=OMIT_NONE)
    train: Train | None = None
    eval: Eval | None = None
    audit: Audit | None = None
    traceback: str | None = field(default=None, metadata=OMIT_NONE)
    phases: dict[str, float] = field(default_factory=dict, metadata=NULL_AS_EMPTY)
    durations: dict[str, float | None] = field(default_factory=dict, metadata=NULL_AS_EMPTY)
    memory: Memory = field(default_factory=Memory, metadata=NULL_AS_EMPTY)
    host: Host | None = None  # absent in results from before host activity was sampled
    gpu_activity: GpuActivity = field(default_factory=GpuActivity, metadata=NULL_AS_EMPTY)
    gpu_clocks: GpuClocks | None = None  # absent in results from before clocks were sampled (session 4)
    energy: Energy = field(default_factory=Energy, metadata=NULL_AS_EMPTY)
    mfu: Mfu | None = None
    checks: list[Check] = field(default_factory=list, metadata=NULL_AS_EMPTY)
    profile: Profile | None = field(default=None, metadata=OMIT_NONE)  # profiled runs only
    recipe: RecipeResult | None = field(default=None, metadata=OMIT_NONE)  # recommended runs only
    # set on load only: the verdicts written at run time, where today's rules judge differently
    checks_at_run: list[Check] | None = field(default=None, metadata=OMIT_NONE)
    # where the record was read from (run folders move: files beside result.json are found from here)
    source: str | None = field(default=None, metadata=TRANSIENT)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def profiled(self) -> str | None:
        """The profile this run ran under (memory | time), None for an ordinary run: a profiled run's
        speed and memory include the profiler's cost and are never compared with ordinary runs'."""
        return self.job.profile.kind if self.job.profile is not None else None

    @property
    def recipe_name(self) -> str:
        """identical (every run from before recipes existed) or recommended."""
        return self.job.recipe_name

    @property
    def label(self) -> str:
        """``framework-version``, the label reports and the fairness audit group runs by."""
        return f"{self.framework.name}-{self.framework.version}"

    @property
    def world_size(self) -> int:
        """The ranks the run was launched with: the job's launcher, else (older results) the runtime's."""
        if self.job.launcher is not None:
            return self.job.world_size
        return int(self.runtime.world_size or 1)

    def lookup(self, dotted: str) -> Any:
        """A recorded value by dotted path (``train.step_time_s.median``), None where not recorded: the
        metric paths of ``harness.results.load.METRICS`` are data; this is their only reader."""
        node: Any = self
        for part in dotted.split("."):
            if isinstance(node, Record):
                node = getattr(node, part, None) if part in type(node).__dataclass_fields__ else node.extra.get(part)
            elif isinstance(node, dict):
                node = node.get(part)
            else:
                return None
            if node is None:
                return None
        return node


def runtime_of(worker: WorkerResult | None, parent: Runtime) -> Runtime:
    """The runtime a result records: the worker's (it extends the parent's with what only it can see),
    else the parent's, when no worker result came back."""
    if worker is not None and worker.runtime is not None and worker.runtime.to_dict():
        return worker.runtime
    return parent.plain()
