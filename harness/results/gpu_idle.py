"""What the GPU waited for in a profiled window, and what its busy time went to (pure: no torch).

From the same Chrome trace as harness/results/time_attribution.py, over the same window. The device view's
``gaps`` (no kernel running) are split by how long each idle interval lasted:

- short gaps (under ``LONG_GAP_US``, 1 ms) between kernels: the host launching the next kernel more slowly
  than the GPU ran the last one (launch-bound work: many small kernels, Python between them);
- long gaps, one continuous idle interval of at least 1 ms each, named by the innermost host op that spans
  most of it, on any thread of the process (the autograd engine runs backward on a thread of its own): for
  example ``aten::_cudnn_attention_forward`` while cuDNN builds an execution plan for a shape it has not
  seen, or "no op recorded" when the host was in Python between ops. A long gap that began right after a
  synchronising call (``cudaStreamSynchronize`` and its kin: ``.item()``, a device-to-host copy) is counted
  as such: the queue had drained, so whatever the host did next was exposed.

The GPU's busy time is split by kernel name into classes (``kernel_classes``: GEMM, attention, copies and
casts, elementwise, reductions and norms, fused Triton kernels, optimizer, memset and memcpy, other), each
instant counted once as in the device view, so the classes and the idle time add up to the window.
"""
from __future__ import annotations

import bisect
import re
from typing import Any

DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
LONG_GAP_US = 1000.0
# a synchronising call whose return lies this close after an idle interval began drained the queue before it
SYNC_SLACK_US = 200.0
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")
NO_OP = "no op recorded"
TOP_N = 10
# First match wins: Triton first (its fused kernels carry the names of the ops they fused, "attention"
# included), the optimizer's multi-tensor kernels before the plain elementwise ones, copies before both.
# "cast" is not "nocast": PyTorch's strided elementwise kernels are all named
# ``elementwise_kernel<..., gpu_kernel_impl_nocast<Functor>>`` (muls, adds, negs: session 7 put 0.053 s a
# step of trl's and LLaMA-Factory's among the copies that way); a copy among them names direct_copy_kernel.
KERNEL_CLASSES: tuple[tuple[str, re.Pattern[str]], ...] = tuple((name, re.compile(rx, re.I)) for name, rx in (
    ("fused (Triton)", r"^triton_|triton"),
    ("attention", r"cudnn|fmha|flash|attention|sdpa|mha_|_attn"),
    ("GEMM", r"nvjet|gemm|cutlass|xmma|cublas|^Kernel2$|splitK|matmul"),
    ("optimizer", r"multi_tensor_apply|adam|fused_.*optim"),
    ("copies and casts", r"copy|(?<!no)cast|CatArrayBatched|index_select|gather|scatter"),
    ("reductions and norms", r"reduce|norm|softmax|sum_|mean|_max|_min|welford|cross_entropy|nll_loss"),
    ("elementwise", r"elementwise|pointwise|unrolled|vectorized|fill|where|silu|gelu|mul|add"),
    ("memset and memcpy", r"^Memset|^Memcpy"),
))
OTHER = "other"
# the order the report stacks them in: the matmuls first, what a fused framework removes next
CLASS_ORDER = ("GEMM", "attention", "fused (Triton)", "copies and casts", "elementwise", "reductions and norms",
               "optimizer", "memset and memcpy", OTHER)
assert set(CLASS_ORDER) == {name for name, _ in KERNEL_CLASSES} | {OTHER}


def kernel_class(name: str) -> str:
    for cls, rx in KERNEL_CLASSES:
        if rx.search(name):
            return cls
    return OTHER


def _device_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((e for e in events if e.get("cat") in DEVICE_CATS), key=lambda e: float(e["ts"]))


