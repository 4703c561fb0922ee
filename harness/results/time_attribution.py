"""Attribute profiled steps' wall time to the parts of a step, from a Chrome trace (pure: no torch).

Input: the ``traceEvents`` of ``torch.profiler``'s Chrome trace, the very file kept beside the result,
holding our zero-length marks (``harness::mark::KIND`` record_function ranges from the callbacks and the
model hooks of harness/worker/model_marks.py), torch's own autograd ops
(``autograd::engine::evaluate_function: ...``) and, on a GPU, the kernels with their launches' correlation
ids. Between two ``step_end`` marks lies one step, as our StepMeter times it (previous step end to this
step end), split at its own marks, micro-batch by micro-batch:

    data      previous step end (or micro-batch's backward end) -> forward mark   fetch, collate, copy in
    forward   forward mark -> head mark                                          decoder layers
    loss      head mark -> first autograd op                                     LM head, upcast, loss, metrics
    backward  first -> last autograd op of the micro-batch                       (recompute included)
    optimizer last backward end -> step end                                      clip, step, zero_grad, sync

The parts add up to the window exactly, by construction. A micro-batch without a head mark (its model
computed the head and loss inside the forward, calling no module we hook: unsloth's fused loss) has its
head and loss in ``forward``; when no profiled micro-batch has one, ``loss`` is None (not separable, never
a measured 0) and ``not_separated`` says so. Two views of it: ``host`` (a CPU run): each part
is the time some recorded op was running, and ``gaps`` is the rest (Python and framework overhead between
ops); ``device`` (a GPU run): each part is the time a kernel it launched was running on the GPU, each
instant counted once, and ``gaps`` is the time the GPU had nothing to run (launch and host-side gaps).
"""
from __future__ import annotations

import bisect
from typing import Any, Iterable

from harness.results.gpu_idle import explain_device_time

MARK = "harness::mark::"
AUTOGRAD = "autograd::engine::evaluate_function"
PARTS = ("data", "forward", "loss", "backward", "optimizer")
HOST_CATS = ("cpu_op", "user_annotation", "cuda_runtime", "cuda_driver")
DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
TOP_N = 10


def _x(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("ph") == "X" and "ts" in e]


def marks(events: list[dict[str, Any]], kind: str) -> list[float]:
    name = MARK + kind
    return sorted(float(e["ts"]) for e in events if e.get("name") == name)


def _union(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _overlap(union: list[tuple[float, float]], a: float, b: float) -> float:
    return sum(max(0.0, min(b, y) - max(a, x)) for x, y in union if y > a and x < b)


def step_intervals(events: list[dict[str, Any]]) -> tuple[list[tuple[float, float, str]], list[str], tuple[int, int]]:
    """The host timeline of the profiled steps split into (start, end, part), notes, and (micro-batches,
    those of them without an LM-head mark: their head and loss lie in their forward's span)."""
    ends = marks(events, "step_end")
    forwards, heads = marks(events, "forward"), marks(events, "head")
    autograd = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in events
                      if str(e.get("name", "")).startswith(AUTOGRAD))
    out: list[tuple[float, float, str]] = []
    notes: list[str] = []
    micro = unmarked = 0
    for e0, e1 in zip(ends, ends[1:]):
        fwd = [f for f in forwards if e0 < f < e1]
        if not fwd:
            out.append((e0, e1, "optimizer"))
            notes.append("a profiled step without a forward mark: all of it counted as optimizer")
            continue
        t = e0
        for j, f in enumerate(fwd):
            nxt = fwd[j + 1] if j + 1 < len(fwd) else e1
            head = next((h for h in heads if f < h < nxt), None)
            micro, unmarked = micro + 1, unmarked + (head is None)
            back = [(a, b) for a, b in autograd if (head or f) < a < nxt]
            b0 = back[0][0] if back else nxt
            b1 = max(b for _, b in back) if back else nxt
            b1 = min(b1, nxt)
            head = head if head is not None else b0
            for start, end, part in ((t, f, "data"), (f, head, "forward"), (head, b0, "loss"), (b0, b1, "backward")):
                out.append((start, max(start, end), part))
            t = max(t, b1)
            if not back:
                notes.append("a micro-batch without autograd ops in the trace: its backward is not separated")
        out.append((t, e1, "optimizer"))
    if len(ends) < 2:
        notes.append("fewer than two step-end marks: no whole step was profiled")
    return out, notes, (micro, unmarked)


