"""Matplotlib figures returned as ``data:image/svg+xml;base64,...`` URIs: sharp at any screen density, and a
report stays one file that opens offline (text is drawn as paths, so no font has to be present).

Every function returns a data URI, never None: a figure with nothing to draw says so in the image
("no GPU samples", "no logged losses"), so the reader sees why it is empty.
"""
from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.records import Result  # noqa: E402
from harness.records.training import Train  # noqa: E402
from harness.report.tables import (COLUMN_BY_KEY, by_label_and_repeat, fmt, group_by_label,  # noqa: E402
                                   run_label, values)

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FONT = 10
plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT + 1, "axes.labelsize": FONT,
                     "xtick.labelsize": FONT - 1, "ytick.labelsize": FONT - 1, "legend.fontsize": FONT - 1,
                     "svg.hashsalt": "harness", "svg.fonttype": "path"})
MAX_POINTS = 800  # per plotted series: a 6,000-sample memory timeline would make the SVG heavy, not clearer


def color_map(labels: list[str]) -> dict[str, str]:
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def to_data_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def thin(points: list[dict[str, float]], key: str, limit: int = MAX_POINTS) -> list[dict[str, float]]:
    """At most ``limit`` points: the highest ``key`` of each run of k samples, so peaks survive thinning."""
    if len(points) <= limit:
        return points
    k = -(-len(points) // limit)
    return [max(points[i:i + k], key=lambda p: p[key]) for i in range(0, len(points), k)]


def empty_figure(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="#777", fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#ddd")


def style_axes(ax: Any) -> None:
    ax.grid(True, axis="y", color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


BAR_METRICS = ("tokens_per_s", "peak_mem", "run_peak_mem", "step_time_s", "eval_loss", "t_total")
# Value axes that start at zero make a ratio readable; a loss of 11.00 vs 11.01 needs a zoomed axis instead.
ZOOMED = ("loss",)


def _unit(kind: str) -> tuple[float, str]:
    return {"bytes": (2**30, "GiB"), "seconds": (1.0, "s"), "percent": (0.01, "%")}.get(kind, (1.0, ""))


def bar_charts(runs: list[Result], keys: tuple[str, ...] = BAR_METRICS) -> str:
    """One small chart per metric: the median of the repeats, whiskers from min to max; bars from zero,
    except losses, drawn as points on an axis zoomed to their range so their differences show."""
    from harness.stats import median

    groups = group_by_label(runs)
    labels = list(groups)
    colors = color_map(labels)
    # a metric no run measured (NVML peaks on a CPU) is left out, not drawn as an empty box
    keys = tuple(k for k in keys if any(values(groups[l], COLUMN_BY_KEY[k].path) for l in labels)) or keys
    ncols = 3
    nrows = (len(keys) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(11, 3.2 * nrows), squeeze=False)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        col = COLUMN_BY_KEY[key]
        arrow = "higher is better" if col.higher_is_better else "lower is better"
        ax.set_title(f"{col.label}\n({arrow})")
        per = {label: values(groups[label], col.path) for label in labels}
        shown = [label for label in labels if per[label]]
        if not shown:
            empty_figure(ax, "not measured")
            continue
        scale, unit = _unit(col.kind)
        medians = [median(per[l]) / scale for l in shown]
        lo = [m - min(per[l]) / scale for m, l in zip(medians, shown)]
        hi = [max(per[l]) / scale - m for m, l in zip(medians, shown)]
        xs = list(range(len(shown)))
        if col.kind in ZOOMED:
            ax.errorbar(xs, medians, yerr=[lo, hi], fmt="none", ecolor="#333", capsize=4, linewidth=1)
            ax.scatter(xs, medians, color=[colors[l] for l in shown], s=60, zorder=3)
            top, bottom = max(m + h for m, h in zip(medians, hi)), min(m - l for m, l in zip(medians, lo))
            pad = max((top - bottom) * 0.35, abs(top) * 2e-4, 1e-4)
            ax.set_ylim(bottom - pad, top + pad)
            ax.ticklabel_format(axis="y", useOffset=False)
        else:
            ax.bar(xs, medians, color=[colors[l] for l in shown], width=0.6, yerr=[lo, hi], capsize=4,
                   ecolor="#333", error_kw={"linewidth": 1})
            ax.set_ylim(0, max(m + h for m, h in zip(medians, hi)) * 1.18)
        ax.set_xticks(xs)
        # 30 degrees, anchored at the tick: five framework-version labels side by side no longer overlap
        ax.set_xticklabels(shown, rotation=30, ha="right", rotation_mode="anchor")
        ax.set_xlim(-0.6, len(shown) - 0.4)
        if unit:
            ax.set_ylabel(unit)
        style_axes(ax)
        for x, m in zip(xs, medians):  # above each bar or point (beside a point it ran into the next one's)
            ax.annotate(fmt(m * scale, col.kind), (x, m), textcoords="offset points",
                        xytext=(0, 4) if col.kind not in ZOOMED else (0, 8), ha="center", va="bottom",
                        fontsize=FONT - 1, color="#222")
    fig.tight_layout()
    return to_data_uri(fig)


def _cumulative_tokens(log: list[dict[str, Any]]) -> list[tuple[int, float | None]]:
    total, out = 0, []
    for step in log:
        total += int(step.get("tokens") or 0)
        out.append((total, step.get("loss")))
    return out


def framework_legend(ax: Any, colors: dict[str, str], styles: list[tuple[str, dict[str, Any]]]) -> None:
    """One legend entry per framework (its colour) and one per line style, outside the plot on the right:
    with three frameworks x three repeats x two curves, a legend entry per line would cover the curves."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, linewidth=3, label=l) for l, c in colors.items()]
    handles += [Line2D([], [], color="#555", label=name, **kw) for name, kw in styles]
    ax.legend(handles=handles, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def coinciding_losses(runs: list[Result]) -> list[str]:
    """The frameworks whose first repeats' train losses lie on one another at every logged step (within 0.2% of
    the losses' range, far below a line's width; two or more, else none): only the last drawn of them shows."""
    first: dict[str, list[float]] = {}
    for r in sorted((r for r in runs if r.ok), key=by_label_and_repeat):
        losses = [s.get("loss") for s in ((r.train or Train()).log or []) if s.get("loss") is not None]
        if losses:
            first.setdefault(run_label(r), losses)
    every = [x for losses in first.values() for x in losses]
    if len(first) < 2 or not every:
        return []
    tol = max(2e-3 * (max(every) - min(every)), 1e-9)

    def close(a: list[float], b: list[float]) -> bool:
        return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))

    labels = list(first)
    groups = [[m for m in labels if close(first[label], first[m])] for label in labels]
    largest = max(groups, key=len)
    return largest if len(largest) > 1 else []


def loss_curves(runs: list[Result]) -> str:
    """Train loss per logged step against cumulative tokens (solid), our evaluator's loss (dashed, markers)."""
    ok = [r for r in runs if r.ok]
    colors = color_map([run_label(r) for r in ok] or [run_label(r) for r in runs])
    fig, ax = plt.subplots(figsize=(10, 4) if ok else (10, 1.4))
    drawn = False
    for r in sorted(ok, key=by_label_and_repeat):
        label, rep = run_label(r), r.repeat or 0
        train = r.train or Train()
        points = [(t, l) for t, l in _cumulative_tokens(train.log or []) if l is not None]
        alpha = 0.9 if not rep else 0.45
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], color=colors[label], linewidth=1.4, alpha=alpha)
            drawn = True
        ev = r.eval
        curve = [(c.tokens, c.loss) for c in (ev.curve if ev is not None else None) or [] if c.loss is not None]
        if ev is not None and ev.loss is not None and train.tokens:
            curve.append((train.tokens, ev.loss))
        if curve:
            ax.plot([c[0] for c in curve], [c[1] for c in curve], color=colors[label], linestyle="--", marker="o",
                    markersize=5, alpha=alpha)
            drawn = True
    if not drawn:
        empty_figure(ax, "no logged losses (no run succeeded, or the framework logged none)")
    else:
        ax.set_xlabel("tokens seen (cumulative, non-padding)")
        ax.set_ylabel("loss")
        framework_legend(ax, colors, [("train loss (framework)", {"linestyle": "-"}),
                                       ("eval loss (ours)", {"linestyle": "--", "marker": "o"}),
                                       ("later repeats: lighter", {"linestyle": "-", "alpha": 0.4})])
        style_axes(ax)
        ax.grid(True, axis="x", color="#f0f0f0")
    fig.tight_layout()
    return to_data_uri(fig)


