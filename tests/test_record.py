"""The result record's memory headline covers the training phase, not loading or evaluation."""
from __future__ import annotations

from harness.record import _nvml_peak_between


class TimelineSampler:
    def __init__(self, rows):
        self.rows = rows

    def timeline(self):
        return self.rows


def test_nvml_peak_is_taken_inside_the_training_window_above_idle():
    nvml = {"available": True, "per_device": [{"nvml_index": 0, "baseline_used_bytes": 100}]}
    rows = [{"t": 1.0, "device": 0, "used_bytes": 900},   # model load, before training
            {"t": 2.0, "device": 0, "used_bytes": 400},
            {"t": 3.0, "device": 0, "used_bytes": 600},   # training peak
            {"t": 5.0, "device": 0, "used_bytes": 5000}]  # evaluation, after training
    assert _nvml_peak_between(TimelineSampler(rows), nvml, 2.0, 4.0) == 500


def test_no_gpu_or_no_window_gives_none():
    assert _nvml_peak_between(TimelineSampler([]), {"available": False}, 1.0, 2.0) is None
    assert _nvml_peak_between(TimelineSampler([]), {"available": True}, None, 2.0) is None