def _host_view(events: list[dict[str, Any]], spans: list[tuple[float, float, str]]) -> dict[str, float]:
    union = _union([(float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0))) for e in events
                    if e.get("cat") in HOST_CATS and not str(e.get("name", "")).startswith(MARK)])
    parts = {p: 0.0 for p in PARTS + ("gaps",)}
    for a, b, part in spans:
        covered = _overlap(union, a, b)
        parts[part] += covered
        parts["gaps"] += (b - a) - covered
    return parts


def _device_view(events: list[dict[str, Any]], spans: list[tuple[float, float, str]]) -> dict[str, float] | None:
    kernels = [e for e in events if e.get("cat") in DEVICE_CATS]
    if not kernels or not spans:
        return None
    launches = {(e.get("args") or {}).get("correlation"): float(e["ts"]) for e in events
                if e.get("cat") in ("cuda_runtime", "cuda_driver") and (e.get("args") or {}).get("correlation") is not None}
    starts = [a for a, _, _ in spans]
    w0, w1 = spans[0][0], spans[-1][1]

    def part_of(t: float | None) -> str:
        if t is None:
            return "gaps"
        k = bisect.bisect_right(starts, t) - 1
        return spans[k][2] if k >= 0 else spans[0][2]

    parts = {p: 0.0 for p in PARTS + ("gaps",)}
    reached = w0
    for e in sorted(kernels, key=lambda e: float(e["ts"])):
        a, b = max(w0, float(e["ts"])), min(w1, float(e["ts"]) + float(e.get("dur", 0)))
        a = max(a, reached)  # an instant two streams share counts once, for the kernel that started first
        if b <= a:
            continue
        parts[part_of(launches.get((e.get("args") or {}).get("correlation")))] += b - a
        reached = b
    busy = sum(v for k, v in parts.items() if k != "gaps")
    parts["gaps"] = parts["gaps"] + (w1 - w0) - busy
    return parts


def _top_kernels(events: list[dict[str, Any]], w0: float, w1: float) -> list[dict[str, Any]]:
    by: dict[str, list[float]] = {}
    for e in events:
        if e.get("cat") == "kernel" and w0 <= float(e["ts"]) <= w1:
            by.setdefault(str(e.get("name")), []).append(float(e.get("dur", 0)))
    rows = sorted(by.items(), key=lambda kv: -sum(kv[1]))[:TOP_N]
    return [{"name": name[:200], "count": len(d), "total_s": sum(d) / 1e6} for name, d in rows]


def _top_ops(events: list[dict[str, Any]], w0: float, w1: float) -> list[dict[str, Any]]:
    """CPU ops by self time (their duration less their children's, per thread)."""
    by_thread: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for e in events:
        if e.get("cat") == "cpu_op" and w0 <= float(e["ts"]) <= w1:
            by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    self_time: dict[str, list[float]] = {}
    for ops in by_thread.values():
        ops.sort(key=lambda e: (float(e["ts"]), -float(e.get("dur", 0))))
        stack: list[list[Any]] = []  # [end, name, self]
        for e in ops + [None]:  # type: ignore[list-item]
            ts = float(e["ts"]) if e is not None else float("inf")
            while stack and stack[-1][0] <= ts:
                end, name, own = stack.pop()
                self_time.setdefault(name, []).append(own)
            if e is None:
                break
            dur = float(e.get("dur", 0))
            if stack:
                stack[-1][2] -= dur
            stack.append([ts + dur, str(e.get("name")), dur])
    rows = sorted(self_time.items(), key=lambda kv: -sum(kv[1]))[:TOP_N]
    return [{"name": name[:200], "count": len(d), "self_s": max(0.0, sum(d)) / 1e6} for name, d in rows]


