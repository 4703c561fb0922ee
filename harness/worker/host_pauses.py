"""Host-side pauses inside a training step: Python's garbage collector and the kernel taking the CPU away.

Why: on a GPU-bound job a host pause costs nothing while the GPU has work queued, but a training loop that
syncs inside every step (trl reads its entropy / token-accuracy metrics with ``.item()`` right after the
forward pass) drains the queue, and then every host pause is GPU idle time. A gen-2 collection in a process
that holds a 7B model's autograd graph can take tens of milliseconds; a preemption by the hypervisor or a
neighbour takes what it takes. Both are per-step readings here, so a slow repeat can be matched against them.

- ``gc_s``, ``gc_collections``, ``gc_gen2``: time inside the collector and collections (all, and of the
  oldest generation) between two readings, from ``gc.callbacks`` (the interpreter calls them around each
  collection; no sampling, nothing missed).
- ``involuntary_switches``: the training thread's involuntary context switches (``getrusage(RUSAGE_THREAD)``,
  Linux): how often the kernel preempted it.
"""
from __future__ import annotations

import gc
import resource
import time
from typing import Any, Callable

_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None)  # Linux only


def _involuntary_switches() -> int | None:
    if _RUSAGE_THREAD is None:
        return None
    return int(resource.getrusage(_RUSAGE_THREAD).ru_nivcsw)


class HostPauseMeter:
    """Accumulates collector time and counts; :meth:`take` returns them since the last take and resets."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._gc_started: float | None = None
        self._installed = False
        self._reset()
        self._switches_at = _involuntary_switches()

    def _reset(self) -> None:
        self._gc_s = 0.0
        self._collections = 0
        self._gen2 = 0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = self._clock()
            return
        if self._gc_started is not None:
            self._gc_s += self._clock() - self._gc_started
            self._gc_started = None
        self._collections += 1
        if info.get("generation") == 2:
            self._gen2 += 1

    def start(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._on_gc)
            self._installed = True
        self.take()

    def stop(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._on_gc)
            self._installed = False

    def take(self) -> dict[str, Any]:
        """The pauses since the previous take (or start)."""
        switches = _involuntary_switches()
        out: dict[str, Any] = {"gc_s": self._gc_s, "gc_collections": self._collections, "gc_gen2": self._gen2}
        if switches is not None and self._switches_at is not None:
            out["involuntary_switches"] = switches - self._switches_at
        self._switches_at = switches
        self._reset()
        return out
