"""Host-side pauses inside a training step: Python's garbage collector, the kernel taking the CPU away, and
torch.compile compiling.

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
- ``compiles``, ``compile_s``: torch.compile's compilations in the step and their seconds, from dynamo's own
  timings (``torch._dynamo.utils.compilation_time_metrics``): each frame it compiles (``_compile.compile_inner``,
  guards failing on a new shape included) and each backward graph compiled at its first backward
  (``backward._backward_impl``). unsloth compiles its decoder blocks; a compilation in a timed step is host work
  the step waits for, which issue 13 forbids there (the ``no_compile_in_timed_steps`` check). 0 where dynamo was
  never imported: nothing can have been compiled.
"""
from __future__ import annotations

import gc
import resource
import sys
import time
from typing import Any, Callable

_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None)  # Linux only


def _involuntary_switches() -> int | None:
    if _RUSAGE_THREAD is None:
        return None
    return int(resource.getrusage(_RUSAGE_THREAD).ru_nivcsw)


# dynamo's timing keys: a frame compiled (forward, recompiles too) and a backward graph compiled lazily
COMPILE_KEYS = ("_compile.compile_inner", "backward._backward_impl")


def _compile_reading() -> tuple[int, float] | None:
    """torch.compile's compilations so far and their seconds; None where dynamo is loaded without the timings
    (another torch): no reading, rather than a 0 that would pass the check. Read from the module only if it is
    loaded: importing dynamo here would cost a run that never compiles a second of start-up."""
    utils = sys.modules.get("torch._dynamo.utils")
    if utils is None:
        return 0, 0.0
    metrics = getattr(utils, "compilation_time_metrics", None)
    if not isinstance(metrics, dict):
        return None
    times = [t for key in COMPILE_KEYS for t in metrics.get(key, ())]
    return len(times), float(sum(times))


class HostPauseMeter:
    """Accumulates collector time and counts; :meth:`take` returns them since the last take and resets."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._gc_started: float | None = None
        self._installed = False
        self._reset()
        self._switches_at = _involuntary_switches()
        self._compiles_at = _compile_reading()

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
        compiles = _compile_reading()
        if compiles is None:
            out["compiles"] = out["compile_s"] = None
        else:
            # torch._dynamo.reset() empties the timings (unsloth_zoo resets when a compile fails): count from zero
            since = self._compiles_at if self._compiles_at and compiles[0] >= self._compiles_at[0] else (0, 0.0)
            out["compiles"], out["compile_s"] = compiles[0] - since[0], compiles[1] - since[1]
        self._compiles_at = compiles
        self._reset()
        return out
