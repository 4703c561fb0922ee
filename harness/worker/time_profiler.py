"""``profile=time`` in the worker: ``profile.steps`` steady-state steps under torch.profiler.

A TrainerCallback placed right after the StepMeter (so its marks sit next to the StepMeter's clock reads):
the profiler starts at the end of the last warm-up step (``train.measure_warmup_steps``) and stops at the
end of the last profiled step, CPU activity always and CUDA too on a GPU. Our marks (step end, forward,
LM head, its gradient, optimizer step) are zero-length ``record_function`` ranges in the trace; the trace
is attributed (harness/results/time_attribution.py) and kept gzip-compressed beside the result as
``profile_trace.json.gz`` (Perfetto / chrome://tracing / TensorBoard open it), cut to the first profiled
step when over ``profile.trace_max_mb`` and dropped when even that is, which the result says.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from harness.records import run_files
from harness.worker.model_marks import ModelMarks
from harness.results.time_attribution import MARK, attribute_steps, first_step_only
from harness.records.profile import TimeProfile


class TimeProfiler(TrainerCallback):
    kind = "time"

    def __init__(self, profile: dict[str, Any], run_dir: Path, *, warmup_steps: int, max_steps: int) -> None:
        self.run_dir = Path(run_dir)
        self.limit_bytes = int(float(profile.get("trace_max_mb") or 50) * 2**20)
        self.first = warmup_steps  # the profiler starts at this step's end (0: at train begin)
        self.last = min(max_steps, warmup_steps + int(profile.get("steps") or 3))
        self.record = TimeProfile(steps=list(range(self.first + 1, self.last + 1)))
        if self.last <= self.first:
            self.record.status = "unavailable"
            self.record.reason = (f"no step after the warm-up to profile (train.max_steps={max_steps}, "
                                  f"train.measure_warmup_steps={warmup_steps})")
        elif self.last < warmup_steps + int(profile.get("steps") or 3):
            self.record.notes.append(f"profiled {self.last - self.first} step(s): train.max_steps ends the run")
        self.prof: Any = None
        self.marks: ModelMarks | None = None
        self.head_mark: str | None = None  # where the LM head's mark fired, read when the hooks come off
        self.marks_note: str | None = None
        self.model: Any = None
        self.trace: dict[str, Any] | None = None

    def mark(self, kind: str) -> None:
        if self.prof is not None:
            import torch

            with torch.profiler.record_function(MARK + kind):
                pass

    def _start(self) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self.prof = profile(activities=activities, record_shapes=False, with_stack=False, profile_memory=False)
        self.prof.start()
        if self.model is not None:
            self.marks = ModelMarks(self.model, self.mark)
        self.mark("step_end")  # the window's start: the end of the last warm-up step

    def _stop(self) -> None:
        if self.prof is None:
            return
        prof, self.prof = self.prof, None
        if self.marks is not None:
            self.marks.remove()
            self.head_mark, self.marks_note = self.marks.head_mark, self.marks.note()
            self.marks = None
        prof.stop()
        path = self.run_dir / "profile_trace.json"
        prof.export_chrome_trace(str(path))
        try:
            self.trace = json.loads(path.read_text(encoding="utf-8"))
        finally:
            path.unlink(missing_ok=True)

    # ---- callback hooks ----------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        if self.record.status == "ok" and self.first == 0:
            self._start()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.mark("pre_optimizer")

    def on_step_end(self, args, state, control, **kwargs):
        if self.record.status != "ok":
            return
        step = int(state.global_step)
        if self.prof is None and step == self.first and self.trace is None:
            self._start()
        elif self.prof is not None:
            self.mark("step_end")
            if step >= self.last:
                self._stop()

    def on_train_end(self, args, state, control, **kwargs):
        self._stop()  # a run shorter than planned: what was profiled is kept

    # ---- results -----------------------------------------------------------------------------------
    def finish(self, step_log: list[dict[str, Any]]) -> TimeProfile:
        """The profile record; a fault here is the profile's, never the run's."""
        self._stop()
        if self.record.status != "ok":
            return self.record
        if self.trace is None:
            self.record.status, self.record.reason = "failed", "the profiled steps were never reached"
            return self.record
        try:
            out = attribute_steps(self.trace)
        except Exception as err:  # noqa: BLE001
            self.record.status, self.record.reason = "failed", f"{type(err).__name__}: {str(err)[:300]}"
            return self.record
        for key in ("view", "window_s", "parts_s", "host_parts_s", "not_separated", "top_kernels", "top_ops",
                    "sdpa_ops", "kernel_classes_s", "idle"):
            setattr(self.record, key, out[key])
        self.record.head_mark = self.head_mark
        self.record.notes.extend(out["notes"] + ([self.marks_note] if self.marks_note else []))
        profiled = set(self.record.steps)
        times = [r["time_s"] for r in step_log if r.get("step") in profiled]
        self.record.step_meter_s = sum(times) if len(times) == len(profiled) else None
        self._keep_trace()
        return self.record

    def _keep_trace(self) -> None:
        assert self.trace is not None
        data = gzip.compress(json.dumps(self.trace).encode(), compresslevel=6)
        if len(data) > self.limit_bytes:
            cut = gzip.compress(json.dumps(first_step_only(self.trace)).encode(), compresslevel=6)
            mb = f"{len(data) / 2**20:.1f} MiB"
            if len(cut) > self.limit_bytes:
                self.record.trace_note = f"trace not kept: {mb} (gzip) is over profile.trace_max_mb, its first step too"
                return
            self.record.trace_note = f"trace cut to the first profiled step: the whole one is {mb} (gzip), " \
                                     f"over profile.trace_max_mb"
            data = cut
        (self.run_dir / run_files.PROFILE_TRACE).write_bytes(data)
        self.record.trace_file, self.record.trace_bytes = run_files.PROFILE_TRACE, len(data)
