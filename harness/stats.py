"""Small, dependency-free statistics for repeated measurements.

Report and compare both need the same two answers: "what is the typical value and how much does it
wander" (:func:`summarize`) and "is this difference bigger than the wandering" (:func:`difference_is_noise`).
Keeping them here means the report never calls a difference real that compare calls noise, or the reverse.
"""
from __future__ import annotations

import math
from typing import Sequence


def _clean(values: Sequence[float | None]) -> list[float]:
    """Drop None and NaN: a failed repeat has no value, and must not poison the median."""
    out = []
    for v in values:
        if v is None:
            continue
        f = float(v)
        if not math.isnan(f):
            out.append(f)
    return out


def median(values: Sequence[float]) -> float:
    """Median (mean of the middle two for even n); raises on an empty list."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def percentile(values: Sequence[float], q: float) -> float:
    """Percentile ``q`` in [0, 100] with linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summarize(values: Sequence[float | None]) -> dict:
    """n, median, mean, min, max, std (sample, n-1; 0.0 for n == 1) and cv = std / |mean|.

    None / NaN entries (failed repeats) are ignored; with nothing left every statistic is None and n is 0,
    so a report can still print the row. The median is the headline because a single slow repeat
    (a noisy neighbour, a cold cache) should not move it.
    """
    xs = _clean(values)
    n = len(xs)
    if n == 0:
        return {"n": 0, "median": None, "mean": None, "min": None, "max": None, "std": None, "cv": None}
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    cv = std / abs(mean) if mean != 0 else None
    return {"n": n, "median": median(xs), "mean": mean, "min": min(xs), "max": max(xs), "std": std, "cv": cv}


def difference_is_noise(a: Sequence[float | None], b: Sequence[float | None]) -> bool:
    """True when the difference between two sets of repeats is within their own spread.

    Definition (deliberately simple and conservative, in the spirit of asv): let
    ``spread = max(max(a) - min(a), max(b) - min(b))``; the difference is noise when
    ``|median(a) - median(b)| <= spread``. If either side has fewer than two values its spread is unknown,
    and the difference is then *never* called noise (a single run cannot show that it is stable; the
    threshold check in compare still applies). Empty sides (all repeats failed) are not noise either:
    there is nothing to compare, and callers should report that separately.
    """
    xs, ys = _clean(a), _clean(b)
    if len(xs) < 2 or len(ys) < 2:
        return False
    spread = max(max(xs) - min(xs), max(ys) - min(ys))
    return abs(median(xs) - median(ys)) <= spread


def steady_line(work: list[float], times: list[float]) -> tuple[float, float] | None:
    """Theil-Sen fit ``time = fixed + per_token * work``: slope the median of pairwise slopes, intercept
    the median residual. Robust to a few outliers (a recompile in the window), unlike least squares.
    Steps of equal work give no slope: the line is then flat at their median time."""
    if not times:
        return None
    slopes = [(times[j] - times[i]) / (work[j] - work[i]) for i in range(len(work))
              for j in range(i + 1, len(work)) if work[j] != work[i]]
    per_token = max(0.0, median(slopes)) if slopes else 0.0
    fixed = median([t - per_token * w for w, t in zip(work, times)])
    return fixed, per_token


def relative_spread(values: Sequence[float | None]) -> float | None:
    """(max - min) / median of the values given (None skipped); None with fewer than two or a zero median."""
    xs = _clean(values)
    if len(xs) < 2 or not median(xs):
        return None
    return (max(xs) - min(xs)) / median(xs)
