"""The comparison table of each sweep point: runs grouped by framework + version, repeats as median (min-max).

Only plain data comes out of here (numbers, pre-formatted strings, flags); the template lays it out.
A column's good direction comes from :data:`harness.results.load.METRICS` (``higher_is_better``); phase
durations are times, so lower is better.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.stats import summarize
from harness.records import Result
from harness.results.load import METRICS, flatten


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    path: str
    kind: str  # how to format: rate, bytes, seconds, ratio, loss, joules
    higher_is_better: bool
    group: str  # header group in the table


def _metric(name: str, kind: str, group: str, label: str | None = None) -> Column:
    m = METRICS[name]
    return Column(m.name, label or m.label, m.path, kind, m.higher_is_better, group)


COLUMNS: tuple[Column, ...] = (
    _metric("tokens_per_s", "rate", "speed"),
    _metric("supervised_tokens_per_s", "rate", "speed"),
    _metric("samples_per_s", "rate", "speed"),
    _metric("step_time_s", "seconds", "speed", "step time (median)"),
    _metric("mfu", "percent", "speed"),
    _metric("peak_mem", "bytes", "memory", "peak, training phase (NVML)"),
    Column("run_peak_mem", "peak, whole run (NVML)", "memory.nvml_run_peak_bytes", "bytes", False, "memory"),
    _metric("torch_peak_allocated", "bytes", "memory", "allocator max allocated"),
    _metric("torch_peak_reserved", "bytes", "memory", "allocator max reserved"),
    _metric("eval_loss", "loss", "quality", "eval loss (ours)"),
    Column("framework_eval_loss", "eval loss (framework)", "eval.framework_loss", "loss", False, "quality"),
    _metric("energy_per_1k_tokens", "joules", "quality", "energy, J / 1k tokens"),
    Column("t_imports", "imports", "durations.imports", "seconds", False, "time"),
    Column("t_model_load", "model load", "durations.model_load", "seconds", False, "time"),
    Column("t_data", "data", "durations.data", "seconds", False, "time"),
    Column("t_first_step", "imports to first step", "durations.to_first_step", "seconds", False, "time"),
    Column("t_train", "train", "durations.train", "seconds", False, "time"),
    Column("t_eval", "eval", "durations.eval", "seconds", False, "time"),
    Column("t_total", "total", "durations.total", "seconds", False, "time"),
)
TABLE_TITLES = {"speed": "Speed", "memory": "Memory", "quality": "Quality and energy", "time": "Wall time by phase"}
# A best mark needs a difference a reader can act on, beyond the repeats' spread: relative for rates,
# memory and energy; absolute for losses (the headline's "within 0.01") and phase times (sub-second
# phases are scheduling noise).
MIN_RELATIVE = 0.02
MIN_ABSOLUTE = {"loss": 0.01, "seconds": 0.5}
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}


# ---- formatting --------------------------------------------------------------------------------------
def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "–"
    if kind == "bytes":
        gib = value / 2**30
        return f"{gib:.2f} GiB" if gib >= 1 else f"{value / 2**20:.0f} MiB"
    if kind == "rate":
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    if kind == "seconds":
        return f"{value:.3g} s" if value < 100 else f"{value:,.0f} s"
    if kind == "percent":
        return f"{value * 100:.1f}%"
    if kind == "loss":
        return f"{value:.4f}"
    if kind == "joules":
        return f"{value:.3g} J"
    return f"{value:.3g}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.1f}x"


# ---- grouping ----------------------------------------------------------------------------------------
def run_label(record: Result) -> str:
    """``framework-version``, the same label the fairness audit uses."""
    return record.label


def by_label_and_repeat(record: Result) -> tuple[str, int]:
    """The order runs are listed in: framework-version, then repeat."""
    return record.label, record.repeat or 0


def group_by_point(records: list[Result]) -> dict[str, list[Result]]:
    """Sweep points in first-seen order (a point is one model x dataset x recipe, all frameworks)."""
    points: dict[str, list[Result]] = {}
    for r in records:
        points.setdefault(str(r.point_hash), []).append(r)
    return points


def group_by_label(records: list[Result]) -> dict[str, list[Result]]:
    groups: dict[str, list[Result]] = {}
    for r in sorted(records, key=by_label_and_repeat):
        groups.setdefault(run_label(r), []).append(r)
    return groups


def values(runs: list[Result], path: str) -> list[float]:
    """The metric of every successful repeat (failed repeats have no value and are left out)."""
    out = []
    for r in runs:
        if not r.ok:
            continue
        v = r.lookup(path)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out


def choose_reference(labels: list[str], groups: dict[str, list[Result]], reference: str | None) -> str | None:
    """The reference group: ``reference`` (a framework name or a full label), else the framework
    registry's reference (``registry.reference()``), else the first group with a successful run, else the first."""
    ok = [l for l in labels if any(r.ok for r in groups[l])]
    pool = ok or labels
    if not pool:
        return None
    from harness.frameworks import registry

    for wanted in ([reference] if reference else []) + [registry.reference()]:
        for label in pool:
            if label == wanted or label.split("-", 1)[0] == wanted or label.rsplit("-", 1)[0] == wanted:
                return label
    return pool[0]