# The op SDPA dispatched to (one per backend: ..._cudnn_attention, ..._efficient_attention, ..._flash_attention,
# ..._flash_attention_for_cpu, ..._attention_math, and their _backward), under aten::scaled_dot_product_attention.
SDPA_OP = "aten::_scaled_dot_product_"
# A call this many times its op's median is counted slow (a new shape's one-off host work: 45-83 ms against
# a median of 0.1-0.2 ms for cuDNN attention on the H200).
SLOW_CALL = 10


def _sdpa_ops(events: list[dict[str, Any]], w0: float, w1: float) -> list[dict[str, Any]]:
    """The SDPA backend ops that ran in the window, each with its calls' count, total, median and longest
    (wall, on the host) and the calls over SLOW_CALL x the median: which kernel attention really took, and
    the calls cuDNN spent building its graph for a new sequence length on the host (train.sdpa_backend;
    docs/explain.md)."""
    by: dict[str, list[float]] = {}
    for e in events:
        name = str(e.get("name", ""))
        if e.get("cat") == "cpu_op" and name.startswith(SDPA_OP) and w0 <= float(e["ts"]) <= w1:
            by.setdefault(name, []).append(float(e.get("dur", 0)))
    out = []
    for name, d in sorted(by.items(), key=lambda kv: -sum(kv[1])):
        median = sorted(d)[len(d) // 2]
        slow = [x for x in d if x > SLOW_CALL * median]
        out.append({"name": name, "count": len(d), "total_s": sum(d) / 1e6, "median_s": median / 1e6,
                    "max_s": max(d) / 1e6, "slow_calls": len(slow), "slow_s": sum(slow) / 1e6})
    return out


def attribute_steps(trace: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """The profiled window (seconds), its parts by view, the host's split, top kernels and ops, the SDPA
    backend ops, notes."""
    events = _x(trace.get("traceEvents", []) if isinstance(trace, dict) else trace)
    spans, notes, (micro, unmarked) = step_intervals(events)
    if not spans:
        raise ValueError("the trace holds no whole profiled step (no two harness::mark::step_end marks)")
    w0, w1 = spans[0][0], spans[-1][1]
    host = _host_view(events, spans)
    device = _device_view(events, spans)
    # No micro-batch marked its head (unsloth's fused loss calls no module we hook): the head and loss ran
    # inside the forward's span, and "loss" is unknown, never a measured 0.
    not_separated = {"loss": "forward"} if micro and unmarked == micro else None
    if not_separated:
        notes.append(f"no LM-head mark in any of the {micro} profiled micro-batch(es): the LM head and loss are "
                     "counted in forward (loss not separable)")
    elif unmarked:
        notes.append(f"{unmarked} of {micro} profiled micro-batch(es) had no LM-head mark: their head and loss "
                     "are counted in forward")

    def to_s(parts: dict[str, float]) -> dict[str, float | None]:
        return {k: None if not_separated and k in not_separated else round(v / 1e6, 6) for k, v in parts.items()}

    explained = explain_device_time(events, w0, w1) or {"kernel_classes_s": {}, "idle": None}
    return {"view": "device" if device is not None else "host", "window_s": (w1 - w0) / 1e6,
            "parts_s": to_s(device if device is not None else host), "host_parts_s": to_s(host),
            "steps": len(marks(events, "step_end")) - 1, "not_separated": not_separated,
            "top_kernels": _top_kernels(events, w0, w1), "top_ops": _top_ops(events, w0, w1),
            "sdpa_ops": _sdpa_ops(events, w0, w1), "notes": notes, **explained}


def first_step_only(trace: dict[str, Any]) -> dict[str, Any]:
    """The trace cut to its first profiled step (what is kept when the whole one is over the size limit)."""
    events = trace.get("traceEvents", [])
    ends = marks(_x(events), "step_end")
    if len(ends) < 2:
        return trace
    t0, t1 = ends[0], ends[1]
    kept = [e for e in events if "ts" not in e or t0 <= float(e["ts"]) <= t1]
    return {**trace, "traceEvents": kept}
