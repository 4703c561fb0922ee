"""One sentence per sweep point: which is faster, which needs less memory, did they learn the same, was it fair.

Example: ``unsloth-2026.10.9: 1.90x trl-1.16.0's tokens/s at 0.60x its peak memory; eval loss within 0.01``.
A difference inside the repeats' own spread (:func:`harness.stats.difference_is_noise`) is
called "within noise"; an invalid fairness audit puts "NOT A FAIR COMPARISON: <what differs, in words>" first,
and every failed cross-check is stated after the comparison (harness/report/disclosures.py).
"""
from __future__ import annotations

from typing import Any

from harness.stats import difference_is_noise, summarize
from harness.records import Result
from harness.report.disclosures import audit_words, check_failures, disclosures
from harness.report.tables import COLUMN_BY_KEY, choose_reference, group_by_label, values

EVAL_LOSS_CLOSE = 0.01
# Where NVML saw nothing (CPU, no driver), the allocator's reserved peak stands in for memory.
MEMORY_KEYS = ("peak_mem", "torch_peak_reserved")


def _median(runs: list[Result], key: str) -> tuple[float | None, list[float]]:
    vals = values(runs, COLUMN_BY_KEY[key].path)
    return summarize(vals)["median"], vals


def _unfair_prefix(audit: dict[str, Any] | None) -> str:
    if not audit or audit.get("valid", True):
        return ""
    what = "; ".join(audit_words(audit)) or "the audit refused the comparison"
    return f"NOT A FAIR COMPARISON: {what}. "


def _speed(runs: list[Result], ref_runs: list[Result], ref: str) -> str | None:
    mine, a = _median(runs, "tokens_per_s")
    theirs, b = _median(ref_runs, "tokens_per_s")
    if mine is None or not theirs:
        return None
    if difference_is_noise(a, b):
        return f"tokens/s within noise of {ref}'s ({mine / theirs:.2f}x)"
    return f"{mine / theirs:.2f}x {ref}'s tokens/s"


def _memory(runs: list[Result], ref_runs: list[Result]) -> str | None:
    for key in MEMORY_KEYS:
        mine, a = _median(runs, key)
        theirs, b = _median(ref_runs, key)
        if mine is None or not theirs:
            continue
        what = "peak memory" if key == "peak_mem" else "allocator peak"
        if difference_is_noise(a, b):
            return f"{what} within noise ({mine / theirs:.2f}x)"
        return f"{mine / theirs:.2f}x its {what}"
    return None


def _loss(runs: list[Result], ref_runs: list[Result]) -> str | None:
    mine, a = _median(runs, "eval_loss")
    theirs, b = _median(ref_runs, "eval_loss")
    if mine is None or theirs is None:
        return None
    diff = mine - theirs
    if abs(diff) <= EVAL_LOSS_CLOSE:
        return f"eval loss within {EVAL_LOSS_CLOSE:g}"
    noise = " (within noise)" if difference_is_noise(a, b) else ""
    word = "higher" if diff > 0 else "lower"
    return f"eval loss {abs(diff):.3f} {word} ({mine:.3f} vs {theirs:.3f}){noise}"


def headline(runs: list[Result], audit: dict[str, Any] | None = None,
             reference: str | None = None) -> dict[str, Any]:
    """``{text, unfair, kind, clauses, fair, check_failures, disclosures}`` for one sweep point; ``kind`` is
    unfair / checks_failed / compared / single / none. ``fair``: the strict audit passed and every failed
    cross-check is explained (None without an audit, or when it compared fewer than two frameworks)."""
    groups = group_by_label(runs)
    ok = {label: rs for label, rs in groups.items() if any(r.ok for r in rs)}
    failed = {label: rs for label, rs in groups.items() if label not in ok}
    prefix = _unfair_prefix(audit)
    failed_text = ", ".join(f"{label} ({'/'.join(sorted({r.status or '?' for r in rs}))})"
                            for label, rs in failed.items())
    clauses: list[str] = []
    if not ok:
        kind = "none"
        text = f"No framework succeeded: {failed_text}." if failed_text else "No runs."
    elif len(ok) == 1:
        kind = "single"
        only = next(iter(ok))
        text = f"Only {only} succeeded" + (f"; {failed_text} did not, so there is nothing to compare." if failed_text
                                            else ": nothing to compare it with.")
    else:
        kind = "compared"
        ref = choose_reference(list(ok), ok, reference)
        for label, rs in ok.items():
            if label == ref:
                continue
            parts = [p for p in (_speed(rs, ok[ref], ref), _memory(rs, ok[ref])) if p]
            if not parts:
                lead = f"no speed or memory figures against {ref}"
            elif len(parts) == 2 and parts[1][0].isdigit():
                lead = f"{parts[0]} at {parts[1]}"
            else:
                lead = ", ".join(parts)
            loss = _loss(rs, ok[ref])
            clauses.append(f"{label}: {lead}" + (f"; {loss}" if loss else ""))
        text = ". ".join(clauses) + "."
        if failed_text:
            text += f" Did not succeed: {failed_text}."
    failures = check_failures(runs)
    unexplained = [f for f in failures if not f["explained"]]
    if unexplained and not prefix and kind == "compared":
        kind = "checks_failed"
    if prefix:
        kind = "unfair"
    if failures:
        text += " " + " ".join(f["text"] for f in failures)
    fair = None if audit is None else bool(audit.get("valid", True)) and not unexplained
    if fair and audit.get("labels") is not None and len(audit["labels"]) < 2:
        fair = None  # the audit compared nothing (no or one framework succeeded): "fair" would be vacuous
    return {"text": prefix + text, "unfair": bool(prefix), "kind": kind, "clauses": clauses, "fair": fair,
            "check_failures": failures, "disclosures": disclosures(runs),
            "point_hash": runs[0].point_hash if runs else None}
