"""The "Why they differ" section's time block: a profiled step's parts per run (harness/results/time_attribution.py),
a stacked bar each (and, in the device view, one by kernel class: why_gpu.py), the biggest difference between
the frameworks in one sentence, and what each controlled rerun's one change did to its framework's step."""
from __future__ import annotations

from typing import Any

from harness.records import Result
from harness.records.profile import TIME_LABELS, TIME_PARTS, TimeProfile
from harness.report import why_parts
from harness.report.tables import fmt
from harness.report.why_figure import stacked
from harness.report.why_gpu import GPU_KEYS, gpu_change, gpu_per_step, idle_cell, kernel_sentence
from harness.report.why_rows import SHORT, Point, base, biggest, first, loss_change, twins
from harness.results.time_attribution import SLOW_CALL


def _per_step(prof: TimeProfile) -> dict[str, float]:
    n = max(1, len(prof.steps))
    return {k: (prof.parts_s.get(k) or 0.0) / n for k in TIME_PARTS}


def sdpa_cell(prof: TimeProfile) -> str | None:
    """The SDPA backend ops of the profiled steps in one line (which kernel attention took, and its calls far
    over their median: a new shape's host-side work), None where the profile did not read them."""
    if not prof.sdpa_ops:
        return None
    return "; ".join(f"{o['name'].removeprefix('aten::')} x{o['count']} ({o['total_s']:.3g} s, median "
                     f"{o['median_s'] * 1e3:.3g} ms, {o['slow_calls']} over {SLOW_CALL}x it: {o['slow_s']:.3g} s)"
                     for o in prof.sdpa_ops)


def time_block(runs: list[Result], point: Point = None) -> dict[str, Any] | None:
    chosen = first(runs, "time", point)
    if not chosen:
        return None
    rows = []
    for label, (r, prof) in chosen.items():
        parts, merged = _per_step(prof), why_parts.not_separated(prof)
        rows.append(base(r, point=point, row={
            "gpu": gpu_per_step(prof), "idle": idle_cell(prof),
            "label": label, "view": prof.view, "steps": prof.steps, "parts": parts, "merged": merged,
            "step_s": sum(parts.values()),
            "cells": [why_parts.cell(k, merged, SHORT) or fmt(parts[k], "seconds") for k in TIME_PARTS],
            "step_meter": fmt(prof.step_meter_s / max(1, len(prof.steps)), "seconds")
            if prof.step_meter_s is not None else "–",
            "trace": prof.trace_file, "trace_note": prof.trace_note, "notes": prof.notes,
            "top": (prof.top_kernels or prof.top_ops)[:5], "top_kind": "kernels" if prof.top_kernels else "CPU ops",
            "sdpa": sdpa_cell(prof)}))
    views = sorted({row["view"] for row in rows})
    figure = stacked([(row["label"], row["parts"]) for row in rows], TIME_PARTS, TIME_LABELS, "s",
                     f"One profiled step, by part ({' / '.join(views)} view)")
    gpu_rows = [(row["label"], row["gpu"]) for row in rows if row["gpu"]]
    kernels = stacked(gpu_rows, GPU_KEYS, {k: k for k in GPU_KEYS}, "s",
                      "One profiled step on the GPU, by kernel class, and its idle time") if gpu_rows else None
    natives = [row for row in rows if not row["control"]]
    return {"columns": [SHORT[k] for k in TIME_PARTS], "rows": rows, "figure": figure, "kernels_figure": kernels,
            "kernel_sentence": kernel_sentence(natives),
            "sentence": time_sentence(natives),
            "controls": [time_control_sentence(c, n) for c, n in twins(rows)]}


def time_control_sentence(ctl: dict[str, Any], twin: dict[str, Any]) -> str:
    """What a controlled rerun's one change did to its framework's profiled step, in which part (of those both
    runs could separate) and, in the device view, in which kernel class."""
    (ctl, twin), names = why_parts.comparable([ctl, twin], TIME_LABELS)
    key = max(ctl["parts"], key=lambda k: abs(ctl["parts"][k] - twin["parts"][k]))
    return (f"{ctl['label']}: the one change moves {twin['framework']}'s profiled step from {twin['step_s']:.3g} to "
            f"{ctl['step_s']:.3g} s ({ctl['step_s'] - twin['step_s']:+.3g} s), "
            f"{ctl['parts'][key] - twin['parts'][key]:+.3g} s of it in {names[key]} "
            f"({twin['parts'][key]:.3g} to {ctl['parts'][key]:.3g} s){gpu_change(twin, ctl)}; "
            f"{loss_change(twin, ctl)}.")


def time_sentence(rows: list[dict[str, Any]]) -> str | None:
    """The biggest difference between the frameworks' profiled steps, on the parts every row could separate."""
    if len(rows) < 2:
        return None
    rows, names = why_parts.comparable(rows, TIME_LABELS)
    slow, fast = max(rows, key=lambda r: r["step_s"]), min(rows, key=lambda r: r["step_s"])
    if slow is fast:
        return None
    key = biggest(slow["parts"], fast["parts"])
    return (f"{slow['label']}'s profiled step takes {slow['step_s'] - fast['step_s']:.3g} s longer than "
            f"{fast['label']}'s ({slow['step_s']:.3g} vs {fast['step_s']:.3g} s), "
            f"{slow['parts'][key] - fast['parts'][key]:.3g} s of it in {names[key]} "
            f"({slow['parts'][key]:.3g} vs {fast['parts'][key]:.3g} s).")
