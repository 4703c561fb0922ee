"""The report's "Why they differ" section: profiled runs' memory and step-time attribution per sweep point.

A profiled run (``profile=memory|time``) is its own sweep point, so it never enters a comparison table, a
headline, a baseline or a trend (its figures carry the profiler's cost). Here it is joined back to the point
it explains (harness/report/why_points.py): one stacked bar per framework of the memory peak's
categories (harness/results/memory_attribution.py) and of a profiled step's parts
(harness/results/time_attribution.py), and the biggest difference between the frameworks named in one
sentence with its numbers. A controlled rerun (one change: ``profile.alloc_conf``, ``profile.loss`` for
the same loss in every framework, ``profile.lora_input_cast`` for peft's LoRA input cast,
``profile.checkpointing`` for the checkpointing kind, or ``train.sdpa_backend`` for one attention kernel) is its own row, named by its change, left out of that
sentence and given one of its own: what the change did against the same framework's run without it. Each row
shows the loss path its training steps took and peft's LoRA input casts, as the run read them back
(harness/worker/loss_path.py, harness/worker/lora_cast.py). Only plain data and figures come out of here; the
template lays them out.

The pieces, one concept each: why_rows.py (which run is a row, its label, a controlled rerun's twin),
why_memory.py and why_time.py (the two blocks and their sentences), why_gpu.py (kernel classes and the GPU's
idle time), why_parts.py (parts a profile could not separate), why_lora_cast.py (the LoRA input cast cells),
why_figure.py (the stacked bars).
"""
from __future__ import annotations

from typing import Any

from harness.records import Result
from harness.report.tables import by_label_and_repeat, point_title
from harness.report.why_memory import memory_block
from harness.report.why_points import explained_points
from harness.report.why_time import time_block


def why_sections(records: list[Result], folder_of: Any = None) -> dict[str, dict[str, Any]]:
    """Unprofiled point hash -> its Why section, from the profiled ``records`` (empty when there are none),
    joined to the unprofiled points among ``records``."""
    profiled, unprofiled = [r for r in records if r.profiled], [r for r in records if not r.profiled]
    out = {}
    for point, (values, runs) in explained_points(profiled, unprofiled).items():
        out[point] = {
            "point_hash": point, "title": point_title(runs), "memory": memory_block(runs, values),
            "time": time_block(runs, values),
            "runs": [{"run_id": r.run_id, "label": r.label, "repeat": r.repeat, "kind": r.profiled,
                      "status": r.status, "reason": r.reason or "",
                      "profile_status": _profile_status(r), "folder": folder_of(r) if folder_of else r.run_dir,
                      "loss_path": r.profile.loss_path.path if r.profile is not None and r.profile.loss_path else None,
                      "lora_cast": r.profile.lora_cast.summary if r.profile is not None and r.profile.lora_cast else None}
                     for r in sorted(runs, key=by_label_and_repeat)]}
    return out


def _profile_status(r: Result) -> str:
    prof = getattr(r.profile, r.profiled or "", None) if r.profile is not None else None
    if prof is None:
        return "no profile recorded"
    return prof.status + (f": {prof.reason}" if prof.reason else "")