def step_throughput(runs: list[Result]) -> str:
    """Tokens/s of every training step (tokens of the step / its wall time), the warm-up steps that the
    throughput figures leave out shaded."""
    ok = [r for r in runs if r.ok and r.train is not None and r.train.log]
    colors = color_map([run_label(r) for r in ok])
    fig, ax = plt.subplots(figsize=(10, 3.6) if ok else (10, 1.4))
    if not ok:
        empty_figure(ax, "no per-step log (no run succeeded)")
        fig.tight_layout()
        return to_data_uri(fig)
    warmups = set()
    for r in sorted(ok, key=by_label_and_repeat):
        train = r.train
        log = train.log
        pts = [(s.get("step"), s["tokens"] / s["time_s"]) for s in log if s.get("time_s") and s.get("tokens")]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colors[run_label(r)], marker="o", markersize=3,
                linewidth=1.2, alpha=0.9 if not r.repeat else 0.45)
        # the steps actually left out (a run shorter than measure_warmup_steps times all its steps)
        steps, timed = train.steps, train.timed_steps
        warmups.add(int(steps - timed) if isinstance(steps, int) and isinstance(timed, int)
                    else int(train.warmup_steps or 0))
    warm = max(warmups) if warmups else 0
    if warm:
        ax.axvspan(0.5, warm + 0.5, color="#999", alpha=0.15, linewidth=0)
        ax.text(0.6, 0.97, f"warm-up: steps 1-{warm}, not timed", transform=ax.get_xaxis_transform(), va="top",
                fontsize=FONT - 1, color="#555")
    ax.set_xlabel("training step")
    ax.set_ylabel("tokens/s of the step")
    ax.set_ylim(bottom=0)
    framework_legend(ax, colors, [("later repeats: lighter", {"linestyle": "-", "alpha": 0.4})])
    style_axes(ax)
    fig.tight_layout()
    return to_data_uri(fig)


