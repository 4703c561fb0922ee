"""A one-line progress report every tenth of the run, printed by rank 0 into the worker log:

    step 10/60 loss 10.83 tok/s 5012

The parent (harness/launch/child.py) echoes these lines while it waits. tok/s is over the steps since the
previous line, from our StepMeter's per-step counts; under torchrun those counts are rank 0's until the
end-of-training all-reduce, so the live figure is rank 0's x world size (an estimate; result.json holds
the exact all-ranks sum). Printing costs one formatted line per tenth of the run: nothing is synced.
"""
from __future__ import annotations

import os
import sys
from typing import Any

from transformers import TrainerCallback


def progress_every(max_steps: int) -> int:
    return max(1, int(max_steps) // 10)


class ProgressPrinter(TrainerCallback):
    def __init__(self, meter: Any, max_steps: int, world_size: int = 1, stream: Any = None) -> None:
        self.meter = meter
        self.max_steps = int(max_steps)
        self.every = progress_every(max_steps)
        self.world_size = max(1, int(world_size))
        self.stream = stream
        self.rank = int(os.environ.get("RANK", "0"))
        self._last_step = 0

    def _window_rate(self, step: int) -> float | None:
        recs = [r for r in getattr(self.meter, "records", []) if self._last_step < r["step"] <= step]
        seconds = sum(r["time_s"] for r in recs)
        return sum(r["tokens"] for r in recs) * self.world_size / seconds if recs and seconds > 0 else None

    def line(self, step: int, loss: float | None) -> str:
        parts = [f"step {step}/{self.max_steps}"]
        if loss is not None:
            parts.append(f"loss {loss:.4g}")
        rate = self._window_rate(step)
        if rate is not None:
            parts.append(f"tok/s {rate:.0f}")
        return " ".join(parts)

    def on_log(self, args, state, control, logs=None, **kwargs):
        step = int(getattr(state, "global_step", 0))
        if self.rank != 0 or not logs or "loss" not in logs or step <= self._last_step:
            return
        if step % self.every and step != self.max_steps:
            return
        loss = logs.get("loss")
        print(self.line(step, float(loss) if loss is not None else None), file=self.stream or sys.stdout,
              flush=True)
        self._last_step = step
