"""``profile=memory`` in the worker: the CUDA allocator's history over training, its peak attributed.

A TrainerCallback (the frameworks' trainers stay untouched). At train begin: the allocator's peak
counters restart (a profiled run's peaks are the training phase's, model loading excluded) and
``torch.cuda.memory._record_memory_history`` starts keeping the last ``profile.max_entries`` alloc/free
events with their Python stacks. At the end of every step that raised ``max_memory_allocated``, a
snapshot is taken (the history then holds the new peak's step); at train end the last one is attributed
(harness/results/memory_attribution.py) and kept as ``memory_snapshot.pickle`` for
https://pytorch.org/memory_viz when it fits ``profile.trace_max_mb``.

On a CPU there is no CUDA allocator to record: the profile says so (status ``unavailable``), the run
trains as it would have.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from harness.records import run_files
from harness.results.memory_attribution import Pointers, attribute_peak
from harness.worker.model_marks import ModelMarks
from harness.records.profile import MemoryProfile

MARK_BYTES = 512  # the allocator's smallest block: a marker costs nothing measurable


def _touch() -> None:
    import torch

    torch.empty(MARK_BYTES, dtype=torch.uint8, device="cuda")  # allocated and freed at once: the event is the mark


# One function per marker kind: the allocation's stack names the kind (memory_attribution.MARK_PREFIX).
def _harness_mark_step_begin() -> None: _touch()
def _harness_mark_forward() -> None: _touch()
def _harness_mark_head() -> None: _touch()
def _harness_mark_head_grad() -> None: _touch()
def _harness_mark_pre_optimizer() -> None: _touch()
def _harness_mark_step_end() -> None: _touch()


_MARKS = {name[len("_harness_mark_"):]: fn for name, fn in globals().items() if name.startswith("_harness_mark_")}


def cuda_ready() -> bool:
    import torch

    return torch.cuda.is_available()


class MemoryProfiler(TrainerCallback):
    kind = "memory"

    def __init__(self, profile: dict[str, Any], run_dir: Path) -> None:
        self.max_entries = int(profile.get("max_entries") or 200000)
        self.limit_bytes = int(float(profile.get("trace_max_mb") or 50) * 2**20)
        self.run_dir = Path(run_dir)
        self.record = MemoryProfile(alloc_conf=os.environ.get("PYTORCH_CUDA_ALLOC_CONF"))
        self.active = False
        self.model: Any = None
        self.optimizer: Any = None
        self.marks: ModelMarks | None = None
        self.head_mark: str | None = None  # where the LM head's mark fired, read when the hooks come off
        self.marks_note: str | None = None
        self.snapshot: dict[str, Any] | None = None
        self.snapshot_step: int | None = None
        self.snapshot_gradients: list[int] = []
        self._gradients: list[int] = []
        self._peak = 0
        if not cuda_ready():
            self.record.status = "unavailable"
            self.record.reason = ("profile=memory needs a CUDA device: it records the CUDA caching allocator's "
                                  "history (this run is on CPU)")

    def mark(self, kind: str) -> None:
        if self.active:
            _MARKS[kind]()

    # ---- callback hooks ----------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.record.status != "ok":
            return
        import torch

        self.model, self.optimizer = model, optimizer
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.memory._record_memory_history(max_entries=self.max_entries, context="alloc", stacks="python")
        self.active = True
        if model is not None:
            self.marks = ModelMarks(model, self.mark)

    def on_step_begin(self, args, state, control, **kwargs):
        self.mark("step_begin")

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if not self.active:
            return
        self.mark("pre_optimizer")
        self._gradients = [p.grad.data_ptr() for p in self._params() if p.grad is not None]

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        if not self.active:
            return
        import torch

        self.mark("step_end")
        self.optimizer = optimizer or self.optimizer
        peak = int(torch.cuda.max_memory_allocated())
        # This step holds a new peak (by more than 0.5%: a snapshot costs seconds, and a peak 0.5% lower
        # is attributed as well): keep the history that shows it.
        if peak > self._peak * 1.005:
            self._peak = peak
            self.snapshot = torch.cuda.memory._snapshot()
            self.snapshot_step = int(state.global_step)
            self.snapshot_gradients = list(self._gradients)

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    # ---- results -----------------------------------------------------------------------------------
    def _params(self) -> list[Any]:
        return list(self.model.parameters()) if self.model is not None else []

    def _pointers(self) -> Pointers:
        import torch

        ptrs = Pointers(gradients=self.snapshot_gradients)
        for p in self._params():
            if p.is_cuda:
                (ptrs.trainable if p.requires_grad else ptrs.frozen).append(p.data_ptr())
        ptrs.frozen.extend(b.data_ptr() for b in (self.model.buffers() if self.model is not None else ()) if b.is_cuda)
        for state in (getattr(self.optimizer, "state", None) or {}).values():
            for value in (state.values() if isinstance(state, dict) else ()):
                if isinstance(value, torch.Tensor) and value.is_cuda:
                    ptrs.optimizer.append(value.data_ptr())
        return ptrs

    def stop(self) -> None:
        """Stop recording (idempotent; also after a failed training, so evaluation runs unrecorded)."""
        if self.marks is not None:
            self.marks.remove()
            self.head_mark, self.marks_note = self.marks.head_mark, self.marks.note()
            self.marks = None
        if self.active:
            import torch

            torch.cuda.memory._record_memory_history(enabled=None)
            self.active = False

    def finish(self, measured_peak: int | None, reserved: int | None) -> MemoryProfile:
        """The profile record: the last kept snapshot attributed; a fault here is the profile's, not the run's."""
        self.stop()
        if self.record.status != "ok":
            return self.record
        if self.snapshot is None:
            self.record.status, self.record.reason = "failed", "no training step finished: nothing was recorded"
            return self.record
        try:
            device = __import__("torch").cuda.current_device()
            out = attribute_peak(self.snapshot, self._pointers(), device=device, measured_peak=measured_peak)
        except Exception as err:  # noqa: BLE001  the run's figures stand; the profile says what failed
            self.record.status, self.record.reason = "failed", f"{type(err).__name__}: {str(err)[:300]}"
            return self.record
        for key, value in out.items():
            setattr(self.record, key, value)
        self.record.reserved_bytes, self.record.peak_step = reserved, self.snapshot_step
        self.record.head_mark = self.head_mark
        if self.marks_note:
            self.record.notes.append(self.marks_note)
        self._keep_snapshot()
        return self.record

    def _keep_snapshot(self) -> None:
        data = pickle.dumps(self.snapshot)
        if len(data) > self.limit_bytes:
            self.record.notes.append(f"snapshot not kept: {len(data) / 2**20:.0f} MiB is over profile.trace_max_mb")
            return
        path = self.run_dir / run_files.MEMORY_SNAPSHOT
        path.write_bytes(data)
        self.record.snapshot_file = run_files.MEMORY_SNAPSHOT
