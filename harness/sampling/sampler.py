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

import csv
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Iterable

from harness.sampling.gpu_clocks import ClockSeries, read_point
from harness.sampling.host_activity import HostActivity

# One timeline point of one device: (t, used_bytes, util_pct, power_w, process_bytes); None = not read.
Sample = tuple[float, "int | None", "int | None", "float | None", "int | None"]

_PID_REFRESH_S = 0.5  # re-walk the watched process tree this often (enumerating /proc costs ~ms)
_NEIGHBOUR_SCAN_S = 1.0  # the host's other GPUs are looked at this often (disclosure, not measurement)


def _import_nvml():
    import pynvml  # noqa: PLC0415  (optional dependency; absent on CPU-only installs)

    return pynvml


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _max_opt(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return a if a >= b else b


def merge_max(a: Sample, b: Sample) -> Sample:
    """Merge two consecutive points into one: the earlier time, the max of every value (None-aware)."""
    return (a[0],) + tuple(_max_opt(x, y) for x, y in zip(a[1:], b[1:]))  # type: ignore[return-value]


def downsample_max_pairs(samples: list[Sample]) -> list[Sample]:
    """Halve a timeline by keeping the max of each consecutive pair, so short memory peaks survive
    (plain decimation would drop every other point and could drop the peak). An odd last point is kept."""
    out = [merge_max(samples[i], samples[i + 1]) for i in range(0, len(samples) - 1, 2)]
    if len(samples) % 2:
        out.append(samples[-1])
    return out


class _BoundedTimeline:
    """A timeline that never grows beyond ``cap`` points: when full it halves itself (pair max) and from
    then on folds ``stride`` raw samples into each point, so resolution stays uniform over the run."""

    def __init__(self, cap: int) -> None:
        self.cap = max(2, int(cap))
        self.points: list[Sample] = []
        self.stride = 1
        self._pending: Sample | None = None
        self._pending_n = 0

    def add(self, sample: Sample) -> None:
        self._pending = sample if self._pending is None else merge_max(self._pending, sample)
        self._pending_n += 1
        if self._pending_n >= self.stride:
            self.points.append(self._pending)
            self._pending, self._pending_n = None, 0
            if len(self.points) >= self.cap:
                self.points = downsample_max_pairs(self.points)
                self.stride *= 2

    def all(self) -> list[Sample]:
        return self.points + ([self._pending] if self._pending is not None else [])


def nvml_indices_for_visible(spec: str | None, nvml=None) -> list[int]:
    """NVML indices of the devices a CUDA process would see for ``CUDA_VISIBLE_DEVICES=spec``.

    Entries may be integers, ``GPU-<uuid>`` (or a unique prefix of one, as CUDA accepts) or
    ``MIG-<uuid>`` (mapped to its parent GPU: NVML reports memory per physical device). Like CUDA, the
    list stops at the first entry that matches nothing. None means "all devices". Integer entries are
    CUDA ordinals; they equal NVML's PCI-bus order when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or when all
    GPUs are the same model (CUDA's FASTEST_FIRST then breaks ties by bus id), which is our case;
    on a mixed box set CUDA_DEVICE_ORDER=PCI_BUS_ID or pass UUIDs.
    """
    nvml = nvml or _import_nvml()
    count = nvml.nvmlDeviceGetCount()
    if spec is None:
        return list(range(count))
    uuids = [_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
    out: list[int] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            break
        index: int | None = None
        if entry.lstrip("-").isdigit():
            i = int(entry)
            index = i if 0 <= i < count else None
        elif entry.startswith("MIG-"):
            try:
                mig = nvml.nvmlDeviceGetHandleByUUID(entry.encode() if isinstance(uuids[0], bytes) else entry)
                parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
                index = uuids.index(_text(nvml.nvmlDeviceGetUUID(parent)))
            except Exception:  # noqa: BLE001  (unknown MIG id: CUDA would stop here too)
                index = None
        else:
            key = entry if entry.startswith("GPU-") else "GPU-" + entry
            hits = [i for i, u in enumerate(uuids) if u.startswith(key)]
            index = hits[0] if len(hits) == 1 else None
        if index is None:
            break
        if index not in out:
            out.append(index)
    return out


def _children_pids(root: int) -> set[int]:
    """The root pid and all its descendants: psutil when installed, else a /proc walk."""
    try:
        import psutil  # noqa: PLC0415

        proc = psutil.Process(root)
        return {root} | {c.pid for c in proc.children(recursive=True)}
    except ImportError:
        pass
    except Exception:  # noqa: BLE001  (process gone)
        return {root}
    parents: dict[int, list[int]] = {}
    try:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as fh:
                    stat = fh.read().decode(errors="replace")
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(name))
    except OSError:
        return {root}
    found, todo = {root}, [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _environment(nvml, indices: list[int]) -> dict[str, Any]:
    names = [_text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))) for i in indices]
    try:
        cuda = nvml.nvmlSystemGetCudaDriverVersion()
        cuda_text = f"{cuda // 1000}.{(cuda % 1000) // 10}"
    except Exception:  # noqa: BLE001
        cuda_text = None
    try:
        driver = _text(nvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001
        driver = None
    return {"gpu_name": names[0] if names else None, "gpu_names": names, "gpu_count": len(indices),
            "driver": driver, "cuda_driver_version": cuda_text}


def gpu_environment() -> dict[str, Any]:
    """gpu_name, gpu_count, driver, cuda_driver_version of the devices CUDA_VISIBLE_DEVICES names;
    ``{'gpu_count': 0, 'reason': ...}`` when NVML is unavailable. Never raises."""
    try:
        nvml = _import_nvml()
        nvml.nvmlInit()
    except Exception as err:  # noqa: BLE001
        return {"gpu_count": 0, "reason": f"NVML not available: {err}"}
    try:
        return _environment(nvml, nvml_indices_for_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), nvml))
    except Exception as err:  # noqa: BLE001
        return {"gpu_count": 0, "reason": f"NVML query failed: {err}"}
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def cuda_available() -> bool:
    """Whether at least one CUDA device is visible, asked of NVML so the parent needs no torch
    (used to refuse 4-bit quantisation, which needs CUDA, before spawning anything)."""
    return gpu_environment().get("gpu_count", 0) > 0


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
        self._watch_root: int | None = None
        self._watch_pids: set[int] = set()
        self._watch_refreshed = 0.0
        self._energy_supported: list[bool] = []
        self._process_supported = True
        self._process_matched = False
        # What else used the GPUs: other processes on ours (pid -> peak bytes), the host's other GPUs.
        self.host = HostActivity()
        self._foreign: dict[tuple[int, int], dict[str, Any]] = {}
        self._neighbour_handles: list[tuple[int, Any]] = []
        self._neighbours: dict[int, dict[str, Any]] = {}
        self._neighbour_scanned = 0.0
        self._power_limit_w: float | None = None
        self._reset_stats()
        try:
            nvml = _import_nvml()
            nvml.nvmlInit()
        except Exception as err:  # noqa: BLE001
            self.reason = f"NVML not available: {err}"
            return
        self._nvml = nvml
        try:
            if device_indices is None:
                device_indices = nvml_indices_for_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), nvml)
            self._indices = list(device_indices)
            if not self._indices:
                raise RuntimeError("no visible GPU (CUDA_VISIBLE_DEVICES hides every device)")
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in self._indices]
            self._env = _environment(nvml, self._indices)
            self._energy_supported = [self._read_energy(h) is not None for h in self._handles]
            self._neighbour_handles = [(i, nvml.nvmlDeviceGetHandleByIndex(i))
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
        self._timelines = [_BoundedTimeline(self.max_points // ndev) for _ in range(ndev)]
        self._baseline: list[int | None] = [None] * ndev
        self._peak_used: list[int | None] = [None] * ndev
        self._peak_proc: list[int | None] = [None] * ndev
        self._util_sum = [0.0] * ndev
        self._util_n = [0] * ndev
        self._max_power: list[float | None] = [None] * ndev
        self._max_total_power: float | None = None
        self._total: list[int | None] = [None] * ndev
        # (t, summed energy counter in mJ or None, summed power in W or None): decimated, never max-merged,
        # so every kept point is a true reading and interpolation between them stays unbiased.
        self._energy: list[tuple[float, float | None, float | None]] = []
        self._energy_stride = 1
        self._energy_skip = 0
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
    def _read_energy(self, handle) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # noqa: BLE001  (pre-Volta, vGPU, MIG: unsupported)
            return None

    def _read_process_bytes(self, handle, nvml_index: int) -> int | None:
        if not self._watch_pids or not self._process_supported:
            return None
        try:
            procs = self._nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception:  # noqa: BLE001
            self._process_supported = False
            return None
        total, seen, attributable = 0, False, True
        for proc in procs:
            used = getattr(proc, "usedGpuMemory", None)
            if proc.pid not in self._watch_pids and (nvml_index, proc.pid) not in self._foreign \
                    and self._watch_root is not None:
                # A rank or helper the child spawned since the last refresh is ours, not a neighbour
                # (checked once per new pid: a walk of the tree at every 10 ms tick would cost too much).
                self._watch_pids = _children_pids(self._watch_root)
            if proc.pid in self._watch_pids:
                seen = True
                if used is None:  # driver cannot attribute memory (e.g. Windows WDDM, some containers)
                    attributable = False
                else:
                    total += int(used)
            else:
                self._note_foreign(nvml_index, int(proc.pid), used)
        if seen:
            self._process_matched = True
        return total if attributable else None

    def _note_foreign(self, nvml_index: int, pid: int, used: int | None) -> None:
        entry = self._foreign.get((nvml_index, pid))
        if entry is None:
            entry = self._foreign[(nvml_index, pid)] = {"nvml_index": nvml_index, "pid": pid,
                                                        "name": _process_name(pid), "used_bytes": None}
        entry["used_bytes"] = _max_opt(entry["used_bytes"], None if used is None else int(used))

    def _scan_neighbours(self, now: float) -> None:
        """The host's GPUs that are not this run's: busy ones are disclosed (another sweep beside ours shares
        the host's CPUs, PCIe and power budget even when it never touches our card)."""
        if now - self._neighbour_scanned < _NEIGHBOUR_SCAN_S or not self._neighbour_handles:
            return
        self._neighbour_scanned = now
        for index, handle in self._neighbour_handles:
            try:
                util = int(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                procs = len(self._nvml.nvmlDeviceGetComputeRunningProcesses(handle))
            except Exception:  # noqa: BLE001
                continue
            entry = self._neighbours.setdefault(index, {"nvml_index": index, "max_util_pct": 0, "processes": 0})
            entry["max_util_pct"] = max(entry["max_util_pct"], util)
            entry["processes"] = max(entry["processes"], procs)

    def _read_used(self, handle) -> int | None:
        try:
            return int(self._nvml.nvmlDeviceGetMemoryInfo(handle).used)
        except Exception:  # noqa: BLE001
            return None

    def _tick(self) -> None:
        now = time.time()
        if self._watch_root is not None and now - self._watch_refreshed >= _PID_REFRESH_S:
            self._watch_pids = _children_pids(self._watch_root)
            self._watch_refreshed = now
        nvml = self._nvml
        energy_sum: float | None = 0.0
        power_sum: float | None = 0.0
        with self._lock:
            for k, handle in enumerate(self._handles):
                used = self._read_used(handle)
                try:
                    util = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                except Exception:  # noqa: BLE001
                    util = None
                try:
                    power = nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
                except Exception:  # noqa: BLE001
                    power = None
                energy = self._read_energy(handle) if self._energy_supported[k] else None
                proc = self._read_process_bytes(handle, self._indices[k])
                self._timelines[k].add((now, used, util, power, proc))
                self._peak_used[k] = _max_opt(self._peak_used[k], used)
                self._peak_proc[k] = _max_opt(self._peak_proc[k], proc)
                self._max_power[k] = _max_opt(self._max_power[k], power)
                if util is not None:
                    self._util_sum[k] += util
                    self._util_n[k] += 1
                energy_sum = None if energy is None or energy_sum is None else energy_sum + energy
                power_sum = None if power is None or power_sum is None else power_sum + power
            self._max_total_power = _max_opt(self._max_total_power, power_sum)
            self._record_energy(now, energy_sum, power_sum)
            if self._last_t is not None and len(self._intervals) < 100000:
                self._intervals.append(now - self._last_t)
            self._last_t = now
            self._ticks += 1
            if self.clocks.due():
                for k, handle in enumerate(self._handles):
                    self.clocks.add(read_point(nvml, handle, self._indices[k], now))
            self._scan_neighbours(now)

    def _record_energy(self, t: float, energy: float | None, power: float | None) -> None:
        self._energy_skip += 1
        if self._energy_skip < self._energy_stride:
            return
        self._energy_skip = 0
        self._energy.append((t, energy, power))
        if len(self._energy) >= self.max_points:
            self._energy = self._energy[::2]
            self._energy_stride *= 2

    # ---- lifecycle ---------------------------------------------------------------------------------
    def take_baseline(self) -> list[int | None]:
        """Idle device-used memory: the max of a few samples, so a momentary dip is not mistaken for idle.
        Called by :meth:`start`; take it *before* the child starts, or the baseline hides the child."""
        if not self.available:
            return []
        base: list[int | None] = [None] * len(self._handles)
        for i in range(self.baseline_samples):
            for k, handle in enumerate(self._handles):
                base[k] = _max_opt(base[k], self._read_used(handle))
            if i + 1 < self.baseline_samples:
                time.sleep(self.interval_s)
        for k, handle in enumerate(self._handles):
            try:
                self._total[k] = int(self._nvml.nvmlDeviceGetMemoryInfo(handle).total)
            except Exception:  # noqa: BLE001
                pass
        self._baseline = base
        self._power_limit_w = self._read_power_limit()
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
        self._watch_root = int(root_pid)
        self.host.watch(root_pid)
        self._watch_pids = _children_pids(self._watch_root)
        self._watch_refreshed = time.time()

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
        """CSV t,device,used_bytes,util,power_w,process_bytes (t: unix seconds, 3 decimals). Empty but
        with its header when NVML is unavailable, so downstream readers need no special case."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["t", "device", "used_bytes", "util", "power_w", "process_bytes"])
            for r in self.timeline():
                writer.writerow([f"{r['t']:.3f}", r["device"], "" if r["used_bytes"] is None else r["used_bytes"],
                                 "" if r["util"] is None else r["util"],
                                 "" if r["power_w"] is None else f"{r['power_w']:.1f}",
                                 "" if r["process_bytes"] is None else r["process_bytes"]])

    def power_limit_w(self) -> float | None:
        """The sampled boards' enforced power limit in watts (the highest, when they differ: each board is
        capped on its own), read when sampling started (NVML is released at stop), or None."""
        return self._power_limit_w

    def _read_power_limit(self) -> float | None:
        limits = []
        for handle in self._handles:
            try:
                limits.append(self._nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0)
            except Exception:  # noqa: BLE001
                pass
        return max(limits) if limits else None

    def energy_source(self) -> str | None:
        """'counter' (NVML total-energy counter on every device), 'power_integration' (trapezoid over
        sampled power, when any device lacks the counter) or None (neither readable)."""
        if not self.available:
            return None
        if self._energy_supported and all(self._energy_supported):
            return "counter"
        with self._lock:
            has_power = any(p is not None for _, _, p in self._energy)
        return "power_integration" if has_power or not self._energy else None

    def energy_between(self, t0: float, t1: float) -> float | None:
        """Joules used by the sampled devices between unix times t0 and t1 (e.g. the child's train_start
        and train_end). Counter readings are linearly interpolated at t0 and t1; without the counter,
        power is integrated (trapezoid). None when unavailable or the window is not covered by samples."""
        if not self.available or t1 <= t0:
            return None
        with self._lock:
            points = list(self._energy)
        source = self.energy_source()
        if source == "counter":
            pts = [(t, e) for t, e, _ in points if e is not None]
            if len(pts) < 2 or t0 < pts[0][0] - self.interval_s * 2 or t1 > pts[-1][0] + self.interval_s * 2:
                return None
            return (_interp(pts, t1) - _interp(pts, t0)) / 1000.0
        if source == "power_integration":
            pts = [(t, p) for t, _, p in points if p is not None]
            if len(pts) < 2 or t0 < pts[0][0] - self.interval_s * 2 or t1 > pts[-1][0] + self.interval_s * 2:
                return None
            inner = [(t, p) for t, p in pts if t0 < t < t1]
            curve = [(t0, _interp(pts, t0))] + inner + [(t1, _interp(pts, t1))]
            return sum((b[0] - a[0]) * (a[1] + b[1]) / 2.0 for a, b in zip(curve, curve[1:]))
        return None

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
            per_device = []
            for k, idx in enumerate(self._indices):
                base, peak = self._baseline[k], self._peak_used[k]
                above = peak - base if peak is not None and base is not None else None
                per_device.append({
                    "nvml_index": idx, "name": self._env.get("gpu_names", [None] * (k + 1))[k],
                    "total_bytes": self._total[k], "baseline_used_bytes": base, "peak_used_raw_bytes": peak,
                    "peak_used_bytes": above, "peak_process_bytes": self._peak_proc[k],
                    "mean_util_pct": self._util_sum[k] / self._util_n[k] if self._util_n[k] else None,
                    "max_power_w": self._max_power[k], "energy_counter": self._energy_supported[k]})
            interval = statistics.median(self._intervals) if self._intervals else None
            ticks = self._ticks
            util_n = sum(self._util_n)
            mean_util = sum(self._util_sum) / util_n if util_n else None
            max_power = self._max_total_power
        withpeak = [d for d in per_device if d["peak_used_bytes"] is not None]
        top = max(withpeak, key=lambda d: d["peak_used_bytes"]) if withpeak else None
        procs = [d["peak_process_bytes"] for d in per_device if d["peak_process_bytes"] is not None]
        process_note = None
        peak_proc = max(procs) if procs else None
        if self._watch_root is None:
            process_note = "no process watched"
        elif not self._process_supported:
            process_note = "nvmlDeviceGetComputeRunningProcesses unsupported"
        elif not self._process_matched:
            peak_proc = None
            process_note = ("no NVML process matched the watched pids (different PID namespace, "
                            "or the child never touched the GPU)")
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
            foreign = [dict(v) for v in self._foreign.values()]
            neighbours = [dict(v) for v in self._neighbours.values() if v["max_util_pct"] > 0 or v["processes"]]
        if not self.available:
            summary["gpu_neighbours"] = "NVML not available"
        elif self._watch_root is not None and not self._process_matched:
            summary["gpu_neighbours"] = "NVML's pids are not this host's (another PID namespace): not attributable"
            foreign = []
        else:
            summary["gpu_neighbours"] = "checked"
        summary["other_gpu_processes"] = foreign
        summary["other_busy_gpus"] = neighbours
        return summary


def _process_name(pid: int) -> str | None:
    try:
        import psutil  # noqa: PLC0415

        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001  (gone, or another namespace)
        return None


def _interp(points: Iterable[tuple[float, float]], t: float) -> float:
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
