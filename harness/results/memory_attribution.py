"""Attribute the CUDA allocator's training peak to categories, from a snapshot (pure: no torch).

Input: ``torch.cuda.memory._snapshot()`` taken with the allocation history on (its ``segments``, the state
at snapshot time, and ``device_traces``, the alloc/free events before it; format: torch/cuda/memory.py
``_snapshot`` and torch/cuda/_memory_viz.py), the data pointers of the live model's and optimizer's
tensors, and *markers*: tiny allocations our callbacks make from functions named ``_harness_mark_<kind>``
(harness/worker/memory_profiler.py), so that the history itself says where each step began, where the
LM head and loss began (the final norm's output, or the LM head's input where the norm module is not called:
harness/worker/model_marks.py) and ended (that tensor's gradient), and where the
optimizer step began. Ordering by the trace, not by clocks, is exact.

The peak is found by replaying the history: the state at snapshot time, undone event by event back to the
oldest event kept, then replayed forward, tracking allocated bytes. Every allocation live at the peak gets
one category:

- ``frozen_weights``: holds a frozen parameter or a buffer (same allocation still live at snapshot time);
- ``trainable_state``: holds a trainable parameter, an optimizer state tensor, or a gradient (live at the
  optimizer step's marker: gradients exist only between backward and ``zero_grad``);
- ``logits_loss``: allocated in the peak step between the LM-head marker and its gradient's marker
  (logits, their fp32 upcast, the loss's temporaries, metrics over the logits, and the logits' gradient);
- ``activations``: allocated in the peak step's forward before the LM head (kept for backward), or in
  backward after the head's gradient (recomputed activations under checkpointing, activation gradients);
- ``other``: anything else (allocated before the peak step: workspaces, caches; optimizer temporaries).

A peak step without an LM-head marker (the model's forward computed its head and loss without calling a
module we hook: unsloth's fused cross-entropy) cannot tell logits and loss from activations: they are
counted in ``activations``, ``logits_loss`` is None (not separable, never a measured 0) and
``not_separated`` says where it went.

The categories add up to the reconstructed peak exactly (a None one holds nothing of its own); ``coverage``
compares that with the allocator's own ``max_memory_allocated`` (below 1 when the peak fell outside the kept history).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable

MARK_PREFIX = "_harness_mark_"
# marker kind -> the phase of the step that follows it
PHASE_AFTER = {"step_begin": "forward", "forward": "forward", "head": "loss", "head_grad": "backward", "pre_optimizer": "optimizer",
               "step_end": "between steps"}
LIVE_STATES = ("active_allocated", "active_awaiting_free", "active_pending_free")
TOP_N = 10


@dataclass
class Pointers:
    """Data pointers of live tensors, by what they are (read by the worker from the live objects)."""
    frozen: list[int] = field(default_factory=list)  # frozen parameters and buffers (at snapshot time)
    trainable: list[int] = field(default_factory=list)  # trainable parameters (at snapshot time)
    optimizer: list[int] = field(default_factory=list)  # optimizer state tensors (at snapshot time)
    gradients: list[int] = field(default_factory=list)  # .grad of trainable parameters (at the optimizer step)


@dataclass
class _Alloc:
    addr: int
    size: int
    index: int | None  # the trace event that allocated it; None: before the kept history
    frames: list[dict[str, Any]]


def _marker(event: dict[str, Any]) -> str | None:
    for frame in event.get("frames") or ():
        name = str(frame.get("name") or "")
        if name.startswith(MARK_PREFIX):
            return name[len(MARK_PREFIX):]
    return None


def _final_state(snapshot: dict[str, Any], device: int) -> dict[int, _Alloc]:
    live: dict[int, _Alloc] = {}
    for seg in snapshot.get("segments") or ():
        if seg.get("device", device) != device:
            continue
        addr = int(seg.get("address") or 0)
        for block in seg.get("blocks") or ():
            start = int(block.get("address", addr))
            if block.get("state") in LIVE_STATES:
                live[start] = _Alloc(start, int(block["size"]), None, list(block.get("frames") or ()))
            addr = start + int(block["size"])
    return live


def _events(snapshot: dict[str, Any], device: int) -> list[dict[str, Any]]:
    traces = snapshot.get("device_traces") or []
    return [e for e in (traces[device] if device < len(traces) else []) if e.get("action") in ("alloc", "free_completed")]


class _Replay:
    """The allocator's state at any event of the kept history."""

    def __init__(self, snapshot: dict[str, Any], device: int) -> None:
        self.events = _events(snapshot, device)
        self.final = _final_state(snapshot, device)
        self.inconsistent = 0
        live = dict(self.final)
        for e in reversed(self.events):  # undo, newest first: the state before the oldest kept event
            addr = int(e["addr"])
            if e["action"] == "alloc":
                if live.pop(addr, None) is None:
                    self.inconsistent += 1
            else:
                live[addr] = _Alloc(addr, int(e["size"]), None, list(e.get("frames") or ()))
        self.start = live

    def walk(self, stops: Iterable[int]) -> tuple[int, int, dict[int, dict[int, _Alloc]]]:
        """(peak allocated bytes, the event index after which it is reached (-1: before the first),
        the live allocations after each event of ``stops``)."""
        wanted, states = set(stops), {}
        live = dict(self.start)
        allocated = sum(a.size for a in live.values())
        peak, at = allocated, -1
        if -1 in wanted:
            states[-1] = dict(live)
        for i, e in enumerate(self.events):
            addr, size = int(e["addr"]), int(e["size"])
            if e["action"] == "alloc":
                live[addr] = _Alloc(addr, size, i, list(e.get("frames") or ()))
                allocated += size
            elif live.pop(addr, None) is not None:
                allocated -= size
            if allocated > peak:
                peak, at = allocated, i
            if i in wanted:
                states[i] = dict(live)
        return peak, at, states


