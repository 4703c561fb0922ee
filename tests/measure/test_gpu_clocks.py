"""GPU clock readings (harness/sampling/gpu_clocks.py): known answers on hand-made readings, and the
sampler reading them through a fake NVML that reports known clocks."""
from __future__ import annotations

import pytest

from harness.sampling import devices, gpu_clocks, sampler as nvml_sampler
from harness.sampling.gpu_clocks import ClockPoint, ClockSeries, clocks_record, step_clocks, window_summary
from tests.helpers.fake_nvml import FakeNvml


def _series(points: list[tuple[float, int, int, int]]) -> ClockSeries:
    series = ClockSeries(stride=1)
    for t, mhz, temp, reasons in points:
        series.add(ClockPoint(t=t, device=0, sm_mhz=mhz, temperature_c=temp, reasons=reasons))
    return series


def test_window_summary_known_answer():
    points = _series([(0.0, 1980, 50, 0), (0.1, 1800, 60, gpu_clocks.POWER_CAP_BITS & 0x4),
                      (0.2, 1700, 70, 0x20), (0.3, 1500, 80, 0x4 | 0x20)]).points
    s = window_summary(points)
    assert s["samples"] == 4 and s["sm_mhz_mean"] == pytest.approx(1745.0)
    assert (s["sm_mhz_min"], s["sm_mhz_max"], s["temperature_c_max"]) == (1500, 1980, 80)
    assert s["temperature_c_start"] == 50 and s["temperature_c_mean"] == pytest.approx(65.0)
    assert s["power_capped_share"] == pytest.approx(0.5) and s["thermal_share"] == pytest.approx(0.5)
    empty = window_summary([])
    assert empty["samples"] == 0 and empty["sm_mhz_mean"] is None and empty["power_capped_share"] is None


def test_each_step_gets_the_mean_clock_of_its_own_interval():
    series = _series([(t / 10, 2000 if t < 10 else 1000, 50, 0) for t in range(20)])  # 2 GHz for 1 s, then 1 GHz
    log = [{"step": 1, "t_end": 0.95, "time_s": 0.9}, {"step": 2, "t_end": 1.95, "time_s": 0.9},
           {"step": 3, "t_end": 5.0, "time_s": 0.5}, {"step": 4}]
    assert step_clocks(series, log) == [2000.0, 1000.0, None, None]


def test_clocks_record_covers_only_the_timed_steps():
    series = _series([(t / 10, 2000 if t < 10 else 1000, 40 + t, 0x4 if t >= 10 else 0) for t in range(20)])
    log = [{"step": 1, "t_end": 0.95, "time_s": 0.9}, {"step": 2, "t_end": 1.95, "time_s": 0.9}]
    rec = clocks_record(series, log, starts_after=1, power_limit_w=700.0)
    assert rec["timed"]["sm_mhz_mean"] == 1000.0 and rec["timed"]["power_capped_share"] == 1.0
    assert rec["per_step_sm_mhz"] == [2000.0, 1000.0] and rec["power_limit_w"] == 700.0
    assert clocks_record(ClockSeries(), log, 1) is None and clocks_record(series, [], 1) is None


def test_series_stays_bounded_and_keeps_true_readings():
    series = ClockSeries(stride=3, max_points=100)
    due = [series.due() for _ in range(9)]
    assert due == [True, False, False] * 3
    for i in range(10_000):
        series.add(ClockPoint(t=float(i), device=0, sm_mhz=i, temperature_c=None, reasons=None))
    assert len(series.points) <= 100
    assert all(p.sm_mhz == int(p.t) for p in series.points)  # decimated, never merged


def test_sampler_reads_clocks_every_stride_ticks(monkeypatch):
    monkeypatch.setattr(devices, "import_nvml", lambda: FakeNvml(devices=1, power_mw=700_000, clocks=True))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    sampler = nvml_sampler.NvmlSampler(interval_s=0.01, baseline_samples=1)
    sampler.take_baseline()
    for _ in range(100):
        sampler._tick()
    points = sampler.clocks.points
    assert len(points) == 10  # one reading per 100 ms of 10 ms ticks
    assert {(p.sm_mhz, p.temperature_c, p.reasons) for p in points} == {(1755, 61, 0x4)}
    assert sampler.power_limit_w() == 700.0
