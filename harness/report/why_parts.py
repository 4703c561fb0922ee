"""Parts of a profile that could not be told apart, for the "Why they differ" section (harness/report/why.py).

A profiled run whose model computes its LM head and loss inside its forward without calling a module the
harness hooks (unsloth's fused cross-entropy reads ``lm_head.weight``: harness/worker/model_marks.py) has
no head mark: its logits and loss are counted in activations (memory) and their time in forward (time).
Such a part is shown as "not separable", never as a measured 0, and a comparison between runs is made on
the coarser split both can give: in every row the part is added to the one that holds it in the run that
could not separate it.
"""
from __future__ import annotations

from typing import Any

from harness.records.profile import MemoryProfile, TimeProfile

# What memory_attribution.attribute_peak notes when the peak step holds no head marker (session-7 results
# were written before ``not_separated`` existed: their note is how they say it).
NO_HEAD_NOTE = "no LM-head marker in the peak step"


def not_separated(prof: MemoryProfile | TimeProfile) -> dict[str, str]:
    """part -> the part that holds it, for the parts ``prof`` could not separate."""
    if prof.not_separated:
        return dict(prof.not_separated)
    # Results from before the field. Memory: the attribution's own note. Time: a loss part of exactly 0 s,
    # which only a micro-batch without a head mark gives (its loss span is empty by construction; with a
    # mark the head's matmul and the loss always run in it).
    if isinstance(prof, MemoryProfile):
        return {"logits_loss": "activations"} if any(n.startswith(NO_HEAD_NOTE) for n in prof.notes) else {}
    return {"loss": "forward"} if prof.status == "ok" and prof.parts_s.get("loss") == 0.0 else {}


def cell(key: str, merged: dict[str, str], short: dict[str, str]) -> str | None:
    """The table cell of a part that was not separated (None for a measured one)."""
    return f"not separable (in {short[merged[key]]})" if key in merged else None


def union(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The parts some row of ``rows`` could not separate."""
    out: dict[str, str] = {}
    for row in rows:
        out.update(row.get("merged") or {})
    return out


def merge(parts: dict[str, float], merged: dict[str, str]) -> dict[str, float]:
    """``parts`` with each part of ``merged`` added to the part that holds it (and dropped)."""
    out = dict(parts)
    for key, host in merged.items():
        if key in out and host in out:
            out[host] = (out.get(host) or 0.0) + (out.pop(key) or 0.0)
    return out


def labels(base: dict[str, str], merged: dict[str, str]) -> dict[str, str]:
    """``base`` with the holding parts' labels naming what they hold."""
    out = dict(base)
    for key, host in merged.items():
        out[host] = f"{base[host]} with {base[key]} (not separable in every run)"
    return out


def comparable(rows: list[dict[str, Any]], base: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``rows`` with their parts on the split every one of them gives, and the labels of that split."""
    merged = union(rows)
    if not merged:
        return rows, base
    return [{**row, "parts": merge(row["parts"], merged)} for row in rows], labels(base, merged)
