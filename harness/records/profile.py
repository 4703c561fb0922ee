"""The profile of a profiled run (``result.profile``; absent in every unprofiled result).

``profile=memory``: the CUDA allocator's state at the training peak, attributed to categories
(harness/results/memory_attribution.py). ``profile=time``: a few steady-state steps under torch.profiler,
attributed to parts of the step (harness/results/time_attribution.py). A profile that could not be taken
(``profile=memory`` on a CPU, a trace too large to keep) says why in ``status``/``reason``; the run's own
status is untouched by it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.records.base import OMIT_NONE, Record

# The categories of the memory peak, bottom to top of the report's stacked bar. The first five are the
# allocator's allocated bytes at the peak (they add up to it); the last two are the parent's side.
MEMORY_CATEGORIES = ("frozen_weights", "trainable_state", "activations", "logits_loss", "other")
MEMORY_OUTSIDE = ("fragmentation", "non_pytorch")
MEMORY_LABELS = {"frozen_weights": "frozen weights", "trainable_state": "trainable weights + grads + optimizer",
                 "activations": "activations (kept for backward, recomputed, their grads)",
                 "logits_loss": "logits and loss temporaries", "other": "other allocations",
                 "fragmentation": "reserved, unallocated (fragmentation)", "non_pytorch": "non-PyTorch (NVML - reserved)"}
# The parts of a profiled step, in the order they happen; "gaps": time in no recorded op (host view) or
# with no kernel running (device view).
TIME_PARTS = ("data", "forward", "loss", "backward", "optimizer", "gaps")
TIME_LABELS = {"data": "data and collation", "forward": "forward (to the LM head)", "loss": "LM head and loss",
               "backward": "backward", "optimizer": "optimizer (clip, step, zero_grad)",
               "gaps": "idle / launch gaps"}


@dataclass
class MemoryProfile(Record):
    status: str = "ok"  # ok | unavailable | failed
    reason: str | None = field(default=None, metadata=OMIT_NONE)
    # bytes at the peak, by MEMORY_CATEGORIES (+ MEMORY_OUTSIDE once the parent has NVML), and finer parts
    categories: dict[str, int | None] = field(default_factory=dict)
    detail: dict[str, int | None] = field(default_factory=dict)
    peak_allocated_bytes: int | None = None  # reconstructed from the allocator's history: the categories' sum
    measured_peak_allocated_bytes: int | None = None  # torch.cuda.max_memory_allocated over training
    coverage: float | None = None  # peak_allocated / measured (1.0: the history holds the peak)
    reserved_bytes: int | None = None  # torch.cuda.max_memory_reserved over training
    nvml_peak_bytes: int | None = None  # the parent's: NVML train-phase peak above idle
    peak_step: int | None = None
    peak_phase: str | None = None  # forward | loss | backward | optimizer | between steps
    alloc_conf: str | None = None  # PYTORCH_CUDA_ALLOC_CONF the worker ran with
    snapshot_file: str | None = None  # the allocator snapshot (pickle, pytorch.org/memory_viz), when kept
    top_allocations: list[dict[str, Any]] = field(default_factory=list)
    # where the LM head's mark fired (harness/worker/model_marks.py: "final norm output", "LM head input";
    # "none": the head and loss ran inside the model's forward, no module to hook: unsloth's fused loss)
    head_mark: str | None = field(default=None, metadata=OMIT_NONE)
    # categories that could not be told apart, each -> the category that holds its bytes
    # ({"logits_loss": "activations"}: no head mark in the peak step); such a category is None, not 0
    not_separated: dict[str, str] | None = field(default=None, metadata=OMIT_NONE)
    notes: list[str] = field(default_factory=list)


@dataclass
class TimeProfile(Record):
    status: str = "ok"
    reason: str | None = field(default=None, metadata=OMIT_NONE)
    steps: list[int] = field(default_factory=list)
    view: str | None = None  # "device" (kernel time on the GPU) or "host" (CPU ops; a CPU run)
    window_s: float | None = None  # the profiled steps' wall time, from the trace
    # by TIME_PARTS, adding up to window_s; a part in not_separated is None (its time is in another part)
    parts_s: dict[str, float | None] = field(default_factory=dict)
    host_parts_s: dict[str, float | None] = field(default_factory=dict)  # the host timeline's split, on a GPU too
    step_meter_s: float | None = None  # the same steps by our StepMeter (an independent clock)
    top_kernels: list[dict[str, Any]] = field(default_factory=list)
    top_ops: list[dict[str, Any]] = field(default_factory=list)
    # device view only (harness/results/gpu_idle.py): GPU busy time by kernel class, and what the GPU waited
    # for (short launch gaps; long gaps named by the host op spanning them); absent in older results
    kernel_classes_s: dict[str, float] = field(default_factory=dict)
    idle: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    # the SDPA backend ops of the window: name, count, total_s, median_s, max_s, slow_calls, slow_s (calls over 10x
    # the median); absent before they were read
    sdpa_ops: list[dict[str, Any]] | None = field(default=None, metadata=OMIT_NONE)
    trace_file: str | None = None
    trace_bytes: int | None = None
    trace_note: str | None = None  # why the kept trace was cut or dropped
    head_mark: str | None = field(default=None, metadata=OMIT_NONE)  # as MemoryProfile.head_mark
    # parts that could not be told apart, each -> the part that holds its time ({"loss": "forward"}: no
    # profiled micro-batch had an LM-head mark)
    not_separated: dict[str, str] | None = field(default=None, metadata=OMIT_NONE)
    notes: list[str] = field(default_factory=list)


@dataclass
class LossPath(Record):
    """Which loss path a profiled run's training steps actually took, read back from the live trainer and
    model (harness/worker/loss_path.py): what computed the loss, whether the LM head module produced the
    full-vocabulary logits and in which dtype. ``profile.loss=transformers`` (the same-loss control) says so
    in ``requested``; a native run records its framework's own path."""
    requested: str = "native"  # native | transformers (profile.loss)
    # the trainer's compute_loss (module.qualname of its class's) and the one that ran in its place, if any
    trainer_compute_loss: str | None = None
    compute_loss: str | None = None
    # what the model's forward calls given labels (module.qualname of its loss_function at train begin)
    model_loss_function: str | None = None
    # the LM head module's calls in training micro-steps (grad on), and its first output's shape and dtype:
    # 0 calls means the full logits were never built (a fused loss read the head's weight directly)
    head_calls: int = 0
    logits_shape: list[int] | None = None
    logits_dtype: str | None = None
    micro_steps: int = 0  # training micro-batches seen (the head calls a full-logits path makes)
    common_loss_calls: int = 0  # micro-batches the harness's common loss computed (profile.loss=transformers)
    loss_function: str | None = None  # the function the common loss called (transformers' ForCausalLMLoss)
    loss_dtype: str | None = None  # the dtype it computed cross-entropy in (ForCausalLMLoss upcasts: float32)
    path: str | None = None  # the above in one line, for the report
    notes: list[str] = field(default_factory=list)


