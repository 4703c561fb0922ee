"""What else ran on the host while a run was measured: CPU used by processes outside the run.

A benchmark's figures are only as clean as the machine it ran on: another sweep on the host's second
GPU, a compiler, a data loader of someone else's job all take CPU time the framework's Python loop
needs (the 7B steps of session 2 shared the host with a second sweep). Sampled from the parent, once a
second (the parent never imports torch), with psutil:

* host CPU use: ``psutil.cpu_percent()`` over each interval, as busy cores (``pct / 100 * cpu_count``);
* the run's own CPU use: CPU seconds of the watched process tree (the worker and its children) per
  interval, as busy cores;
* the harness parent's own CPU (this process: the 10 ms NVML sampler thread takes ~0.3-0.5 of a core);
* other: host minus the run and the parent, clamped at 0. Its mean and max over the run are the
  disclosure figures.

GPU neighbours (other processes on the run's GPUs, other busy GPUs of the host) are NVML's to see:
``NvmlSampler`` adds them beside this summary.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

INTERVAL_S = 1.0
# Mean CPU of other processes above which a run is disclosed as "shared host": one busy core is what
# a second training job's Python loop takes; below it is background noise (sshd, logging, and in results
# recorded before the parent's own CPU was told apart, the parent's ~0.5 core of NVML sampling).
SHARED_CPU_CORES = 1.0
# ... or a quarter of the host's cores where that is less: on a 2-core machine one other busy core is half of it
# (a new user's run beside a test suite: llamafactory at 901 tok/s against ~13,000, other work 1.0 of 2 cores,
# and the report said "no other work recorded").
SHARED_CPU_SHARE = 0.25


def shared_cpu_threshold(cpu_count: int | None) -> float:
    """Mean busy cores of other processes above which a run is disclosed as run on a shared host."""
    return min(SHARED_CPU_CORES, SHARED_CPU_SHARE * cpu_count) if cpu_count else SHARED_CPU_CORES


class HostActivity:
    """Samples host and run CPU use in a background thread; ``summary()`` never raises."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = float(interval_s)
        self._root: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._host: list[float] = []
        self._ours: list[float] = []
        self._other: list[float] = []
        self._parent: list[float] = []
        self._load_start: float | None = None
        self._load_end: float | None = None
        self._tree_cpu: dict[int, float] = {}
        self._reason: str | None = None
        try:
            import psutil  # noqa: PLC0415

            self._psutil: Any = psutil
            self.cpu_count = psutil.cpu_count() or os.cpu_count() or 1
        except ImportError:
            self._psutil = None
            self.cpu_count = os.cpu_count() or 1
            self._reason = "psutil not installed"

    def watch(self, root_pid: int) -> None:
        """The run's process tree: its CPU is the run's own, not a neighbour's."""
        self._root = int(root_pid)

    def start(self) -> "HostActivity":
        if self._psutil is None or self._thread is not None:
            return self
        self._load_start = _load_1m()
        self._psutil.cpu_percent(interval=None)  # primes the counter: the next call covers one interval
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="host-activity", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None
        self._load_end = _load_1m()

    def _tree_cpu_seconds(self) -> float:
        """CPU seconds (user + system) of the watched tree; a process that ended keeps its last reading."""
        if self._root is None:
            return 0.0
        psutil = self._psutil
        try:
            root = psutil.Process(self._root)
            procs = [root] + root.children(recursive=True)
        except psutil.Error:
            return sum(self._tree_cpu.values())
        for proc in procs:
            try:
                times = proc.cpu_times()
                self._tree_cpu[proc.pid] = times.user + times.system
            except psutil.Error:
                continue
        return sum(self._tree_cpu.values())

    def _own_cpu_seconds(self) -> float:
        times = self._psutil.Process().cpu_times()
        return times.user + times.system

    def _run(self) -> None:
        last_t, last_cpu, last_own = time.monotonic(), self._tree_cpu_seconds(), self._own_cpu_seconds()
        while not self._stop.wait(self.interval_s):
            try:
                now, cpu, own = time.monotonic(), self._tree_cpu_seconds(), self._own_cpu_seconds()
                host_cores = self._psutil.cpu_percent(interval=None) / 100.0 * self.cpu_count
                span = now - last_t
                ours = max(0.0, (cpu - last_cpu) / span) if span > 0 else 0.0
                parent = max(0.0, (own - last_own) / span) if span > 0 else 0.0
                last_t, last_cpu, last_own = now, cpu, own
                self._host.append(host_cores)
                self._ours.append(ours)
                self._parent.append(parent)
                self._other.append(max(0.0, host_cores - ours - parent))
            except Exception:  # noqa: BLE001  (a monitor must never take the run down)
                continue

    def summary(self) -> dict[str, Any]:
        def mean(xs: list[float]) -> float | None:
            return round(sum(xs) / len(xs), 3) if xs else None

        other_mean = mean(self._other)
        return {"cpu_count": self.cpu_count, "interval_s": self.interval_s, "samples": len(self._host),
                "host_busy_cores_mean": mean(self._host), "run_busy_cores_mean": mean(self._ours),
                "parent_busy_cores_mean": mean(self._parent),
                "other_busy_cores_mean": other_mean,
                "other_busy_cores_max": round(max(self._other), 3) if self._other else None,
                "load_avg_1m_start": self._load_start, "load_avg_1m_end": self._load_end,
                "cpu_shared": None if other_mean is None else other_mean > shared_cpu_threshold(self.cpu_count),
                "reason": self._reason}


def _load_1m() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def host_disclosure(host: dict[str, Any] | None) -> dict[str, Any]:
    """``{shared: bool | None, because: [sentences]}``: whether anything else used the run's GPUs, the
    host's other GPUs or its CPUs, in words a report can print next to the figures. None = not recorded
    (results from before this was measured)."""
    if not host:
        return {"shared": None, "because": ["what else ran on the host was not recorded for this run"]}
    because: list[str] = []
    for proc in host.get("other_gpu_processes") or []:
        gib = (proc.get("used_bytes") or 0) / 2**30
        because.append(f"process {proc.get('pid')} ({proc.get('name') or '?'}) used {gib:.1f} GiB "
                       f"on GPU {proc.get('nvml_index')} during the run")
    for gpu in host.get("other_busy_gpus") or []:
        because.append(f"GPU {gpu.get('nvml_index')} of the host (not this run's) was busy: "
                       f"up to {gpu.get('max_util_pct')}% utilisation, {gpu.get('processes')} process(es)")
    other_cpu = host.get("other_busy_cores_mean")
    if isinstance(other_cpu, (int, float)) and other_cpu > shared_cpu_threshold(host.get("cpu_count")):
        because.append(f"other processes kept {host.get('other_busy_cores_mean'):.1f} of "
                       f"{host.get('cpu_count')} CPU cores busy on average "
                       f"(max {host.get('other_busy_cores_max'):.1f})")
    shared = bool(because)
    if host.get("samples", 0) == 0 and not shared:
        return {"shared": None, "because": ["the run was too short for a host sample"]}
    return {"shared": shared, "because": because}
