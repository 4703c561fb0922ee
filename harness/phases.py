"""Phase timestamps of the worker process (wall clock, comparable with the parent's NVML timeline).

The adapters call ``mark("model_loaded")`` and ``mark("data_ready")`` where their framework gets
there; the worker marks the rest. A module-level record, because there is one run per process.
"""
from __future__ import annotations

import time

ORDER = ("process_start", "imports_done", "model_built", "model_loaded", "data_ready", "train_start", "train_end",
         "framework_eval_end", "eval_end", "result_written")
_marks: dict[str, float] = {}


def mark(name: str, at: float | None = None) -> None:
    """Record the first time ``name`` is reached (later calls keep the first)."""
    _marks.setdefault(name, time.time() if at is None else at)


def mark_together(*names: str) -> None:
    """Record the names not yet reached at one instant: a framework that gets to all of them inside one call
    of its own (LLaMA-Factory's model and data), so no time can be told apart between them."""
    now = time.time()
    for name in names:
        mark(name, now)


def marks() -> dict[str, float]:
    return dict(_marks)


def durations(m: dict[str, float]) -> dict[str, float | None]:
    """Seconds spent per phase; None where a phase boundary was not reached."""
    def span(a: str, b: str) -> float | None:
        return round(m[b] - m[a], 4) if a in m and b in m else None
    return {
        "imports": span("process_start", "imports_done"),
        # seeded random weights built (or found in the cache); older results have no model_built mark
        "model_build": span("imports_done", "model_built"),
        "model_load": span("model_built" if "model_built" in m else "imports_done", "model_loaded"),
        # marked together (mark_together): the framework loaded its data inside model loading, at a time
        # nothing can read from outside; None, never a measured-looking 0 s
        "data": None if m.get("data_ready") == m.get("model_loaded") else span("model_loaded", "data_ready"),
        "setup": span("data_ready", "train_start"),
        # model, data, adapters and the trainer, in whatever order the framework does them: the span to compare
        # across frameworks (LLaMA-Factory prepares its data before its model and inside one call of its own,
        # trl tokenizes inside its trainer's setup, so "model load" alone measures different work)
        "to_first_step": span("imports_done", "train_start"),
        "train": span("train_start", "train_end"),
        "eval": span("train_end", "eval_end"),  # both evaluations: the framework's, then ours
        "framework_eval": span("train_end", "framework_eval_end"),
        "our_eval": span("framework_eval_end", "eval_end"),
        "total": span("process_start", "result_written"),
    }