@dataclass
class LoraCast(Record):
    """What peft's LoRA input cast did in a profiled run's training micro-steps, read back from the live model
    (harness/worker/lora_cast.py): each peft LoRA layer's forward calls ``_cast_input_dtype(x, lora_A.weight
    .dtype)``, which copies its input to the adapters' dtype (fp32 by default) unless the layer's
    ``cast_input_dtype_enabled`` is off. ``profile.lora_input_cast=off`` (the control) says so in ``requested``
    and switches it off in every layer for training; a native run records its framework's own casts."""
    requested: str = "native"  # native | off (profile.lora_input_cast)
    layers: int = 0  # peft LoRA layers on the live model at train begin
    switched: int = 0  # of them, set to cast_input_dtype_enabled=False by the control
    watched: bool = False  # whether _cast_input_dtype's calls were counted (not where the framework runs its own)
    micro_steps: int = 0  # training micro-batches seen (the model's forward with grad on)
    # _cast_input_dtype's calls in training forwards (recomputed forwards of checkpointed layers included):
    calls: int = 0  # all calls with a tensor input
    casts: int = 0  # of them, those that copied the input to another dtype
    skipped: int = 0  # of them, those whose dtypes differed but the cast was off: the copies the control removed
    cast_from: str | None = None  # the input's and the adapters' dtype at the first call whose dtypes differed
    cast_to: str | None = None
    autocast: str | None = None  # the autocast dtype at that call (None: autocast was off)
    summary: str | None = None  # the above in one line, for the report
    notes: list[str] = field(default_factory=list)


@dataclass
class Profile(Record):
    kind: str | None = None  # memory | time
    memory: MemoryProfile | None = field(default=None, metadata=OMIT_NONE)
    time: TimeProfile | None = field(default=None, metadata=OMIT_NONE)
    loss_path: LossPath | None = field(default=None, metadata=OMIT_NONE)  # absent before the read-back existed
    lora_cast: LoraCast | None = field(default=None, metadata=OMIT_NONE)  # absent before the read-back existed


@dataclass
class ProfileSpec(Record):
    """The job's profile group (absent from unprofiled jobs: harness/job.py)."""
    kind: str | None = None
    steps: int | None = None
    max_entries: int | None = None
    trace_max_mb: float | None = None
    alloc_conf: str | None = None
    loss: str | None = None  # the same-loss control (profile.loss=transformers); absent/None: the framework's own
    lora_input_cast: str | None = None  # the LoRA input cast control (off); absent/None: the framework's own
    checkpointing: str | None = None  # the checkpointing kind control (reentrant); absent/None: the job's