def _holding(live: dict[int, _Alloc], pointers: Iterable[int]) -> set[tuple[int, int | None]]:
    """The allocations (addr, index) of ``live`` that contain any of ``pointers``."""
    starts = sorted(live)
    found: set[tuple[int, int | None]] = set()
    for ptr in pointers:
        k = bisect.bisect_right(starts, ptr) - 1
        if k >= 0:
            a = live[starts[k]]
            if a.addr <= ptr < a.addr + a.size:
                found.add((a.addr, a.index))
    return found


def _where(frames: list[dict[str, Any]]) -> str:
    """The innermost frame outside torch's own modules: who asked for the memory."""
    for frame in frames:
        filename = str(frame.get("filename") or "")
        if filename and "/torch/" not in filename and not filename.startswith("??"):
            return f"{filename.rsplit('/', 1)[-1]}:{frame.get('line')} {frame.get('name')}"
    return str(frames[0].get("name")) if frames else "not recorded"


def attribute_peak(snapshot: dict[str, Any], pointers: Pointers, *, device: int = 0,
                   measured_peak: int | None = None) -> dict[str, Any]:
    """The peak's categories (bytes), finer parts, the peak's phase and its largest allocations.

    Raises ValueError when the snapshot holds no history (recorded without ``_record_memory_history``)."""
    replay = _Replay(snapshot, device)
    if not replay.events:
        raise ValueError("the snapshot holds no allocation history (was _record_memory_history on?)")
    markers = [(i, _marker(e)) for i, e in enumerate(replay.events) if e["action"] == "alloc"]
    markers = [(i, kind) for i, kind in markers if kind is not None]
    peak, at, _ = replay.walk(())
    before = [(i, k) for i, k in markers if i <= at]
    step_begin = max((i for i, k in before if k == "step_begin"), default=None)
    after_in_step = [(i, k) for i, k in markers if i > at and (step_begin is None or i > step_begin)]
    next_begin = min((i for i, k in after_in_step if k == "step_begin"), default=len(replay.events))
    pre_opt = min((i for i, k in after_in_step if k == "pre_optimizer" and i < next_begin), default=None)
    if pre_opt is None:  # the peak is in the optimizer step itself: the gradients are those before it
        pre_opt = max((i for i, k in before if k == "pre_optimizer" and (step_begin is None or i > step_begin)),
                      default=None)
    last = len(replay.events) - 1
    stops = [at, last] + ([pre_opt] if pre_opt is not None else [])
    _, _, states = replay.walk(stops)
    at_peak = states[at]
    # parameters and optimizer states: the allocations holding them at snapshot time (each allocation
    # named by its allocating event, so a block freed and reused at the same address is another one)
    persistent = {name: _holding(states[last], getattr(pointers, name)) for name in ("frozen", "trainable", "optimizer")}
    grads = _holding(states[pre_opt], pointers.gradients) if pre_opt is not None else set()

    detail = {k: 0 for k in ("frozen_weights", "trainable_weights", "gradients", "optimizer_state",
                             "activations_forward", "activations_backward", "logits_loss", "before_step",
                             "optimizer_temporaries", "after_step", "markers")}
    phase_of = {}  # marker index -> the phase that follows it
    for i, kind in markers:
        phase_of[i] = kind
    marker_indices = [i for i, _ in markers]
    rows = []
    for a in at_peak.values():
        key = (a.addr, a.index)
        if key in persistent["trainable"]:
            part = "trainable_weights"
        elif key in persistent["optimizer"]:
            part = "optimizer_state"
        elif key in grads:
            part = "gradients"
        elif key in persistent["frozen"]:
            part = "frozen_weights"
        elif a.index is None or step_begin is None or a.index < step_begin:
            part = "before_step"
        elif _marker({"frames": a.frames}) is not None:
            part = "markers"
        else:
            k = bisect.bisect_right(marker_indices, a.index) - 1
            last = phase_of[marker_indices[k]] if k >= 0 else "step_begin"
            part = {"step_begin": "activations_forward", "forward": "activations_forward", "head": "logits_loss", "head_grad": "activations_backward",
                    "pre_optimizer": "optimizer_temporaries", "step_end": "after_step"}.get(last, "after_step")
        detail[part] += a.size
        rows.append((a.size, part, a))
    categories = {
        "frozen_weights": detail["frozen_weights"],
        "trainable_state": detail["trainable_weights"] + detail["gradients"] + detail["optimizer_state"],
        "activations": detail["activations_forward"] + detail["activations_backward"],
        "logits_loss": detail["logits_loss"],
        "other": detail["before_step"] + detail["optimizer_temporaries"] + detail["after_step"] + detail["markers"],
    }
    last_marker = max((i for i, _ in before), default=None)
    notes = []
    not_separated = None
    if step_begin is None:
        notes.append("the kept history does not reach back to the peak step's start (raise profile.max_entries): "
                     "its allocations count as 'other'")
    elif not any(k == "head" for i, k in markers if step_begin < i < next_begin):
        # Nothing marks where the head began (unsloth's fused loss calls no module): whatever the logits and
        # loss held is in activations, and logits_loss is unknown, not 0.
        categories["logits_loss"] = detail["logits_loss"] = None
        not_separated = {"logits_loss": "activations"}
        notes.append("no LM-head marker in the peak step: logits and loss could not be told from activations "
                     "(counted in them; logits_loss not separable)")
    if replay.inconsistent:
        notes.append(f"{replay.inconsistent} history event(s) did not match the snapshot's blocks")
    rows.sort(key=lambda r: -r[0])
    return {
        "categories": categories, "detail": detail, "peak_allocated_bytes": peak,
        "measured_peak_allocated_bytes": measured_peak,
        "coverage": round(peak / measured_peak, 4) if measured_peak else None,
        "peak_phase": PHASE_AFTER.get(phase_of[last_marker]) if last_marker is not None else None,
        "top_allocations": [{"bytes": size, "part": part, "where": _where(a.frames)} for size, part, a in rows[:TOP_N]],
        "not_separated": not_separated, "notes": notes,
    }


def with_nvml(memory_profile: dict[str, Any], *, nvml_peak: int | None, reserved: int | None) -> dict[str, Any]:
    """The parent's part: reserved-but-unallocated (fragmentation, from the worker's max reserved) and
    non-PyTorch memory (NVML's train-phase peak above idle minus reserved: CUDA context, cuBLAS/NCCL
    workspaces, other libraries' allocations). Either is None where it was not measured (no NVML)."""
    out = dict(memory_profile)
    categories = dict(out.get("categories") or {})
    peak = out.get("peak_allocated_bytes")
    categories["fragmentation"] = reserved - peak if reserved is not None and peak is not None else None
    categories["non_pytorch"] = nvml_peak - reserved if nvml_peak is not None and reserved is not None else None
    out["categories"], out["nvml_peak_bytes"], out["reserved_bytes"] = categories, nvml_peak, reserved
    return out
