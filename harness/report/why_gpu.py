"""The "Why they differ" section's device view of a profiled step (harness/results/gpu_idle.py): the GPU's busy
time by kernel class and its idle time, per step, for a figure and a sentence; what the GPU waited for, in a
line per row; and the kernel class a controlled rerun's one change moved most."""
from __future__ import annotations

from typing import Any

from harness.records.profile import TimeProfile
from harness.results.gpu_idle import CLASS_ORDER

IDLE = "GPU idle"
GPU_KEYS = CLASS_ORDER + (IDLE,)


def gpu_per_step(prof: TimeProfile) -> dict[str, float] | None:
    """GPU time of one profiled step by kernel class, plus its idle time (device view only)."""
    if not prof.kernel_classes_s or prof.idle is None:
        return None
    n = max(1, len(prof.steps))
    return {**{k: (prof.kernel_classes_s.get(k) or 0.0) / n for k in CLASS_ORDER}, IDLE: prof.idle["total_s"] / n}


def idle_cell(prof: TimeProfile) -> str | None:
    """What the GPU waited for, in a line: seconds per profiled step, gaps counted over all of them."""
    idle = prof.idle
    if idle is None:
        return None
    n = max(1, len(prof.steps))
    ops = "; ".join(f"{g['op']} {g['idle_s'] / n:.3f} s ({g['count']}"
                    + (f", {g['after_sync']} right after a sync" if g["after_sync"] else "") + ")"
                    for g in idle["long_gap_ops"][:4])
    return (f"GPU idle {idle['total_s'] / n:.3f} s a step, over {n} profiled step(s): {idle['short_gaps_s'] / n:.3f} s "
            f"in {idle['short_gaps']:,} launch gaps under 1 ms; {idle['long_gaps_s'] / n:.3f} s in "
            f"{idle['long_gaps']} longer ones, by the host op spanning them: {ops or 'none'}")


def kernel_sentence(rows: list[dict[str, Any]]) -> str | None:
    """Between the slowest and the fastest profiled step: the kernel class (or the idle time) that differs most."""
    rows = [row for row in rows if row.get("gpu")]
    if len(rows) < 2:
        return None
    slow, fast = max(rows, key=lambda r: r["step_s"]), min(rows, key=lambda r: r["step_s"])
    if slow is fast:
        return None
    g, h = slow["gpu"], fast["gpu"]
    gaps = sorted(GPU_KEYS, key=lambda k: -(g[k] - h[k]))
    first, second = gaps[0], gaps[1]
    same = abs(g["GEMM"] - h["GEMM"]) < 0.1 * max(h["GEMM"], 1e-9)
    # the runner-up only where the slower step really spends more in it (never "-0.002 s more")
    also = (f" and {g[second] - h[second]:.3f} s more in {second} ({g[second]:.3f} vs {h[second]:.3f} s)"
            if g[second] > h[second] else "")
    return (f"On the GPU, {slow['label']}'s step spends {g[first] - h[first]:.3f} s more than {fast['label']}'s in "
            f"{first} ({g[first]:.3f} vs {h[first]:.3f} s){also}"
            + (f"; their GEMM time is within 10% ({g['GEMM']:.3f} vs {h['GEMM']:.3f} s)." if same else "."))


def gpu_change(twin: dict[str, Any], ctl: dict[str, Any]) -> str:
    """The kernel class (or the GPU's idle time) the change moved most, where both runs have the device view."""
    if not twin.get("gpu") or not ctl.get("gpu"):
        return ""
    g, h = ctl["gpu"], twin["gpu"]
    key = max(GPU_KEYS, key=lambda k: abs(g[k] - h[k]))
    return f"; on the GPU, {key} {h[key]:.3f} to {g[key]:.3f} s a step ({g[key] - h[key]:+.3f})"