def point_title(runs: list[Result]) -> str:
    row = flatten(runs[0])
    train = runs[0].job.train or {}
    bits = [f"model {row.get('model')}", f"dataset {row.get('dataset')}"]
    if train.get("max_steps") is not None:
        bits.append(f"{train['max_steps']} steps")
    if train.get("batch_size") is not None:
        bits.append(f"batch {train['batch_size']}x{train.get('grad_accum', 1)}")
    if train.get("max_length") is not None:
        bits.append(f"max length {train['max_length']}")
    if runs[0].recipe_name != "identical":  # issue 17: a recommended point beside its identical one
        bits.append(f"recipe {runs[0].recipe_name}")
    launcher = runs[0].job.launcher
    nproc = (launcher.nproc if launcher is not None else None) or 1
    if nproc > 1:
        bits.append(f"{nproc} GPUs (DDP)")
    return ", ".join(bits)


def comparison_table(runs: list[Result], reference: str | None = None) -> dict[str, Any]:
    """The table of one sweep point: one row per framework+version, one cell per column.

    Each cell: ``{n, median, min, max, text, spread, best, ratio, ratio_text}``; ``best`` marks the best
    median where it beats every other group beyond noise and the minimum difference (``clear_difference``),
    ``ratio`` is median / the reference group's median. ``tables``: the columns split by group (speed,
    memory, quality, time), so each table fits a 1280 px page.
    """
    import pandas as pd  # the per-run frame; kept local so importing the report does not pull pandas

    groups = group_by_label(runs)
    ref = choose_reference(list(groups), groups, reference)
    labels = sorted(groups, key=lambda label: label != ref)  # the reference row first
    frame = pd.DataFrame([{"label": run_label(r), "status": r.status,
                           **{c.key: r.lookup(c.path) if r.ok else None for c in COLUMNS}}
                          for r in runs])
    rows = []
    for label in labels:
        sub = frame[frame["label"] == label]
        cells = {}
        for c in COLUMNS:
            s = summarize([v for v in sub[c.key].tolist() if v is not None])
            spread = "" if s["n"] < 2 else f"{fmt(s['min'], c.kind)} – {fmt(s['max'], c.kind)}"
            cells[c.key] = {"n": s["n"], "median": s["median"], "min": s["min"], "max": s["max"],
                            "cv": s["cv"], "text": fmt(s["median"], c.kind), "spread": spread,
                            "best": False, "ratio": None, "ratio_text": ""}
        statuses = sub["status"].tolist()
        first = groups[label][0]
        rows.append({"label": label, "framework": first.framework.name,
                     "version": first.framework.version,
                     "n_ok": statuses.count("ok"), "n_runs": len(statuses),
                     "statuses": sorted(set(statuses)), "is_reference": label == ref, "cells": cells,
                     "run_ids": [r.run_id for r in groups[label]]})
    for c in COLUMNS:
        present = [row for row in rows if row["cells"][c.key]["median"] is not None]
        _mark_best(c, present, {row["label"]: values(groups[row["label"]], c.path) for row in present})
        ref_row = next((row for row in rows if row["label"] == ref), None)
        ref_value = ref_row["cells"][c.key]["median"] if ref_row else None
        if ref_value:
            for row in present:
                if row["label"] != ref:
                    ratio = row["cells"][c.key]["median"] / ref_value
                    row["cells"][c.key]["ratio"] = ratio
                    row["cells"][c.key]["ratio_text"] = fmt_ratio(ratio)
    used = [c for c in COLUMNS if any(row["cells"][c.key]["median"] is not None for row in rows)]
    unused = [c.label for c in COLUMNS if c not in used]
    tables = [{"group": g, "title": title, "columns": [c.__dict__ for c in used if c.group == g]}
              for g, title in TABLE_TITLES.items() if any(c.group == g for c in used)]
    return {"reference": ref, "columns": [c.__dict__ for c in used], "tables": tables,
            "not_measured": unused, "rows": rows}


