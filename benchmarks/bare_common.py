"""What every bare script shares: reading the harness's job.json (filling in the runtime facts the worker
would: device, bf16 support, the random-weights model's folder) and timing the same window the harness times."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_job(job_path: str) -> dict[str, Any]:
    import torch

    from harness.worker.model_cache import random_weights_model

    job = json.loads(Path(job_path).read_text())
    job["runtime"]["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    job["runtime"]["bf16_supported"] = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if job["model"]["weights"] == "random":
        job["model"]["path"] = str(random_weights_model(Path(job["model"]["path"]), job["model"]["init_seed"]))
    return job


class OptimizerStepClock:
    """The wall time of the timed window (after the warm-up steps, to the last step) in a bare run, read
    without a Trainer callback: a global torch optimizer post-step hook notes the time of every optimizer
    step (one per training step at grad_accum 1, the throughput suites' setting). The GPU is synchronized
    at the two steps that bound the window only, so the run is otherwise as bare as before; the harness
    times the same window (train.tokens_per_s), so both sides compare steady-state speed, leaving out what
    the warm-up holds (unsloth's compilation: 10-32 s of a 45-66 s ``train()`` call on the 7B job).

        with OptimizerStepClock(warmup_steps=8, last_step=48) as clock:
            trainer.train()
        clock.window_s   # None when the run did not reach both bounds
    """

    def __init__(self, warmup_steps: int, last_step: int) -> None:
        self.bounds = {int(warmup_steps), int(last_step)}
        self.first, self.last = int(warmup_steps), int(last_step)
        self.steps = 0
        self.times: dict[int, float] = {}
        self._handle = None

    def _hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        import time

        import torch

        self.steps += 1
        if self.steps in self.bounds:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.times[self.steps] = time.perf_counter()

    def __enter__(self) -> "OptimizerStepClock":
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self._handle = register_optimizer_step_post_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()

    @property
    def window_s(self) -> float | None:
        if self.first in self.times and self.last in self.times and self.last > self.first:
            return self.times[self.last] - self.times[self.first]
        return None

    def report(self) -> dict[str, Any]:
        """The JSON fields every bare script prints beside its train-call figures."""
        return {"optimizer_steps": self.steps, "window_steps": [self.first + 1, self.last],
                "window_s": self.window_s}


def step_clock(job: dict[str, Any]) -> OptimizerStepClock:
    """The clock of this job's timed window: after ``measure_warmup_steps``, to ``max_steps``."""
    train = job["train"]
    return OptimizerStepClock(int(train.get("measure_warmup_steps") or 0), int(train["max_steps"]))


def print_figures(trainer: Any, seconds: float, clock: OptimizerStepClock) -> None:
    """The one JSON line every bare script prints (benchmarks/overhead.py reads it): the Trainer's own token count
    (``num_input_tokens_seen``, non-padding, not ours), the wall time of its ``train()`` call, and the timed window."""
    tokens = int(trainer.state.num_input_tokens_seen)
    print(json.dumps({"tokens": tokens, "train_call_s": seconds, "tokens_per_s": tokens / seconds, **clock.report()}),
          flush=True)
