"""The "Why they differ" section's figure: one horizontal stacked bar per row (harness/report/why.py)."""
from __future__ import annotations

CATEGORY_COLORS = ("#4c72b0", "#55a868", "#c44e52", "#dd8452", "#8172b3", "#bbbbbb", "#555555", "#937860", "#da8bc3",
                   "#dddddd")


def stacked(rows: list[tuple[str, dict[str, float]]], keys: tuple[str, ...], labels: dict[str, str],
            unit: str, title: str) -> str:
    """A data URI of the bars: each row's parts in ``keys`` order (a part no row has is left out of the legend),
    its total at the bar's end."""
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
