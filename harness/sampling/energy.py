"""Energy of the sampled devices over a window (e.g. train_start..train_end): NVML's total-energy counter
when every device has one, else sampled power integrated (trapezoid). The trace is decimated, never
max-merged, so every kept point is a true reading and interpolation between them stays unbiased."""
from __future__ import annotations

from typing import Iterable


class EnergyTrace:
    """(t, summed energy counter in mJ or None, summed power in W or None) per tick, at most max_points
    (when full, every other point is dropped and from then on only every stride-th tick is kept)."""

    def __init__(self, max_points: int) -> None:
        self.max_points = max(2, int(max_points))
        self.points: list[tuple[float, float | None, float | None]] = []
        self._stride = 1
        self._skip = 0

    def record(self, t: float, energy: float | None, power: float | None) -> None:
        self._skip += 1
        if self._skip < self._stride:
            return
        self._skip = 0
        self.points.append((t, energy, power))
        if len(self.points) >= self.max_points:
            self.points = self.points[::2]
            self._stride *= 2


def energy_source(counters: list[bool], points: list[tuple[float, float | None, float | None]]) -> str | None:
    """'counter' (NVML total-energy counter on every device), 'power_integration' (trapezoid over
    sampled power, when any device lacks the counter) or None (neither readable)."""
    if counters and all(counters):
        return "counter"
    has_power = any(p is not None for _, _, p in points)
    return "power_integration" if has_power or not points else None


def energy_between(points: list[tuple[float, float | None, float | None]], source: str | None, t0: float,
                   t1: float, slack_s: float) -> float | None:
    """Joules between unix times t0 and t1: counter readings linearly interpolated at t0 and t1, or power
    integrated. None when the window is empty or not covered by samples (within slack_s)."""
    if t1 <= t0:
        return None
    if source == "counter":
        pts = [(t, e) for t, e, _ in points if e is not None]
        if len(pts) < 2 or t0 < pts[0][0] - slack_s or t1 > pts[-1][0] + slack_s:
            return None
        return (interpolate(pts, t1) - interpolate(pts, t0)) / 1000.0
    if source == "power_integration":
        pts = [(t, p) for t, _, p in points if p is not None]
        if len(pts) < 2 or t0 < pts[0][0] - slack_s or t1 > pts[-1][0] + slack_s:
            return None
        inner = [(t, p) for t, p in pts if t0 < t < t1]
        curve = [(t0, interpolate(pts, t0))] + inner + [(t1, interpolate(pts, t1))]
        return sum((b[0] - a[0]) * (a[1] + b[1]) / 2.0 for a, b in zip(curve, curve[1:]))
    return None


def interpolate(points: Iterable[tuple[float, float]], t: float) -> float:
    """Linear interpolation of sorted (t, value) points at t, clamped to the ends."""
    pts = list(points)
    if t <= pts[0][0]:
        return pts[0][1]
    if t >= pts[-1][0]:
        return pts[-1][1]
    lo, hi = 0, len(pts) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pts[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (ta, va), (tb, vb) = pts[lo], pts[hi]
    return va + (vb - va) * (t - ta) / (tb - ta) if tb > ta else va
