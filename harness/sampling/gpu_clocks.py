"""GPU clocks, temperature and the reasons the driver held the clocks down, sampled through NVML.

Why: a GPU-bound step's time is set by the SM clock, and an H200 training a 7B model at batch 16 runs at
its power limit (NVML power readings of 697-700 W in session 3), where the driver lowers the clock from
moment to moment ("SW power cap"). Two repeats of the same job then differ by however much their clocks
differed, which no amount of warm-up removes. Recording the clock per timed step lets a result say
whether a spread between repeats is the GPU's (the clocks differed as much as the speed did) or the
framework's (same clocks, different speed).

Sampled by :class:`harness.sampling.sampler.NvmlSampler`'s thread every ``stride`` ticks (100 ms at
the default 10 ms tick: clocks move on that scale and each read costs NVML calls). Points are decimated
(every other point dropped), never max-merged, so every kept point is a true reading.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

# NVML clocks-event ("throttle") reason bits (nvml.h, nvmlClocksEventReason*).
POWER_CAP_BITS = 0x4 | 0x80          # SW power cap, HW power brake
THERMAL_BITS = 0x20 | 0x40           # SW thermal slowdown, HW thermal slowdown
HW_SLOWDOWN_BIT = 0x8                # HW slowdown (power or thermal, reported by the board)


@dataclass(frozen=True)
class ClockPoint:
    t: float
    device: int
    sm_mhz: int | None
    temperature_c: int | None
    reasons: int | None  # the clocks-event bitmask, None when the driver does not report it


def read_point(nvml: Any, handle: Any, device: int, t: float) -> ClockPoint:
    """One reading; each field None where this driver or GPU does not report it."""
    def attempt(names: tuple[str, ...], *args: int) -> int | None:
        for name in names:  # the newer NVML name first, then the one older bindings have
            try:
                return int(getattr(nvml, name)(handle, *args))
            except Exception:  # noqa: BLE001  (old drivers and bindings, MIG slices, simulated GPUs)
                continue
        return None

    return ClockPoint(t=t, device=device,
                      sm_mhz=attempt(("nvmlDeviceGetClockInfo",), getattr(nvml, "NVML_CLOCK_SM", 1)),
                      temperature_c=attempt(("nvmlDeviceGetTemperature",), getattr(nvml, "NVML_TEMPERATURE_GPU", 0)),
                      reasons=attempt(("nvmlDeviceGetCurrentClocksEventReasons",
                                       "nvmlDeviceGetCurrentClocksThrottleReasons")))


class ClockSeries:
    """The clock readings of a run, bounded to ``max_points`` by decimation."""

    def __init__(self, stride: int = 10, max_points: int = 20000) -> None:
        self.stride = max(1, int(stride))
        self.max_points = max(2, int(max_points))
        self.points: list[ClockPoint] = []
        self._tick = 0
        self._keep_every = 1
        self._kept = 0

    def due(self) -> bool:
        """Whether this sampler tick should read the clocks (every ``stride``-th tick, the first included)."""
        due = self._tick % self.stride == 0
        self._tick += 1
        return due

    def add(self, point: ClockPoint) -> None:
        self._kept += 1
        if self._kept % self._keep_every:
            return
        self.points.append(point)
        if len(self.points) >= self.max_points:
            self.points = self.points[::2]
            self._keep_every *= 2

    def between(self, t0: float, t1: float) -> list[ClockPoint]:
        return [p for p in self.points if t0 <= p.t <= t1]


def window_summary(points: list[ClockPoint]) -> dict[str, Any]:
    """Mean/min/max SM clock, hottest temperature and the share of readings held down by the power
    limit or by temperature, over the readings of one window (all devices)."""
    mhz = [p.sm_mhz for p in points if p.sm_mhz is not None]
    temps = [p.temperature_c for p in points if p.temperature_c is not None]
    reasons = [p.reasons for p in points if p.reasons is not None]

    def share(bits: int) -> float | None:
        return sum(1 for r in reasons if r & bits) / len(reasons) if reasons else None

    return {"samples": len(points),
            "sm_mhz_mean": statistics.fmean(mhz) if mhz else None,
            "sm_mhz_min": min(mhz) if mhz else None, "sm_mhz_max": max(mhz) if mhz else None,
            "temperature_c_max": max(temps) if temps else None,
            # where the window started: a GPU that idled before (another call, a set-up) starts cooler, leaks
            # less, and holds a higher clock at the same power limit
            "temperature_c_start": temps[0] if temps else None,
            "temperature_c_mean": statistics.fmean(temps) if temps else None,
            "power_capped_share": share(POWER_CAP_BITS), "thermal_share": share(THERMAL_BITS | HW_SLOWDOWN_BIT)}


def step_clocks(series: ClockSeries, log: list[dict[str, Any]]) -> list[float | None]:
    """Mean SM clock during each logged step (from its end time ``t_end`` and its duration ``time_s``,
    both on the host's wall clock, which parent and worker share); None where no reading fell inside."""
    out: list[float | None] = []
    for step in log:
        t_end, dur = step.get("t_end"), step.get("time_s")
        if t_end is None or dur is None:
            out.append(None)
            continue
        mhz = [p.sm_mhz for p in series.between(float(t_end) - float(dur), float(t_end)) if p.sm_mhz is not None]
        out.append(statistics.fmean(mhz) if mhz else None)
    return out


def clocks_record(series: ClockSeries | None, log: list[dict[str, Any]], starts_after: int | None,
                  power_limit_w: float | None = None) -> dict[str, Any] | None:
    """The result's ``gpu_clocks`` section: the timed window's summary (the steps after ``starts_after``),
    the mean clock of every step (``per_step_sm_mhz``, aligned with ``train.log``) and the board's
    enforced power limit. None without readings (no NVML, or a driver without clock queries)."""
    if series is None or not series.points or not log:
        return None
    timed = [s for s in log if s.get("step", 0) > int(starts_after or 0) and s.get("t_end") is not None]
    window: list[ClockPoint] = []
    if timed:
        t0 = float(timed[0]["t_end"]) - float(timed[0]["time_s"])
        window = series.between(t0, float(timed[-1]["t_end"]))
    summary = window_summary(window)
    if not summary["samples"]:
        return None
    return {"timed": summary, "per_step_sm_mhz": step_clocks(series, log), "power_limit_w": power_limit_w,
            "source": "nvml"}
