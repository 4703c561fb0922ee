"""Matplotlib figures (Agg backend) returned as ``data:image/png;base64,...`` URIs, so a report is one file.

Every function returns a data URI, never None: a figure with nothing to draw says so in the image
("no GPU samples", "no logged losses"), so the reader sees why it is empty.
"""
from __future__ import annotations

import base64
import csv
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.report.tables import COLUMN_BY_KEY, fmt, group_by_label, run_label, values  # noqa: E402

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
DPI = 96


def color_map(labels: list[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def to_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _empty(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#777", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#ddd")


def _style(ax: Any) -> None:
    ax.grid(True, axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


BAR_METRICS = ("tokens_per_s", "peak_mem", "torch_peak_reserved", "step_time_s", "eval_loss", "t_total")


def bar_charts(runs: list[dict[str, Any]], keys: tuple[str, ...] = BAR_METRICS) -> str:
    """One small bar chart per metric: the median of the repeats, error bar from min to max."""
    groups = group_by_label(runs)
    labels = list(groups)
    colors = color_map(labels)
    ncols = 3
    nrows = (len(keys) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(11, 3.3 * nrows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        col = COLUMN_BY_KEY[key]
        arrow = "higher is better" if col.higher_is_better else "lower is better"
        ax.set_title(f"{col.label}\n({arrow})", fontsize=9)
        per = {label: values(groups[label], col.path) for label in labels}
        shown = [label for label in labels if per[label]]
        if not shown:
            _empty(ax, "not measured")
            continue
        scale, unit = 1.0, ""
        if col.kind == "bytes":
            scale, unit = 2**30, "GiB"
        elif col.kind == "seconds":
            unit = "s"
        elif col.kind == "percent":
            scale, unit = 0.01, "%"
        medians, lo, hi = [], [], []
        for label in shown:
            vs = sorted(v / scale for v in per[label])
            n = len(vs)
            med = vs[n // 2] if n % 2 else (vs[n // 2 - 1] + vs[n // 2]) / 2
            medians.append(med)
            lo.append(med - vs[0])
            hi.append(vs[-1] - med)
        xs = range(len(shown))
        ax.bar(xs, medians, color=[colors[l] for l in shown], width=0.6,
               yerr=[lo, hi], capsize=4, ecolor="#333", error_kw={"linewidth": 1})
        ax.set_xticks(list(xs))
        ax.set_xticklabels(shown, rotation=20, ha="right", fontsize=8)
        if unit:
            ax.set_ylabel(unit, fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        _style(ax)
        for x, m, label in zip(xs, medians, shown):
            ax.annotate(fmt(m * scale, col.kind), (x, m), textcoords="offset points", xytext=(0, 3),
                        ha="center", va="bottom", fontsize=7, color="#333")
    fig.tight_layout()
    return to_data_uri(fig)


def _cumulative_tokens(log: list[dict[str, Any]]) -> list[tuple[int, float | None]]:
    total, out = 0, []
    for step in log:
        total += int(step.get("tokens") or 0)
        out.append((total, step.get("loss")))
    return out


def loss_curves(runs: list[dict[str, Any]]) -> str:
    """Train loss per logged step against cumulative tokens (solid), our evaluator's loss (dashed, markers)."""
    ok = [r for r in runs if r.get("status") == "ok"]
    colors = color_map([run_label(r) for r in runs])
    fig, ax = plt.subplots(figsize=(9, 4) if ok else (9, 1.4))
    drawn = False
    for r in sorted(ok, key=lambda r: (run_label(r), r.get("repeat") or 0)):
        label, rep = run_label(r), r.get("repeat") or 0
        train = r.get("train") or {}
        points = [(t, l) for t, l in _cumulative_tokens(train.get("log") or []) if l is not None]
        suffix = f" r{rep}" if rep else ""
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], color=colors[label], linewidth=1.4,
                    alpha=1.0 if not rep else 0.5, label=f"{label}{suffix} train")
            drawn = True
        ev = r.get("eval") or {}
        curve = [(c.get("tokens"), c.get("loss")) for c in ev.get("curve") or [] if c.get("loss") is not None]
        if ev.get("loss") is not None and train.get("tokens"):
            curve.append((train["tokens"], ev["loss"]))
        if curve:
            ax.plot([c[0] for c in curve], [c[1] for c in curve], color=colors[label], linestyle="--", marker="o",
                    markersize=5, alpha=1.0 if not rep else 0.5, label=f"{label}{suffix} eval (ours)")
            drawn = True
    if not drawn:
        _empty(ax, "no logged losses (no run succeeded, or the framework logged none)")
    else:
        ax.set_xlabel("tokens seen (cumulative, non-padding)")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8, frameon=False, loc="best")
        _style(ax)
        ax.grid(True, axis="x", color="#f0f0f0")
    fig.tight_layout()
    return to_data_uri(fig)


def read_timeline(path: Path) -> list[dict[str, float]]:
    """Rows of a ``memory_timeline.csv`` that carry a memory reading; [] when missing, empty or unreadable."""
    rows: list[dict[str, float]] = []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                try:
                    if row.get("used_bytes"):
                        rows.append({"t": float(row["t"]), "device": int(float(row.get("device") or 0)),
                                     "used_bytes": float(row["used_bytes"])})
                except (TypeError, ValueError):
                    continue
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    return rows


def timeline_path(record: dict[str, Any]) -> Path | None:
    name = (record.get("memory") or {}).get("timeline") or "memory_timeline.csv"
    if record.get("_source"):
        return Path(record["_source"]).parent / name
    if not record.get("run_dir"):
        return None
    return Path(record["run_dir"]) / name


def memory_timelines(runs: list[dict[str, Any]]) -> str:
    """GPU memory used (NVML, per device) over each run's wall time, the training phase shaded."""
    colors = color_map([run_label(r) for r in runs])
    series = []
    for r in sorted(runs, key=lambda r: (run_label(r), r.get("repeat") or 0)):
        path = timeline_path(r)
        rows = read_timeline(path) if path else []
        if rows:
            series.append((r, rows))
    fig, ax = plt.subplots(figsize=(9, 3.6) if series else (9, 1.4))
    if not series:
        _empty(ax, "no GPU samples (CPU run, NVML unavailable, or timeline files not found)")
        fig.tight_layout()
        return to_data_uri(fig)
    for r, rows in series:
        label, rep = run_label(r), r.get("repeat") or 0
        phases = r.get("phases") or {}
        t0 = phases.get("spawned") or phases.get("process_start") or rows[0]["t"]
        for dev in sorted({row["device"] for row in rows}):
            pts = [row for row in rows if row["device"] == dev]
            ax.plot([p["t"] - t0 for p in pts], [p["used_bytes"] / 2**30 for p in pts], color=colors[label],
                    alpha=1.0 if not rep else 0.5, linewidth=1.2,
                    label=f"{label}" + (f" r{rep}" if rep else "") + (f" gpu{dev}" if dev else ""))
        if "train_start" in phases and "train_end" in phases:
            ax.axvspan(phases["train_start"] - t0, phases["train_end"] - t0, color=colors[label], alpha=0.07)
    ax.set_xlabel("seconds since the run started (shaded: training phase)")
    ax.set_ylabel("GPU memory used (GiB, NVML)")
    ax.legend(fontsize=8, frameon=False, loc="best")
    _style(ax)
    fig.tight_layout()
    return to_data_uri(fig)


def trend_chart(entries: list[dict[str, Any]], key: str, label: str, kind: str, higher_is_better: bool) -> str:
    """One metric over history, one line per framework (points labelled where the version changes)."""
    from datetime import datetime

    by_fw: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        v = e.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and e.get("finished_at"):
            by_fw.setdefault(str(e.get("framework")), []).append(e)
    colors = color_map(list(by_fw))
    fig, ax = plt.subplots(figsize=(8, 3.0))
    ax.set_title(f"{label} ({'higher' if higher_is_better else 'lower'} is better)", fontsize=10)
    if not by_fw:
        _empty(ax, "no values in the history")
        fig.tight_layout()
        return to_data_uri(fig)
    scale = 2**30 if kind == "bytes" else 1.0
    for fw, es in sorted(by_fw.items()):
        es = sorted(es, key=lambda e: e["finished_at"])
        xs = [datetime.fromtimestamp(float(e["finished_at"])) for e in es]
        ys = [float(e[key]) / scale for e in es]
        ax.plot(xs, ys, marker="o", markersize=4, color=colors[fw], label=fw, linewidth=1.2)
        last_version = None
        for x, y, e in zip(xs, ys, es):
            if e.get("version") != last_version:
                ax.annotate(str(e.get("version")), (x, y), textcoords="offset points", xytext=(0, 5),
                            fontsize=7, color=colors[fw], ha="center")
                last_version = e.get("version")
    if kind == "bytes":
        ax.set_ylabel("GiB", fontsize=8)
    ax.legend(fontsize=8, frameon=False)
    _style(ax)
    fig.autofmt_xdate()
    fig.tight_layout()
    return to_data_uri(fig)
