"""The report's "Why they differ" section: profiled runs' memory and step-time attribution per sweep point.

A profiled run (``profile=memory|time``) is its own sweep point, so it never enters a comparison table, a
headline, a baseline or a trend (its figures carry the profiler's cost). Here it is joined back to the point
it explains (``harness.job.unprofiled_point_hash``): one stacked bar per framework of the memory peak's
categories (harness/results/memory_attribution.py) and of a profiled step's parts
(harness/results/time_attribution.py), and the biggest difference between the frameworks named in one
sentence with its numbers. A controlled rerun (one change: ``profile.alloc_conf``, ``profile.loss`` for
the same loss in every framework, ``profile.lora_input_cast`` for peft's LoRA input cast, or
``train.sdpa_backend`` for one attention kernel) is its own row, named by its change, left out of that
sentence and given one of its own: what the change did against the same framework's run without it. Each row
shows the loss path its training steps took and peft's LoRA input casts, as the run read them back
(harness/worker/loss_path.py, harness/worker/lora_cast.py). Only plain data and figures come out of here; the
template lays them out.
"""
from __future__ import annotations

from typing import Any

from harness.config.job import unprofiled_point_hash
from harness.records import Result
from harness.records.profile import (MEMORY_CATEGORIES, MEMORY_LABELS, MEMORY_OUTSIDE, TIME_LABELS, TIME_PARTS,
                                     MemoryProfile, TimeProfile)
from harness.report import why_parts
from harness.results.gpu_idle import CLASS_ORDER
from harness.report.tables import by_label_and_repeat, fmt, point_title
from harness.report.why_lora_cast import cast_change, cast_fields

GiB = 2**30
# Coverage: the categories' sum (the allocator history's peak) against torch's own max_memory_allocated.
ADDS_UP = 0.05
# the tables' column heads (the figures' legends carry the long labels)
SHORT = {"frozen_weights": "frozen weights", "trainable_state": "trainable + grads + optimizer",
         "activations": "activations", "logits_loss": "logits + loss", "other": "other",
         "fragmentation": "fragmentation", "non_pytorch": "non-PyTorch",
         "data": "data", "forward": "forward", "loss": "head + loss", "backward": "backward", "optimizer": "optimizer",
         "gaps": "gaps"}
CATEGORY_COLORS = ("#4c72b0", "#55a868", "#c44e52", "#dd8452", "#8172b3", "#bbbbbb", "#555555", "#937860", "#da8bc3",
                   "#dddddd")


def _gib(n: float | None) -> str:
    return "–" if n is None else f"{n / GiB:.2f} GiB"


def _first(runs: list[Result], kind: str) -> dict[str, tuple[Result, Any]]:
    """label -> (run, its ok profile of ``kind``): the first repeat with one."""
    out: dict[str, tuple[Result, Any]] = {}
    for r in sorted(runs, key=by_label_and_repeat):
        prof = getattr(r.profile, kind, None) if r.ok and r.profile is not None else None
        if prof is not None and prof.status == "ok" and row_label(r) not in out:
            out[row_label(r)] = (r, prof)
    return out


def changes(r: Result) -> list[str]:
    """A controlled rerun's one change, where it has one: the allocator setting (``profile.alloc_conf``),
    the same loss in every framework (``profile.loss``, as ``loss=transformers``), peft's LoRA input cast
    (``profile.lora_input_cast``, as ``lora_input_cast=off``), the one SDPA kernel allowed
    (``train.sdpa_backend``, as ``sdpa=efficient``)."""
    prof = r.job.profile
    if prof is None:
        return []
    backend = (r.job.train or {}).get("sdpa_backend") or "auto"
    return ([prof.alloc_conf] if prof.alloc_conf else []) + ([f"loss={prof.loss}"] if prof.loss else []) \
        + ([f"lora_input_cast={prof.lora_input_cast}"] if prof.lora_input_cast else []) \
        + ([f"sdpa={backend}"] if backend != "auto" else [])


def sdpa_cell(prof: TimeProfile) -> str | None:
    """The SDPA backend ops of the profiled steps in one line (which kernel attention took, and its calls far
    over their median: a new shape's host-side work), None where the profile did not read them."""
    if not prof.sdpa_ops:
        return None
    return "; ".join(f"{o['name'].removeprefix('aten::')} x{o['count']} ({o['total_s']:.3g} s, median "
                     f"{o['median_s'] * 1e3:.3g} ms, {o['slow_calls']} over 10x it: {o['slow_s']:.3g} s)"
                     for o in prof.sdpa_ops)


