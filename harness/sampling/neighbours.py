"""What else used the GPUs while the run did: other processes on its devices (pid -> peak bytes) and the
host's other GPUs that were busy. Disclosed in the report, never subtracted from the measurement: another
sweep beside ours shares the host's CPUs, PCIe and power budget even when it never touches our card."""
from __future__ import annotations

from typing import Any

from harness.sampling.process_tree import process_name
from harness.sampling.timeline import max_opt

NEIGHBOUR_SCAN_S = 1.0  # the host's other GPUs are looked at this often (disclosure, not measurement)


class GpuNeighbours:
    """Filled from the sampler's thread (under its lock); ``handles``: (NVML index, handle) of the host's
    GPUs that are not this run's."""

    def __init__(self) -> None:
        self.foreign: dict[tuple[int, int], dict[str, Any]] = {}
        self.handles: list[tuple[int, Any]] = []
        self.busy: dict[int, dict[str, Any]] = {}
        self._scanned = 0.0

    def knows(self, nvml_index: int, pid: int) -> bool:
        return (nvml_index, pid) in self.foreign

    def note_foreign(self, nvml_index: int, pid: int, used: int | None) -> None:
        entry = self.foreign.get((nvml_index, pid))
        if entry is None:
            entry = self.foreign[(nvml_index, pid)] = {"nvml_index": nvml_index, "pid": pid,
                                                       "name": process_name(pid), "used_bytes": None}
        entry["used_bytes"] = max_opt(entry["used_bytes"], None if used is None else int(used))

    def scan(self, nvml: Any, now: float) -> None:
        """Utilisation and process count of the host's other GPUs, at most every NEIGHBOUR_SCAN_S."""
        if now - self._scanned < NEIGHBOUR_SCAN_S or not self.handles:
            return
        self._scanned = now
        for index, handle in self.handles:
            try:
                util = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                procs = len(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
            except Exception:  # noqa: BLE001
                continue
            entry = self.busy.setdefault(index, {"nvml_index": index, "max_util_pct": 0, "processes": 0})
            entry["max_util_pct"] = max(entry["max_util_pct"], util)
            entry["processes"] = max(entry["processes"], procs)

    def report(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(other processes on our GPUs, the host's other GPUs that were busy), as copies."""
        foreign = [dict(v) for v in self.foreign.values()]
        busy = [dict(v) for v in self.busy.values() if v["max_util_pct"] > 0 or v["processes"]]
        return foreign, busy
