"""The Why section's LoRA input cast cells: what peft's ``_cast_input_dtype`` did in a profiled run's training
micro-steps, as the run read it back (harness/worker/lora_cast.py), and what the LoRA input cast control
(``profile.lora_input_cast=off``) changed against the framework's own run (docs/explain.md section 4)."""
from __future__ import annotations

from typing import Any

from harness.records import Result


def cast_cell(r: Result) -> str:
    """peft's LoRA input casts in the run's training micro-steps, read back (harness/worker/lora_cast.py)."""
    lc = r.profile.lora_cast if r.profile is not None else None
    if lc is None:
        return "not read back"
    if not lc.watched:
        return "not watched (own LoRA path)"
    if lc.cast_from is None:
        return f"no cast ({lc.calls:,} calls)"
    skipped = f", {lc.skipped:,} skipped" if lc.switched else ""
    return f"{lc.casts:,} casts{skipped} ({lc.cast_from} -> {lc.cast_to})"


def cast_fields(r: Result) -> dict[str, Any]:
    """A Why row's cast fields: the cell, the casts counted (None where not watched), whether the run is the
    control, and the read-back's one line."""
    lc = r.profile.lora_cast if r.profile is not None else None
    return {"casts": cast_cell(r), "casts_n": lc.casts if lc is not None and lc.watched else None,
            "cast_off": bool(r.job.profile is not None and r.job.profile.lora_input_cast),
            "lora_cast": lc.summary if lc is not None else None}


def cast_change(twin: dict[str, Any], ctl: dict[str, Any]) -> str:
    """What the LoRA input cast control did, read back; nothing when neither run's casts changed."""
    if ctl["casts_n"] is not None and twin["casts_n"] is not None:
        if ctl["casts_n"] == twin["casts_n"] and not ctl["cast_off"]:
            return ""
        return f"; LoRA input casts {twin['casts_n']:,} -> {ctl['casts_n']:,} ({ctl['casts']})"
    if not ctl["cast_off"]:
        return ""
    if ctl["casts"] == "not read back":
        return "; LoRA input casts not read back"
    if ctl["casts_n"] is None:
        return f"; LoRA input casts: nothing switched ({ctl['casts']})"
    # a twin from before the read-back (session 7's): the control's skipped casts are the ones it removed
    return f"; LoRA input casts: {ctl['casts']} (the run without the change has no read-back)"