def busy_by_class(events: list[dict[str, Any]], w0: float, w1: float) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """GPU busy time in [w0, w1] by kernel class (µs, each instant once), and the idle intervals left."""
    classes = {c: 0.0 for c in CLASS_ORDER}
    idle: list[tuple[float, float]] = []
    reached = w0
    for e in _device_events(events):
        a, b = max(w0, float(e["ts"])), min(w1, float(e["ts"]) + float(e.get("dur", 0)))
        if b <= w0 or a >= w1:
            continue
        if a > reached:
            idle.append((reached, a))
        a = max(a, reached)  # an instant two streams share counts once, for the kernel that started first
        if b > a:
            classes[kernel_class(str(e.get("name", "")))] += b - a
            reached = b
    if reached < w1:
        idle.append((reached, w1))
    return classes, idle


def _innermost(ops: list[tuple[float, float, str]], starts: list[float], a: float, b: float) -> str:
    """The shortest host op covering at least half of the idle interval [a, b] (ops sorted by start)."""
    best: tuple[float, str] | None = None
    need = (b - a) / 2
    for s, f, name in ops[:bisect.bisect_left(starts, b)]:
        if f - s >= need and min(f, b) - max(s, a) >= need and (best is None or f - s < best[0]):
            best = (f - s, name)
    return best[1] if best else NO_OP


def gpu_idle(events: list[dict[str, Any]], w0: float, w1: float, idle: list[tuple[float, float]]) -> dict[str, Any]:
    """The idle intervals of [w0, w1] split into short and long gaps, the long ones named (seconds)."""
    pids = {e.get("pid") for e in events if str(e.get("name", "")).startswith("harness::mark::")}
    long_gaps = [(a, b) for a, b in idle if b - a >= LONG_GAP_US]
    # only ops long enough to cover half of some long gap can name one: a short list, however big the trace
    shortest = min((b - a for a, b in long_gaps), default=0.0) / 2
    ops = sorted((float(e["ts"]), float(e["ts"]) + float(e.get("dur", 0)), str(e.get("name")))
                 for e in events if e.get("cat") == "cpu_op" and (not pids or e.get("pid") in pids)
                 and float(e.get("dur", 0)) >= shortest and float(e["ts"]) < w1
                 and float(e["ts"]) + float(e.get("dur", 0)) > w0)
    starts = [s for s, _, _ in ops]
    sync_ends = sorted(float(e["ts"]) + float(e.get("dur", 0)) for e in events
                       if e.get("cat") == "cuda_runtime" and str(e.get("name")) in SYNC_CALLS)
    named: dict[str, dict[str, Any]] = {}
    for a, b in long_gaps:
        row = named.setdefault(_innermost(ops, starts, a, b), {"count": 0, "idle_us": 0.0, "after_sync": 0})
        row["count"] += 1
        row["idle_us"] += b - a
        k = bisect.bisect_left(sync_ends, a - SYNC_SLACK_US / 10)
        row["after_sync"] += int(k < len(sync_ends) and sync_ends[k] <= a + SYNC_SLACK_US)
    short = [(a, b) for a, b in idle if b - a < LONG_GAP_US]
    rows = sorted(named.items(), key=lambda kv: -kv[1]["idle_us"])[:TOP_N]
    return {
        "total_s": round(sum(b - a for a, b in idle) / 1e6, 6),
        "short_gaps_s": round(sum(b - a for a, b in short) / 1e6, 6), "short_gaps": len(short),
        "long_gaps_s": round(sum(b - a for a, b in long_gaps) / 1e6, 6), "long_gaps": len(long_gaps),
        "long_gap_ops": [{"op": name[:200], "count": r["count"], "idle_s": round(r["idle_us"] / 1e6, 6),
                          "after_sync": r["after_sync"]} for name, r in rows],
    }


def explain_device_time(events: list[dict[str, Any]], w0: float, w1: float) -> dict[str, Any] | None:
    """``kernel_classes_s`` and ``idle`` of the window; None without device events (a CPU run)."""
    if not any(e.get("cat") in DEVICE_CATS for e in events):
        return None
    classes, idle = busy_by_class(events, w0, w1)
    return {"kernel_classes_s": {k: round(v / 1e6, 6) for k, v in classes.items()},
            "idle": gpu_idle(events, w0, w1, idle)}
