"""The memory timeline figure: GPU memory used (NVML, per device) over each run's wall time, read from the
run's ``memory_timeline.csv.gz`` (written by the parent's sampler), the training phase shaded."""
from __future__ import annotations

import csv
from pathlib import Path

from harness.records import Result, run_files
from harness.sampling.timeline import open_text
from harness.report.figures import (PALETTE, color_map, framework_legend, plt, style_axes, thin,
                                    to_data_uri)
from harness.report.tables import by_label_and_repeat, run_label


def read_timeline(path: Path) -> list[dict[str, float]]:
    """Rows of a memory timeline (CSV, gzipped or not) that carry a memory reading; [] when missing, empty or
    unreadable."""
    rows: list[dict[str, float]] = []
    try:
        with open_text(Path(path), "r") as handle:
            for row in csv.DictReader(handle):
                try:
                    if row.get("used_bytes"):
                        rows.append({"t": float(row["t"]), "device": int(float(row.get("device") or 0)),
                                     "used_bytes": float(row["used_bytes"])})
                except (TypeError, ValueError):
                    continue
    except (OSError, EOFError, UnicodeDecodeError, csv.Error):
        return []
    return rows


def timeline_path(record: Result) -> Path | None:
    """The run's timeline file: the name its result records, or that name compressed (older results were
    gzipped after they were written), or the current name."""
    name = record.memory.timeline or run_files.MEMORY_TIMELINE
    if record.source:
        folder = Path(record.source).parent
    elif record.run_dir:
        folder = Path(record.run_dir)
    else:
        return None
    for candidate in (name, name + ".gz", run_files.MEMORY_TIMELINE):
        if (folder / candidate).exists():
            return folder / candidate
    return folder / name


def memory_timelines(runs: list[Result]) -> str | None:
    """GPU memory used (NVML, per device) over each run's wall time, the training phase shaded; None where no run
    has GPU samples (the report says why in a line)."""
    colors = color_map([run_label(r) for r in runs if r.ok] or [run_label(r) for r in runs])
    series = []
    for r in sorted(runs, key=by_label_and_repeat):
        path = timeline_path(r)
        rows = read_timeline(path) if path else []
        if rows:
            series.append((r, rows))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.6))
    for r, rows in series:
        label, rep = run_label(r), r.repeat or 0
        colors.setdefault(label, PALETTE[len(colors) % len(PALETTE)])
        phases = r.phases
        t0 = phases.get("spawned") or phases.get("process_start") or rows[0]["t"]
        for dev in sorted({row["device"] for row in rows}):
            pts = thin([row for row in rows if row["device"] == dev], "used_bytes")
            ax.plot([p["t"] - t0 for p in pts], [p["used_bytes"] / 2**30 for p in pts], color=colors[label],
                    alpha=0.9 if not rep else 0.45, linewidth=1.2, linestyle="-" if not dev else ":")
        if "train_start" in phases and "train_end" in phases and not rep:
            ax.axvspan(phases["train_start"] - t0, phases["train_end"] - t0, color=colors[label], alpha=0.07)
    ax.set_xlabel("seconds since the run started (shaded: training phase of each framework's first repeat)")
    ax.set_ylabel("GPU memory used (GiB, NVML)")
    ax.set_ylim(bottom=0)
    styles = [("later repeats: lighter", {"linestyle": "-", "alpha": 0.4})]
    if any(row["device"] for _, rows in series for row in rows):
        styles.append(("second GPU (rank 1)", {"linestyle": ":"}))
    framework_legend(ax, {l: c for l, c in colors.items() if any(run_label(r) == l for r, _ in series)}, styles)
    style_axes(ax)
    fig.tight_layout()
    return to_data_uri(fig)