def row_label(r: Result) -> str:
    """framework-version, and the controlled rerun's one change where it has one."""
    named = changes(r)
    return f"{r.label} ({', '.join(named)})" if named else r.label


def loss_cell(r: Result) -> str:
    """The loss path the run's training steps took, read back (harness/worker/loss_path.py), in a few words."""
    lp = r.profile.loss_path if r.profile is not None else None
    if lp is None or not lp.micro_steps:
        return "not read back"
    if lp.common_loss_calls:
        return f"full {lp.logits_dtype} logits -> ForCausalLMLoss ({lp.loss_dtype}), the harness's"
    if lp.head_calls:
        return f"full {lp.logits_dtype} logits -> {(lp.model_loss_function or '?').rsplit('.', 1)[-1]}"
    return "fused: no full logits"


def _base(r: Result, row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "framework": r.label, "control": bool(changes(r)), "loss": loss_cell(r),
            "loss_path": (r.profile.loss_path.path if r.profile is not None and r.profile.loss_path else None),
            **cast_fields(r)}


def _twins(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(controlled rerun, the same framework's run without the change) pairs."""
    native = {row["framework"]: row for row in rows if not row["control"]}
    return [(row, native[row["framework"]]) for row in rows if row["control"] and row["framework"] in native]


def _stacked(rows: list[tuple[str, dict[str, float]]], keys: tuple[str, ...], labels: dict[str, str],
             unit: str, title: str) -> str:
    from harness.report import figures

    plt = figures.plt
    fig, ax = plt.subplots(figsize=(11, 0.7 + 0.55 * len(rows)))
    names = [name for name, _ in rows]
    left = [0.0] * len(rows)
    for k, key in enumerate(keys):
        widths = [float(parts.get(key) or 0.0) for _, parts in rows]
        if not any(widths):
            continue
        ax.barh(names, widths, left=left, color=CATEGORY_COLORS[k % len(CATEGORY_COLORS)], label=labels[key],
                height=0.6, edgecolor="white", linewidth=0.5)
        left = [a + b for a, b in zip(left, widths)]
    for y, total in enumerate(left):
        ax.text(total, y, f" {total:.2f} {unit}", va="center", fontsize=figures.FONT - 1)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title, loc="left")
    ax.set_xlim(0, max(left or [1]) * 1.15 or 1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35 if len(rows) < 3 else -0.2), ncol=4, frameon=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return figures.to_data_uri(fig)


def _memory_parts(prof: MemoryProfile) -> dict[str, float]:
    return {k: (prof.categories.get(k) or 0) / GiB for k in MEMORY_CATEGORIES + MEMORY_OUTSIDE}


def memory_block(runs: list[Result]) -> dict[str, Any] | None:
    chosen = _first(runs, "memory")
    if not chosen:
        return None
    rows = []
    for label, (r, prof) in chosen.items():
        cats, merged = prof.categories, why_parts.not_separated(prof)
        whole = all(cats.get(k) is not None for k in MEMORY_OUTSIDE)
        total = sum(cats.get(k) or 0 for k in MEMORY_CATEGORIES + (MEMORY_OUTSIDE if whole else ()))
        rows.append(_base(r, {
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
    figure = _stacked([(row["label"], row["parts"]) for row in rows], MEMORY_CATEGORIES + MEMORY_OUTSIDE,
                      MEMORY_LABELS, "GiB", "Memory at the training peak, by category")
    return {"columns": [SHORT[k] for k in MEMORY_CATEGORIES + MEMORY_OUTSIDE], "rows": rows,
            "figure": figure, "sentence": memory_sentence([row for row in rows if not row["control"]]),
            "controls": [memory_control_sentence(c, n) for c, n in _twins(rows)]}


def _biggest(hi: dict[str, float], lo: dict[str, float]) -> str:
    return max(hi, key=lambda k: (hi.get(k) or 0) - (lo.get(k) or 0))


def memory_sentence(rows: list[dict[str, Any]]) -> str | None:
    """The biggest difference in one sentence, with its evidence (totals and the category that makes it), on
    the categories every row could separate."""
    if len(rows) < 2:
        return None
    rows, names = why_parts.comparable(rows, MEMORY_LABELS)
    if len({row["scope"] for row in rows}) > 1:
        rows = [{**row, "total": sum(row["parts"].get(k, 0.0) for k in MEMORY_CATEGORIES) * GiB,
                 "scope": "allocated peak"} for row in rows]
    hi, lo = max(rows, key=lambda r: r["total"]), min(rows, key=lambda r: r["total"])
    if hi is lo:
        return None
    key = _biggest(hi["parts"], lo["parts"])
    gap = hi["parts"][key] - lo["parts"][key]
    return (f"{hi['label']}'s {hi['scope']} is {(hi['total'] - lo['total']) / GiB:.1f} GiB higher than "
            f"{lo['label']}'s ({hi['total'] / GiB:.1f} vs {lo['total'] / GiB:.1f} GiB), {gap:.1f} GiB of it "
            f"{names[key]} ({hi['parts'][key]:.1f} vs {lo['parts'][key]:.1f} GiB).")


def _allocated(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "total": sum(row["parts"].get(k, 0.0) for k in MEMORY_CATEGORIES) * GiB, "scope": "allocated peak"}


def _loss_change(twin: dict[str, Any], ctl: dict[str, Any]) -> str:
    loss = (f"loss path {twin['loss']} -> {ctl['loss']}" if twin["loss"] != ctl["loss"]
            else f"same loss path ({ctl['loss']})")
    return loss + cast_change(twin, ctl)


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
            f"({twin['parts'][key]:.1f} to {ctl['parts'][key]:.1f} GiB); {_loss_change(twin, ctl)}.")


def _per_step(prof: TimeProfile) -> dict[str, float]:
    n = max(1, len(prof.steps))
    return {k: (prof.parts_s.get(k) or 0.0) / n for k in TIME_PARTS}


IDLE = "GPU idle"
GPU_KEYS = CLASS_ORDER + (IDLE,)


def _gpu_per_step(prof: TimeProfile) -> dict[str, float] | None:
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
    gaps = sorted(GPU_KEYS, key=lambda k: -(slow["gpu"][k] - fast["gpu"][k]))
    first, second = gaps[0], gaps[1]
    same = "GEMM" if abs(slow["gpu"]["GEMM"] - fast["gpu"]["GEMM"]) < 0.1 * max(fast["gpu"]["GEMM"], 1e-9) else None
    g, h = slow["gpu"], fast["gpu"]
    return (f"On the GPU, {slow['label']}'s step spends {g[first] - h[first]:.3f} s more than {fast['label']}'s in "
            f"{first} ({g[first]:.3f} vs {h[first]:.3f} s) and {g[second] - h[second]:.3f} s more in {second} "
            f"({g[second]:.3f} vs {h[second]:.3f} s)"
            + (f"; their GEMM time is within 10% ({g['GEMM']:.3f} vs {h['GEMM']:.3f} s)." if same else "."))


def time_block(runs: list[Result]) -> dict[str, Any] | None:
    chosen = _first(runs, "time")
    if not chosen:
        return None
    rows = []
    for label, (r, prof) in chosen.items():
        parts, merged = _per_step(prof), why_parts.not_separated(prof)
        rows.append(_base(r, {
            "gpu": _gpu_per_step(prof), "idle": idle_cell(prof),
            "label": label, "view": prof.view, "steps": prof.steps, "parts": parts, "merged": merged,
            "step_s": sum(parts.values()),
            "cells": [why_parts.cell(k, merged, SHORT) or fmt(parts[k], "seconds") for k in TIME_PARTS],
            "step_meter": fmt(prof.step_meter_s / max(1, len(prof.steps)), "seconds")
            if prof.step_meter_s is not None else "–",
            "trace": prof.trace_file, "trace_note": prof.trace_note, "notes": prof.notes,
            "top": (prof.top_kernels or prof.top_ops)[:5], "top_kind": "kernels" if prof.top_kernels else "CPU ops",
            "sdpa": sdpa_cell(prof)}))
    views = sorted({row["view"] for row in rows})
    figure = _stacked([(row["label"], row["parts"]) for row in rows], TIME_PARTS, TIME_LABELS, "s",
                      f"One profiled step, by part ({' / '.join(views)} view)")
    gpu_rows = [(row["label"], row["gpu"]) for row in rows if row["gpu"]]
    kernels = _stacked(gpu_rows, GPU_KEYS, {k: k for k in GPU_KEYS}, "s",
                       "One profiled step on the GPU, by kernel class, and its idle time") if gpu_rows else None
    natives = [row for row in rows if not row["control"]]
    return {"columns": [SHORT[k] for k in TIME_PARTS], "rows": rows, "figure": figure, "kernels_figure": kernels,
            "kernel_sentence": kernel_sentence(natives),
            "sentence": time_sentence(natives),
            "controls": [time_control_sentence(c, n) for c, n in _twins(rows)]}


def time_control_sentence(ctl: dict[str, Any], twin: dict[str, Any]) -> str:
    (ctl, twin), names = why_parts.comparable([ctl, twin], TIME_LABELS)
    key = max(ctl["parts"], key=lambda k: abs(ctl["parts"][k] - twin["parts"][k]))
    return (f"{ctl['label']}: the one change moves {twin['framework']}'s profiled step from {twin['step_s']:.3g} to "
            f"{ctl['step_s']:.3g} s ({ctl['step_s'] - twin['step_s']:+.3g} s), "
            f"{ctl['parts'][key] - twin['parts'][key]:+.3g} s of it in {names[key]} "
            f"({twin['parts'][key]:.3g} to {ctl['parts'][key]:.3g} s){_gpu_change(twin, ctl)}; "
            f"{_loss_change(twin, ctl)}.")


def _gpu_change(twin: dict[str, Any], ctl: dict[str, Any]) -> str:
    """The kernel class (or the GPU's idle time) the change moved most, where both runs have the device view."""
    if not twin.get("gpu") or not ctl.get("gpu"):
        return ""
    g, h = ctl["gpu"], twin["gpu"]
    key = max(GPU_KEYS, key=lambda k: abs(g[k] - h[k]))
    return f"; on the GPU, {key} {h[key]:.3f} to {g[key]:.3f} s a step ({g[key] - h[key]:+.3f})"


def time_sentence(rows: list[dict[str, Any]]) -> str | None:
    if len(rows) < 2:
        return None
    rows, names = why_parts.comparable(rows, TIME_LABELS)
    slow, fast = max(rows, key=lambda r: r["step_s"]), min(rows, key=lambda r: r["step_s"])
    if slow is fast:
        return None
    key = _biggest(slow["parts"], fast["parts"])
    return (f"{slow['label']}'s profiled step takes {slow['step_s'] - fast['step_s']:.3g} s longer than "
            f"{fast['label']}'s ({slow['step_s']:.3g} vs {fast['step_s']:.3g} s), "
            f"{slow['parts'][key] - fast['parts'][key]:.3g} s of it in {names[key]} "
            f"({slow['parts'][key]:.3g} vs {fast['parts'][key]:.3g} s).")


def why_sections(records: list[Result], folder_of: Any = None) -> dict[str, dict[str, Any]]:
    """Unprofiled point hash -> its Why section, from the profiled ``records`` (empty when there are none)."""
    by_point: dict[str, list[Result]] = {}
    for r in records:
        if r.profiled:
            by_point.setdefault(unprofiled_point_hash(r.job.to_dict()), []).append(r)
    out = {}
    for point, runs in by_point.items():
        out[point] = {
            "point_hash": point, "title": point_title(runs), "memory": memory_block(runs), "time": time_block(runs),
            "runs": [{"run_id": r.run_id, "label": r.label, "repeat": r.repeat, "kind": r.profiled,
                      "status": r.status, "reason": r.reason or "",
                      "profile_status": _profile_status(r), "folder": folder_of(r) if folder_of else r.run_dir,
                      "loss_path": r.profile.loss_path.path if r.profile is not None and r.profile.loss_path else None,
                      "lora_cast": r.profile.lora_cast.summary if r.profile is not None and r.profile.lora_cast else None}
                     for r in sorted(runs, key=by_label_and_repeat)]}
    return out


def _profile_status(r: Result) -> str:
    prof = getattr(r.profile, r.profiled or "", None) if r.profile is not None else None
    if prof is None:
        return "no profile recorded"
    return prof.status + (f": {prof.reason}" if prof.reason else "")
