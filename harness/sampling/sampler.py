"""GPU memory, utilisation, power and energy sampled through NVML from the *parent* process.

Why the parent: the number a user needs ("what must my card hold") is device-used memory, which includes
the CUDA context, NCCL buffers and allocator slack that torch's own counters never see, and sampling it
from outside the framework cannot be disturbed by (or disturb) the framework. The parent never imports
torch, so this module only needs ``pynvml`` (package nvidia-ml-py) and, optionally, ``psutil``.

Usage::

    sampler = NvmlSampler()          # devices from CUDA_VISIBLE_DEVICES
    sampler.start()                  # idle baseline first, then the sampling thread
    proc = subprocess.Popen(...); sampler.watch_pids(proc.pid)
    ...
    sampler.stop(); sampler.summary(); sampler.energy_between(t0, t1); sampler.write_timeline(path)

Without NVML (CPU machine, no driver) every method is a no-op and ``summary()`` says why; nothing raises.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from harness.sampling import devices
from harness.sampling.device_stats import DeviceStats
from harness.sampling.energy import EnergyTrace, energy_between, energy_source
from harness.sampling.gpu_clocks import ClockSeries, read_point
from harness.sampling.host_activity import HostActivity
from harness.sampling.neighbours import GpuNeighbours
from harness.sampling.process_tree import WatchedProcesses
from harness.sampling.timeline import BoundedTimeline, max_opt, write_timeline_csv

class NvmlSampler:
    """Samples device memory / utilisation / power / energy and a watched process tree's GPU memory.

    ``device_indices`` are NVML indices; None means the devices CUDA_VISIBLE_DEVICES names (all when it
    is unset). ``interval_s`` is the target sampling period (10 ms by default: short allocation peaks
    last tens of ms). ``max_points`` bounds the stored timeline over all devices; peaks, means and
    energy are tracked from raw samples and stay exact whatever the downsampling.
    """

    def __init__(self, device_indices: list[int] | None = None, interval_s: float = 0.01,
                 max_points: int = 20000, baseline_samples: int = 5) -> None:
        self.interval_s = float(interval_s)
        self.max_points = int(max_points)
        self.baseline_samples = max(1, int(baseline_samples))
        self.available = False
        self.reason: str | None = None
        self._nvml = None
        self._indices: list[int] = []
        self._handles: list[Any] = []
        self._env: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.processes = WatchedProcesses()  # the worker's tree: the GPU memory NVML attributes to it
        self._energy_supported: list[bool] = []
        # What else used the GPUs: other processes on ours (pid -> peak bytes), the host's other GPUs.
        self.host = HostActivity()
        self.neighbours = GpuNeighbours()
        self._power_limit_w: float | None = None
        self._reset_stats()
        try:
            nvml = devices.import_nvml()
            nvml.nvmlInit()
        except Exception as err:  # noqa: BLE001
            self.reason = f"NVML not available: {err}"
            return
        self._nvml = nvml
        try:
            if device_indices is None:
                device_indices = devices.nvml_indices_for_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), nvml)
            self._indices = list(device_indices)
            if not self._indices:
                raise RuntimeError("no visible GPU (CUDA_VISIBLE_DEVICES hides every device)")
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in self._indices]
            self._env = devices.device_facts(nvml, self._indices)
            self._energy_supported = [devices.read_energy(self._nvml, h) is not None for h in self._handles]
            self.neighbours.handles = [(i, nvml.nvmlDeviceGetHandleByIndex(i))
                                       for i in range(int(nvml.nvmlDeviceGetCount())) if i not in self._indices]
        except Exception as err:  # noqa: BLE001
            self.reason = f"NVML device setup failed: {err}"
            self._shutdown()
            return
        self._reset_stats()  # sized for the real device count
        self.available = True

    # ---- state -------------------------------------------------------------------------------------
    def _reset_stats(self) -> None:
        ndev = max(1, len(getattr(self, "_indices", [])))
        self._timelines = [BoundedTimeline(self.max_points // ndev) for _ in range(ndev)]
        self._stats = DeviceStats(ndev)
        self._energy = EnergyTrace(self.max_points)
        self._ticks = 0
        self._intervals: list[float] = []
        self._last_t: float | None = None
        # SM clock, temperature and throttle reasons every ~100 ms (harness/sampling/gpu_clocks.py)
        self.clocks = ClockSeries(stride=max(1, round(0.1 / max(self.interval_s, 1e-3))), max_points=self.max_points)

    def _shutdown(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None

    # ---- reading -----------------------------------------------------------------------------------
    def _tick(self) -> None:
        now = time.time()
        self.processes.refresh(now)
        nvml = self._nvml
        energy_sum: float | None = 0.0
        power_sum: float | None = 0.0
        with self._lock:
            for k, handle in enumerate(self._handles):
                used = devices.read_used(nvml, handle)
                try:
                    util = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                except Exception:  # noqa: BLE001
                    util = None
                try:
                    power = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
                except Exception:  # noqa: BLE001
                    power = None
                energy = devices.read_energy(nvml, handle) if self._energy_supported[k] else None
                proc = self.processes.read_bytes(nvml, handle, self._indices[k], self.neighbours)
                self._timelines[k].add((now, used, util, power, proc))
                self._stats.add(k, used, util, power, proc)
                energy_sum = None if energy is None or energy_sum is None else energy_sum + energy
                power_sum = None if power is None or power_sum is None else power_sum + power
            self._stats.max_total_power = max_opt(self._stats.max_total_power, power_sum)
            self._energy.record(now, energy_sum, power_sum)
            if self._last_t is not None and len(self._intervals) < 100000:
                self._intervals.append(now - self._last_t)
            self._last_t = now
            self._ticks += 1
            if self.clocks.due():
                for k, handle in enumerate(self._handles):
                    self.clocks.add(read_point(nvml, handle, self._indices[k], now))
            self.neighbours.scan(nvml, now)

    # ---- lifecycle ---------------------------------------------------------------------------------
    def take_baseline(self) -> list[int | None]:
        """Idle device-used memory: the max of a few samples, so a momentary dip is not mistaken for idle.
        Called by :meth:`start`; take it *before* the child starts, or the baseline hides the child."""
        if not self.available:
            return []
        base: list[int | None] = [None] * len(self._handles)
        for i in range(self.baseline_samples):
            for k, handle in enumerate(self._handles):
                base[k] = max_opt(base[k], devices.read_used(self._nvml, handle))
            if i + 1 < self.baseline_samples:
                time.sleep(self.interval_s)
        for k, handle in enumerate(self._handles):
            try:
                self._stats.total[k] = int(self._nvml.nvmlDeviceGetMemoryInfo(handle).total)
            except Exception:  # noqa: BLE001
                pass
        self._stats.baseline = base
        self._power_limit_w = devices.power_limit_w(self._nvml, self._handles)
        return base

    def start(self) -> "NvmlSampler":
        """Take the idle baseline, then start the background sampling thread (without NVML, only the
        host's CPU activity is sampled)."""
        self.host.start()
        if not self.available or self._thread is not None:
            return self
        self._reset_stats()
        self.take_baseline()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nvml-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # noqa: BLE001  (a sampler must never take the run down)
                pass
            next_t += self.interval_s
            delay = next_t - time.monotonic()
            if delay < 0:  # fell behind (slow NVML call): do not try to catch up with a burst
                next_t = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    def stop(self) -> None:
        """Stop sampling (one last sample is taken so the end of the run is covered) and release NVML."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
            try:
                self._tick()
            except Exception:  # noqa: BLE001
                pass
        self.host.stop()
        self._shutdown()

    def __enter__(self) -> "NvmlSampler":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def watch_pids(self, root_pid: int) -> None:
        """Also record the GPU memory NVML attributes to ``root_pid`` and its descendants (the worker and
        anything it spawns, e.g. dataloader or torchrun ranks). Note: inside a container NVML may report
        host PIDs, which then never match; the summary says so instead of reporting 0."""
        self.processes.watch(root_pid)
        self.host.watch(root_pid)

    # ---- results -----------------------------------------------------------------------------------
    def timeline(self) -> list[dict[str, Any]]:
        """The stored (possibly downsampled) points, one dict per device and time, ordered by time."""
        rows = []
        with self._lock:
            for k, line in enumerate(self._timelines[: len(self._indices)]):
                for t, used, util, power, proc in line.all():
                    rows.append({"t": t, "device": self._indices[k], "used_bytes": used, "util": util,
                                 "power_w": power, "process_bytes": proc})
        rows.sort(key=lambda r: (r["t"], r["device"]))
        return rows

    def write_timeline(self, path: str | Path) -> None:
        """memory_timeline.csv (harness/sampling/timeline.py); empty but with its header without NVML."""
        write_timeline_csv(path, self.timeline())

    def power_limit_w(self) -> float | None:
        """The sampled boards' enforced power limit in watts (the highest, when they differ: each board is
        capped on its own), read when sampling started (NVML is released at stop), or None."""
        return self._power_limit_w

    def energy_source(self) -> str | None:
        """'counter', 'power_integration' or None (harness/sampling/energy.py)."""
        if not self.available:
            return None
        with self._lock:
            return energy_source(self._energy_supported, list(self._energy.points))

    def energy_between(self, t0: float, t1: float) -> float | None:
        """Joules used by the sampled devices between unix times t0 and t1 (e.g. the child's train_start
        and train_end); None when unavailable or the window is not covered by samples."""
        if not self.available:
            return None
        with self._lock:
            points = list(self._energy.points)
        return energy_between(points, self.energy_source(), t0, t1, slack_s=self.interval_s * 2)

    def summary(self) -> dict[str, Any]:
        """Everything a result needs (see harness/results/load.py ``memory`` / ``env``); never raises.

        peak_used_bytes = max over devices of (device-used peak - that device's idle baseline): the extra
        memory the run needed on its busiest card. baseline_used_bytes is that device's baseline.
        max_power_w is the peak of the power summed over the sampled devices.
        """
        if not self.available:
            return {"available": False, "reason": self.reason, "gpu_name": None, "gpu_count": 0,
                    "driver": None, "cuda_driver_version": None, "baseline_used_bytes": None,
                    "peak_used_bytes": None, "peak_process_bytes": None, "mean_util_pct": None,
                    "max_power_w": None, "samples": 0, "interval_s": None, "energy_source": None,
                    "per_device": [], "host": self.host_summary()}
        with self._lock:
            per_device = self._stats.per_device(self._indices, self._env.get("gpu_names", []), self._energy_supported)
            interval = statistics.median(self._intervals) if self._intervals else None
            ticks = self._ticks
            mean_util, max_power = self._stats.mean_util(), self._stats.max_total_power
        withpeak = [d for d in per_device if d["peak_used_bytes"] is not None]
        top = max(withpeak, key=lambda d: d["peak_used_bytes"]) if withpeak else None
        procs = [d["peak_process_bytes"] for d in per_device if d["peak_process_bytes"] is not None]
        peak_proc, process_note = self.processes.peak(procs)
        return {"available": True, "reason": None, **self._env, "device_indices": list(self._indices),
                "baseline_used_bytes": top["baseline_used_bytes"] if top else None,
                "peak_used_bytes": top["peak_used_bytes"] if top else None,
                "peak_process_bytes": peak_proc, "process_note": process_note,
                "mean_util_pct": mean_util, "max_power_w": max_power, "samples": ticks,
                "interval_s": interval, "target_interval_s": self.interval_s,
                "energy_source": self.energy_source(), "per_device": per_device, "host": self.host_summary()}

    def host_summary(self) -> dict[str, Any]:
        """CPU activity of the host (HostActivity) plus what NVML saw beside the run: other processes on
        its GPUs (only when NVML's pids are ours to compare: same PID namespace) and busy other GPUs."""
        summary = self.host.summary()
        with self._lock:
            foreign, neighbours = self.neighbours.report()
        if not self.available:
            summary["gpu_neighbours"] = "NVML not available"
        elif self.processes.unmatched:
            summary["gpu_neighbours"] = "NVML's pids are not this host's (another PID namespace): not attributable"
            foreign = []
        else:
            summary["gpu_neighbours"] = "checked"
        summary["other_gpu_processes"] = foreign
        summary["other_busy_gpus"] = neighbours
        return summary
