"""Per-device figures kept from every raw sample (so they stay exact whatever the timeline's downsampling):
idle baseline, peak device-used and process memory, mean utilisation, peak power."""
from __future__ import annotations

from typing import Any

from harness.sampling.timeline import max_opt


class DeviceStats:
    def __init__(self, ndev: int) -> None:
        self.baseline: list[int | None] = [None] * ndev
        self.total: list[int | None] = [None] * ndev
        self._peak_used: list[int | None] = [None] * ndev
        self._peak_proc: list[int | None] = [None] * ndev
        self._util_sum = [0.0] * ndev
        self._util_n = [0] * ndev
        self._max_power: list[float | None] = [None] * ndev
        self.max_total_power: float | None = None  # the peak of the power summed over the devices

    def add(self, k: int, used: int | None, util: int | None, power: float | None, proc: int | None) -> None:
        self._peak_used[k] = max_opt(self._peak_used[k], used)
        self._peak_proc[k] = max_opt(self._peak_proc[k], proc)
        self._max_power[k] = max_opt(self._max_power[k], power)
        if util is not None:
            self._util_sum[k] += util
            self._util_n[k] += 1

    def mean_util(self) -> float | None:
        n = sum(self._util_n)
        return sum(self._util_sum) / n if n else None

    def per_device(self, indices: list[int], names: list[Any], energy_counter: list[bool]) -> list[dict[str, Any]]:
        """One entry per device; peak_used_bytes is above that device's idle baseline (the extra memory the
        run needed on it), peak_used_raw_bytes the device-used peak itself."""
        out = []
        for k, idx in enumerate(indices):
            base, peak = self.baseline[k], self._peak_used[k]
            out.append({
                "nvml_index": idx, "name": names[k] if k < len(names) else None,
                "total_bytes": self.total[k], "baseline_used_bytes": base, "peak_used_raw_bytes": peak,
                "peak_used_bytes": peak - base if peak is not None and base is not None else None,
                "peak_process_bytes": self._peak_proc[k],
                "mean_util_pct": self._util_sum[k] / self._util_n[k] if self._util_n[k] else None,
                "max_power_w": self._max_power[k], "energy_counter": energy_counter[k]})
        return out
