"""The "Why they differ" section's memory block: the training peak's categories per profiled run
(harness/results/memory_attribution.py), a stacked bar each, the biggest difference between the frameworks in
one sentence, and what each controlled rerun's one change did to its framework's peak."""
from __future__ import annotations

from typing import Any

from harness.records import Result
from harness.records.profile import MEMORY_CATEGORIES, MEMORY_LABELS, MEMORY_OUTSIDE, MemoryProfile
from harness.report import why_parts
from harness.report.why_figure import stacked
from harness.report.why_rows import SHORT, Point, base, biggest, first, loss_change, twins

GiB = 2**30
# Coverage: the categories' sum (the allocator history's peak) against torch's own max_memory_allocated.
ADDS_UP = 0.05


def _gib(n: float | None) -> str:
    return "–" if n is None else f"{n / GiB:.2f} GiB"


def _memory_parts(prof: MemoryProfile) -> dict[str, float]:
    return {k: (prof.categories.get(k) or 0) / GiB for k in MEMORY_CATEGORIES + MEMORY_OUTSIDE}


def memory_block(runs: list[Result], point: Point = None) -> dict[str, Any] | None:
    chosen = first(runs, "memory", point)
    if not chosen:
        return None
    rows = []
    for label, (r, prof) in chosen.items():
        cats, merged = prof.categories, why_parts.not_separated(prof)
        whole = all(cats.get(k) is not None for k in MEMORY_OUTSIDE)
        total = sum(cats.get(k) or 0 for k in MEMORY_CATEGORIES + (MEMORY_OUTSIDE if whole else ()))
        rows.append(base(r, point=point, row={
            "label": label, "total": total, "scope": "NVML peak" if whole else "allocated peak", "merged": merged,
            "cells": [why_parts.cell(k, merged, SHORT) or _gib(cats.get(k))
                      for k in MEMORY_CATEGORIES + MEMORY_OUTSIDE],
            "coverage": None if prof.coverage is None else f"{prof.coverage * 100:.1f}%",
            "adds_up": prof.coverage is not None and abs(prof.coverage - 1) <= ADDS_UP,
            "peak": f"step {prof.peak_step}, {prof.peak_phase or 'phase not marked'}",
            "alloc_conf": prof.alloc_conf or "default", "notes": prof.notes,
            "top": [{"bytes": _gib(a.get("bytes")), "part": a.get("part"), "where": a.get("where")}
                    for a in prof.top_allocations[:5]],
            "parts": _memory_parts(prof)}))
    figure = stacked([(row["label"], row["parts"]) for row in rows], MEMORY_CATEGORIES + MEMORY_OUTSIDE,
                     MEMORY_LABELS, "GiB", "Memory at the training peak, by category")
    return {"columns": [SHORT[k] for k in MEMORY_CATEGORIES + MEMORY_OUTSIDE], "rows": rows,
            "figure": figure, "sentence": memory_sentence([row for row in rows if not row["control"]]),
            "controls": [memory_control_sentence(c, n) for c, n in twins(rows)]}


def memory_sentence(rows: list[dict[str, Any]]) -> str | None:
    """The biggest difference in one sentence, with its evidence (totals and the category that makes it), on
    the categories every row could separate."""
    if len(rows) < 2:
        return None
    rows, names = why_parts.comparable(rows, MEMORY_LABELS)
    if len({row["scope"] for row in rows}) > 1:
        rows = [_allocated(row) for row in rows]
    hi, lo = max(rows, key=lambda r: r["total"]), min(rows, key=lambda r: r["total"])
    if hi is lo:
        return None
    key = biggest(hi["parts"], lo["parts"])
    gap = hi["parts"][key] - lo["parts"][key]
    return (f"{hi['label']}'s {hi['scope']} is {(hi['total'] - lo['total']) / GiB:.1f} GiB higher than "
            f"{lo['label']}'s ({hi['total'] / GiB:.1f} vs {lo['total'] / GiB:.1f} GiB), {gap:.1f} GiB of it "
            f"{names[key]} ({hi['parts'][key]:.1f} vs {lo['parts'][key]:.1f} GiB).")


def _allocated(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "total": sum(row["parts"].get(k, 0.0) for k in MEMORY_CATEGORIES) * GiB, "scope": "allocated peak"}


def memory_control_sentence(ctl: dict[str, Any], twin: dict[str, Any]) -> str:
    """What a controlled rerun's one change did to its framework's peak, and in which category (of those
    both runs could separate)."""
    (ctl, twin), names = why_parts.comparable([ctl, twin], MEMORY_LABELS)
    if ctl["scope"] != twin["scope"]:
        ctl, twin = _allocated(ctl), _allocated(twin)
    key = max(ctl["parts"], key=lambda k: abs(ctl["parts"][k] - twin["parts"][k]))
    return (f"{ctl['label']}: the one change moves {twin['framework']}'s {ctl['scope']} from "
            f"{twin['total'] / GiB:.1f} to {ctl['total'] / GiB:.1f} GiB ({(ctl['total'] - twin['total']) / GiB:+.1f}), "
            f"{ctl['parts'][key] - twin['parts'][key]:+.1f} GiB of it {names[key]} "
            f"({twin['parts'][key]:.1f} to {ctl['parts'][key]:.1f} GiB); {loss_change(twin, ctl)}.")
