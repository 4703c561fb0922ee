"""The history trend page: one chart per (machine, suite, sweep point), one line per framework, x = run order.

A line only ever joins runs of the same job on the same kind of machine: entries are keyed by machine id,
suite, point hash (which covers model, recipe, quantization and GPU count) and framework. Each point is
labelled with its run number; the table under the chart gives its commit, version and date. The accepted
baseline (``benchmarks/baselines/<machine>/<suite>.json``) is drawn as a solid grey line, the ``compare``
threshold (its default checks) dashed, and runs that ``compare`` would call a regression are marked in red.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

import matplotlib.pyplot as plt

from harness.records import Result
from harness.report import figures, tables
from harness.results.load import METRICS

TREND_METRICS = ("tokens_per_s", "peak_mem", "eval_loss")


def _checks() -> dict[str, Any]:
    from harness.regression.thresholds import DEFAULT_CHECKS, parse_checks

    return {c.metric: c for c in parse_checks(DEFAULT_CHECKS)}


def _baseline(machine: str, suite: str) -> dict[tuple[str, str], dict[str, Any]]:
    from harness.regression.thresholds import CompareError
    from harness.regression.baselines import baseline_path, load_baseline

    path = baseline_path(machine, suite)
    try:
        data = load_baseline(path) if path.is_file() else {"entries": []}
    except CompareError:
        return {}
    return {(e.get("point_hash"), e.get("framework")): e for e in data.get("entries", [])}


def _records_by_run(history_files: list[Path]) -> dict[str, Result]:
    """result.json records near the histories (for what a history line does not hold: GPU count, recipe)."""
    from harness.results.load import load_records

    roots = {f.parent.parent for f in history_files}
    return {str(r.run_id): r for r in load_records(sorted(roots), warn=lambda m: None)}


def _point_label(entry: dict[str, Any], record: Result | None) -> str:
    bits = [f"{entry.get('suite')}", f"model {entry.get('model')}", f"dataset {entry.get('dataset')}"]
    if record is not None:
        train = record.job.train or {}
        if train.get("quantization") not in (None, "none"):
            bits.append(f"quantization {train['quantization']}")
        bits.append(f"batch {train.get('batch_size')}, {train.get('max_steps')} steps")
        bits.append(f"{tables.world_size_of(record)} GPU{'s' if tables.world_size_of(record) > 1 else ''}")
    return ", ".join(bits)


def _chart(series: dict[str, list[dict[str, Any]]], baseline: dict[tuple[str, str], dict[str, Any]],
           checks: dict[str, Any], point: str) -> str:
    from harness.regression.verdicts import verdict
    from harness.stats import median

    colors = figures.color_map(list(series))
    fig, axes = plt.subplots(1, len(TREND_METRICS), figsize=(12, 3.4), squeeze=False)
    n_max = max(len(es) for es in series.values())
    for ax, key in zip(axes.flat, TREND_METRICS):
        m = METRICS[key]
        scale = 2**30 if m.unit == "bytes" else 1.0
        ax.set_title(f"{m.label}\n({'higher' if m.higher_is_better else 'lower'} is better)")
        drawn = False
        for fw, es in sorted(series.items()):
            pts = [(i, float(e[key]) / scale, e) for i, e in enumerate(es, start=1)
                   if isinstance(e.get(key), (int, float)) and e.get("status") == "ok"]
            if not pts:
                continue
            drawn = True
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=5, color=colors[fw],
                    linewidth=1.3, label=fw)
            entry = baseline.get((point, fw))
            base_values = ((entry or {}).get("metrics") or {}).get(key) or []
            check = checks.get(key)
            if base_values:
                base = median(base_values) / scale
                ax.axhline(base, color=colors[fw], linewidth=1, alpha=0.5)
                if check is not None:
                    sign = -1 if m.higher_is_better else 1
                    limit = base * (1 + sign * check.amount / 100) if check.relative else base + sign * check.amount / scale
                    ax.axhline(limit, color=colors[fw], linewidth=1, alpha=0.6, linestyle="--")
            if base_values and check is not None:
                bad = [p for p in pts if verdict(check, base_values, [p[2][key]])[0] == "REGRESSION"]
                ax.scatter([p[0] for p in bad], [p[1] for p in bad], s=120, facecolors="none",
                           edgecolors="#d00", linewidths=2, zorder=4)
        if not drawn:
            figures.empty_figure(ax, "not measured")
            continue
        ax.set_xticks(range(1, n_max + 1))
        ax.set_xlim(0.5, n_max + 0.5)
        ax.set_xlabel("run number (see the table)")
        if m.unit == "bytes":
            ax.set_ylabel("GiB")
        ax.margins(y=0.25)
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        figures.style_axes(ax)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, marker="o", label=fw) for fw, c in colors.items()]
    handles += [Line2D([], [], color="#777", label="accepted baseline"),
                Line2D([], [], color="#777", linestyle="--", label="compare threshold"),
                Line2D([], [], color="#d00", marker="o", markerfacecolor="none", linestyle="none", markersize=10,
                       label="regression")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, -0.08))
    fig.tight_layout()
    return figures.to_data_uri(fig)


def trend_context(history_files: Iterable[Path], *, warn=print) -> dict[str, Any]:
    from harness.regression.verdicts import verdict
    from harness.results.history import read_history

    files = [Path(f) for f in history_files]
    entries: dict[str, dict[str, Any]] = {}
    for f in files:
        for e in read_history(f, warn=warn):
            # a run copied into two histories counts once
            entries.setdefault(f"{e.get('run_id')}|{e.get('finished_at')}|{e.get('job_hash')}", e)
    records = _records_by_run(files)
    checks = _checks()
    groups: dict[tuple[str, str, str], dict[str, list[dict[str, Any]]]] = {}
    for e in sorted(entries.values(), key=lambda e: e.get("finished_at") or 0):
        if e.get("profile"):
            continue  # a profiled run's speed includes the profiler: never a point of a speed trend
        key = (str(e.get("machine_id") or "unknown"), str(e.get("suite")), str(e.get("point_hash")))
        groups.setdefault(key, {}).setdefault(str(e.get("framework")), []).append(e)
    machines: dict[str, list[dict[str, Any]]] = {}
    for (machine, suite, point), series in sorted(groups.items()):
        baseline = _baseline(machine, suite)
        first = next(iter(series.values()))[0]
        rows = []
        for fw, es in sorted(series.items()):
            entry = baseline.get((point, fw))
            for i, e in enumerate(es, start=1):
                verdicts = []
                for key in TREND_METRICS:
                    base_values = ((entry or {}).get("metrics") or {}).get(key) or []
                    if base_values and isinstance(e.get(key), (int, float)) and key in checks:
                        v, _ = verdict(checks[key], base_values, [e[key]])
                        if v in ("REGRESSION", "improved"):
                            verdicts.append(f"{METRICS[key].label}: {v}")
                rows.append({"framework": fw, "n": i, "version": e.get("version"), "status": e.get("status"),
                             "commit": (str(e.get("git_commit"))[:10] + (" (uncommitted changes)" if e.get("git_dirty") else ""))
                             if e.get("git_commit") else "not recorded",
                             "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime(float(e["finished_at"])))
                             if e.get("finished_at") else "not recorded",
                             "tokens_per_s": tables.fmt(e.get("tokens_per_s"), "rate"),
                             "peak_mem": tables.fmt(e.get("peak_mem"), "bytes"),
                             "eval_loss": tables.fmt(e.get("eval_loss"), "loss"),
                             "verdict": "; ".join(verdicts) or ("within threshold" if entry else "no baseline"),
                             "regression": any("REGRESSION" in v for v in verdicts)})
        machines.setdefault(machine, []).append({
            "suite": suite, "point": point, "title": _point_label(first, records.get(str(first.get("run_id")))),
            "chart": _chart(series, baseline, checks, point) if any(e.get("status") == "ok" for es in series.values()
                                                                     for e in es) else None, "rows": rows,
            "baseline": sorted(fw for fw in series if (point, fw) in baseline)})
    return {"machines": [{"machine": m, "points": ps, "entries": sum(len(p["rows"]) for p in ps)}
                         for m, ps in sorted(machines.items())],
            "sources": [str(f) for f in files], "runs": len(entries)}
