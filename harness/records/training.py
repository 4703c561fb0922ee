"""What the worker measured while training (``train``) and evaluating (``eval``).

``train.log`` stays a list of per-step mappings: its keys are what the framework logged at each step
(loss, grad_norm, lr, ...) beside ours, and differ between frameworks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.records.base import Record


@dataclass
class Spread(Record):
    """A sample's summary (harness.stats.summarize)."""
    median: float | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    p10: float | None = None
    p90: float | None = None


@dataclass
class Warmup(Record):
    """The warm-up and the evidence that step times had settled when timing started
    (harness/worker/step_meter.py). ``extended_by``: results from before the window was fixed."""
    min_warmup_steps: int | None = None
    timing_starts_after_step: int | None = None
    settle_factor: float | None = None
    steady_fixed_s: float | None = None
    steady_s_per_token: float | None = None
    slow_steps: list[int] = field(default_factory=list)
    unsettled_timed_steps: list[int] | None = None
    settled: bool | None = None
    extended_by: int | None = None


@dataclass
class Train(Record):
    steps: int | None = None
    warmup_steps: int | None = None
    timed_steps: int | None = None
    warmup: Warmup | None = None
    tokens: int | None = None
    supervised_tokens: int | None = None
    samples: int | None = None
    timed_tokens: int | None = None
    timed_supervised_tokens: int | None = None
    timed_samples: int | None = None
    timed_time_s: float | None = None
    tokens_per_s: float | None = None
    supervised_tokens_per_s: float | None = None
    samples_per_s: float | None = None
    step_time_s: Spread | None = None
    framework_tokens_seen: int | None = None
    world_size: int | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    train_call_s: float | None = None

    def timed_log(self) -> list[dict[str, Any]]:
        """The timed steps of the log: those after the warm-up, or every step of a run no longer than its warm-up
        (the rule the rates were computed by, harness/worker/train_summary.py)."""
        start = int(self.warmup_steps or 0)
        return [s for s in self.log if s.get("step", 0) > start] or list(self.log)


@dataclass
class EvalPoint(Record):
    step: int | None = None
    tokens: int | None = None
    loss: float | None = None


@dataclass
class Eval(Record):
    loss: float | None = None
    tokens: int | None = None
    records: int | None = None
    record_mean_loss: float | None = None
    record_losses: list[list[float]] | None = None
    logits_dtype: str | None = None
    logits_rms: float | None = None
    batch_size: int | None = None
    framework_loss: float | None = None
    curve: list[EvalPoint] | None = None  # periodic evaluation (train.eval_steps)
