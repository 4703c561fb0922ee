"""The watched process tree: the worker and everything it spawns (dataloader workers, torchrun's ranks),
whose GPU memory NVML attributes by pid."""
from __future__ import annotations

import os
import time
from typing import Any

PID_REFRESH_S = 0.5  # re-walk the watched process tree this often (enumerating /proc costs ~ms)


def process_tree(root: int) -> set[int]:
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


def process_name(pid: int) -> str | None:
    """The name of another process on our GPU (disclosed in the report), or None when it is gone."""
    try:
        import psutil  # noqa: PLC0415

        return psutil.Process(pid).name()
    except Exception:  # noqa: BLE001  (gone, or another namespace)
        return None


class WatchedProcesses:
    """The GPU memory NVML attributes to a watched pid and its descendants (the worker and anything it spawns).
    Inside a container NVML may report host PIDs, which then never match: ``peak`` says so instead of 0."""

    def __init__(self) -> None:
        self.root: int | None = None
        self.pids: set[int] = set()
        self._refreshed = 0.0
        self.supported = True  # nvmlDeviceGetComputeRunningProcesses works here
        self.matched = False  # NVML listed at least one of our pids

    @property
    def unmatched(self) -> bool:
        """A process is watched but NVML never listed one of its pids (another PID namespace)."""
        return self.root is not None and not self.matched

    def watch(self, root_pid: int) -> None:
        self.root = int(root_pid)
        self.pids = process_tree(self.root)
        self._refreshed = time.time()

    def refresh(self, now: float) -> None:
        if self.root is not None and now - self._refreshed >= PID_REFRESH_S:
            self.pids = process_tree(self.root)
            self._refreshed = now

    def read_bytes(self, nvml: Any, handle: Any, nvml_index: int, neighbours: Any) -> int | None:
        """Bytes NVML attributes to our processes on one device (None: not attributable); other processes
        on it go to ``neighbours`` (a :class:`harness.sampling.neighbours.GpuNeighbours`)."""
        if not self.pids or not self.supported:
            return None
        try:
            procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except Exception:  # noqa: BLE001
            self.supported = False
            return None
        total, seen, attributable = 0, False, True
        for proc in procs:
            used = getattr(proc, "usedGpuMemory", None)
            if proc.pid not in self.pids and not neighbours.knows(nvml_index, proc.pid) and self.root is not None:
                # A rank or helper the child spawned since the last refresh is ours, not a neighbour
                # (checked once per new pid: a walk of the tree at every 10 ms tick would cost too much).
                self.pids = process_tree(self.root)
            if proc.pid in self.pids:
                seen = True
                if used is None:  # driver cannot attribute memory (e.g. Windows WDDM, some containers)
                    attributable = False
                else:
                    total += int(used)
            else:
                neighbours.note_foreign(nvml_index, int(proc.pid), used)
        if seen:
            self.matched = True
        return total if attributable else None

    def peak(self, per_device_peaks: list[int]) -> tuple[int | None, str | None]:
        """(peak process bytes over devices, or None; the note that says why it is missing)."""
        peak = max(per_device_peaks) if per_device_peaks else None
        if self.root is None:
            return peak, "no process watched"
        if not self.supported:
            return peak, "nvmlDeviceGetComputeRunningProcesses unsupported"
        if not self.matched:
            return None, ("no NVML process matched the watched pids (different PID namespace, "
                          "or the child never touched the GPU)")
        return peak, None