def memory_vs_speed(runs: list[Result]) -> str | None:
    """Each framework's median tokens/s against its median training-phase memory peak (whiskers: min-max
    over repeats): the trade-off at a glance, better is down and to the right. None where no run has both
    (a CPU run has no memory peak): the report says so in a line instead of an empty box."""
    from harness.stats import median

    groups = group_by_label(runs)
    speed, memory = COLUMN_BY_KEY["tokens_per_s"], COLUMN_BY_KEY["peak_mem"]
    if not any(values(rs, memory.path) for rs in groups.values()):
        memory = COLUMN_BY_KEY["torch_peak_reserved"]
    pts = {l: (values(rs, speed.path), values(rs, memory.path)) for l, rs in groups.items()}
    pts = {l: (x, y) for l, (x, y) in pts.items() if x and y}
    if not pts:
        return None
    colors = color_map(list(pts))
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for label, (xs, ys) in pts.items():
        mx, my = median(xs), median(ys) / 2**30
        ax.errorbar([mx], [my], xerr=[[mx - min(xs)], [max(xs) - mx]],
                    yerr=[[my - min(ys) / 2**30], [max(ys) / 2**30 - my]], fmt="o", color=colors[label],
                    markersize=8, capsize=3, label=label)
        ax.annotate(label, (mx, my), textcoords="offset points", xytext=(8, 6), fontsize=FONT - 1, color=colors[label])
    ax.set_xlim(0, max(max(x) for x, _ in pts.values()) * 1.25)
    ax.set_ylim(0, max(max(y) for _, y in pts.values()) / 2**30 * 1.25)
    ax.set_xlabel("tokens/s (median of repeats; higher is better)")
    ax.set_ylabel(f"GiB: {memory.label}")
    style_axes(ax)
    ax.grid(True, axis="x", color="#f0f0f0")
    fig.tight_layout()
    return to_data_uri(fig)