def clear_difference(column: Column, best: list[float], other: list[float]) -> bool:
    """Whether the best group's repeats beat another group's by more than noise and the minimum difference."""
    from harness.stats import difference_is_noise, median

    a, b = median(best), median(other)
    if difference_is_noise(best, other):
        return False
    if column.kind in MIN_ABSOLUTE:
        return abs(a - b) > MIN_ABSOLUTE[column.kind]
    scale = max(abs(a), abs(b))
    return scale > 0 and abs(a - b) / scale > MIN_RELATIVE


def _mark_best(column: Column, present: list[dict[str, Any]], vals: dict[str, list[float]]) -> None:
    """Mark the best median only where it beats every other group clearly (:func:`clear_difference`)."""
    if len(present) < 2:
        return
    pick = max if column.higher_is_better else min
    best = pick(present, key=lambda row: row["cells"][column.key]["median"])
    if all(clear_difference(column, vals[best["label"]], vals[row["label"]]) for row in present if row is not best):
        best["cells"][column.key]["best"] = True


RUN_COLUMNS = ("tokens_per_s", "step_time_s", "peak_mem", "eval_loss", "t_total")


def run_rows(runs: list[Result]) -> list[dict[str, Any]]:
    """One row per run (every repeat, every status), for the per-run table."""
    out = []
    for r in sorted(runs, key=by_label_and_repeat):
        cells = []
        for key in RUN_COLUMNS:
            c = COLUMN_BY_KEY[key]
            v = r.lookup(c.path) if r.ok else None
            cells.append(fmt(v if isinstance(v, (int, float)) else None, c.kind))
        out.append({"run_id": r.run_id, "label": run_label(r), "repeat": r.repeat,
                    "status": r.status, "reason": r.reason or "", "run_dir": r.run_dir,
                    "wall_time": fmt(r.wall_time_s, "seconds"), "cells": cells})
    return out


def run_column_labels() -> list[str]:
    return [COLUMN_BY_KEY[k].label for k in RUN_COLUMNS]


# ---- scaling efficiency (launcher=torchrun) ------------------------------------------------------------
def world_size_of(record: Result) -> int:
    """The number of ranks the run was launched with (the launcher is part of the job)."""
    return record.world_size


def _scaling_key(record: Result) -> str:
    """The job without its launcher (and the machine-local model path): one framework at one sweep point,
    whatever the number of GPUs. Runs at 1 and N GPUs have different point hashes (nproc is in the job)."""
    import json

    job = json.loads(json.dumps(record.job.to_dict()))
    job.pop("launcher", None)
    (job.get("model") or {}).pop("path", None)
    return json.dumps(job, sort_keys=True)


def scaling_table(records: list[Result]) -> list[dict[str, Any]]:
    """Scaling efficiency = tokens/s at N GPUs / (N x tokens/s at 1 GPU), medians over ok repeats, for
    every framework and sweep point that has runs at 1 GPU and at N > 1 GPUs (empty otherwise)."""
    from harness.stats import median

    path = METRICS["tokens_per_s"].path
    groups: dict[str, dict[int, list[Result]]] = {}
    for r in records:
        groups.setdefault(_scaling_key(r), {}).setdefault(world_size_of(r), []).append(r)
    rows = []
    for by_n in groups.values():
        base_values = values(by_n.get(1, []), path)
        if not base_values:
            continue
        base = median(base_values)
        for n in sorted(k for k in by_n if k > 1):
            vals = values(by_n[n], path)
            if not vals:
                continue
            rate = median(vals)
            eff = rate / (n * base) if base else None
            first = by_n[n][0]
            rows.append({"label": run_label(first), "point": point_title(by_n[n]), "nproc": n,
                         "tokens_per_s": rate, "tokens_per_s_1": base, "efficiency": eff,
                         "tokens_per_s_text": fmt(rate, "rate"), "tokens_per_s_1_text": fmt(base, "rate"),
                         "efficiency_text": "–" if eff is None else f"{eff * 100:.0f}%",
                         "speedup_text": fmt_ratio(rate / base) if base else ""})
    return rows
