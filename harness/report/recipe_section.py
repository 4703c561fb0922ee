"""The report's "Identical vs recommended" section (issue 17, docs/recipes.md 3.8): per recommended sweep point,
each framework's identical run (its twin, by job hash) and recommended run side by side, the audit's
differences beside the numbers, and one headline naming the fastest recommended setup and its quality cost.

Plain data for ``templates/_recipes.html.j2``. The twin pairing, the differences and the quality verdict come
from the audit (harness/audit/recipe_audit.py); this module only measures and formats.

"Time to S*": S* is the supervised tokens the identical twin consumed (median of its repeats), the same for
both rows of a framework; time = S* / supervised tokens per second (what padding-free and packing change is
how many padded tokens a step computes, not how many labels it trains on, so supervised tokens/s is the
speed comparable across recipes). Compute tokens/s: padded tokens (rows x width) of the timed steps per
second, what the GPU processed.
"""
from __future__ import annotations

from typing import Any

from harness.records import Result
from harness.report.tables import choose_reference, fmt, fmt_ratio, group_by_label, values
from harness.stats import median

# what each column holds (harness.results.load.METRICS paths) and how it is formatted
SPEED = ("train.tokens_per_s", "train.supervised_tokens_per_s")
MEMORY_PATHS = (("memory.nvml_peak_bytes", "NVML"), ("memory.torch_max_reserved_bytes", "allocator reserved"))


def _m(runs: list[Result], path: str) -> float | None:
    vals = values(runs, path)
    return median(vals) if vals else None


def _compute_rate(runs: list[Result]) -> float | None:
    """Padded tokens of the timed steps per second (median over ok runs)."""
    rates = []
    for r in runs:
        t = r.train
        if not r.ok or t is None or not t.timed_time_s or not t.log:
            continue
        skip = t.warmup.timing_starts_after_step if t.warmup is not None and t.warmup.timing_starts_after_step \
            is not None else t.warmup_steps or 0
        padded = [row.get("padded_tokens") for row in t.log if isinstance(row.get("step"), int) and row["step"] > skip]
        if padded and all(isinstance(p, (int, float)) for p in padded):
            rates.append(sum(padded) / t.timed_time_s)
    return median(rates) if rates else None


def _memory(runs: list[Result]) -> tuple[float | None, str]:
    for path, what in MEMORY_PATHS:
        value = _m(runs, path)
        if value is not None:
            return value, what
    return None, "not measured (no GPU)"


def _row(mode: str, runs: list[Result], target: float | None) -> dict[str, Any]:
    tokens, supervised = (_m(runs, p) for p in SPEED)
    compute = _compute_rate(runs)
    memory, memory_kind = _memory(runs)
    loss = _m(runs, "eval.loss")
    time_to = target / supervised if target and supervised else None
    return {"mode": mode, "n_ok": sum(r.ok for r in runs), "n_runs": len(runs),
            "statuses": sorted({str(r.status) for r in runs}),
            "tokens_per_s": tokens, "supervised_per_s": supervised, "compute_per_s": compute, "memory": memory,
            "memory_kind": memory_kind, "eval_loss": loss, "time_to_target": time_to,
            "train_s": _m(runs, "durations.train"),
            "text": {"tokens_per_s": fmt(tokens, "rate"), "supervised_per_s": fmt(supervised, "rate"),
                     "compute_per_s": fmt(compute, "rate"), "memory": fmt(memory, "bytes"),
                     "eval_loss": fmt(loss, "loss"), "time_to_target": fmt(time_to, "seconds"),
                     "train_s": fmt(_m(runs, "durations.train"), "seconds")}}


def speed_words(speedup: float | None) -> str:
    """``1.31x faster`` / ``2.40x slower`` (a time ratio, identical over recommended)."""
    if not speedup:
        return ""
    return f"{fmt_ratio(speedup)} faster" if speedup >= 1 else f"{fmt_ratio(1 / speedup)} slower"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


FEATURE_BADGE = {"active": "ok", "not seen": "bad", "unavailable": "warn", "not checked": "warn"}


def _features(entry: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for f in entry.get("features") or []:
        status = str(f.get("status"))
        out.append({"id": f.get("id"), "status": status, "changes": f.get("changes"), "what": f.get("what"),
                    "reason": f.get("reason") or "", "evidence": f.get("evidence") or "", "source": f.get("source"),
                    "badge": FEATURE_BADGE.get(status, "na"), "shown": status in FEATURE_BADGE})
    return out


def _differences(entry: dict[str, Any]) -> list[dict[str, Any]]:
    from harness.report.sections import _short

    rows = []
    for d in entry.get("differences") or []:
        a, b = _short(d.get("identical")), _short(d.get("recommended"))
        rows.append({"field": d["field"], "identical": a[0], "identical_full": a[1], "recommended": b[0],
                     "recommended_full": b[1], "features": d.get("features") or [], "changes": d.get("changes") or [],
                     "unexplained": d.get("unexplained")})
    rows.sort(key=lambda r: (not r["unexplained"], r["field"]))
    return rows


def _quality_text(q: dict[str, Any]) -> str:
    if q.get("delta") is None:
        return q.get("verdict") or "no eval loss"
    return f"{q['delta']:+.4f} ({q['verdict']}, tol {q['tol']:.2g})"


def recipe_point(audit: dict[str, Any], point_runs: list[Result], records: list[Result],
                 reference: str | None) -> dict[str, Any]:
    """One recommended point beside its identical twins: rows, differences and the headline."""
    from harness.frameworks import registry

    by_hash: dict[str, list[Result]] = {}
    for r in records:
        by_hash.setdefault(str(r.job_hash), []).append(r)
    groups = group_by_label(point_runs)
    entries = {e["label"]: e for e in audit.get("recipe") or []}
    frameworks = []
    for label in sorted(groups, key=lambda l: registry.order(groups[l][0].framework.name or "")):
        entry = entries.get(label, {})
        twins = by_hash.get(str(entry.get("twin_job_hash")), [])
        target = _m(twins, "train.supervised_tokens")
        identical, recommended = _row("identical", twins, target), _row("recommended", groups[label], target)
        q = entry.get("quality") or {}
        frameworks.append({
            "label": label, "twin_found": bool(twins), "target": target, "target_text": fmt(target, "rate"),
            "rows": [identical, recommended], "quality": q,
            "quality_text": _quality_text(q) if entry.get("ok", True) else f"not run here ({entry.get('statuses')})",
            "worse": q.get("verdict") == "trains worse", "better": q.get("verdict") == "trains better",
            "speedup": _ratio(identical["time_to_target"], recommended["time_to_target"]),
            "memory_ratio": _ratio(recommended["memory"], identical["memory"]),
            "features": _features(entry), "differences": _differences(entry),
            "unexplained": entry.get("unexplained", 0), "not_seen": entry.get("not_seen") or [],
            "always_on": entry.get("always_on") or [], "budget": entry.get("budget"),
            "budget_missed": entry.get("budget_missed", False)})
    for fw in frameworks:
        fw["speedup_text"] = speed_words(fw["speedup"])
        fw["memory_ratio_text"] = fmt_ratio(fw["memory_ratio"])
    from harness.report.tables import point_title

    return {"point_hash": audit.get("point_hash"), "title": point_title(point_runs), "frameworks": frameworks,
            "packing": next((r.recipe.packing for r in point_runs if r.recipe is not None), None),
            "headline": recipe_headline(frameworks, reference)}


def recipe_headline(frameworks: list[dict[str, Any]], reference: str | None) -> dict[str, Any]:
    """The fastest recommended setup by time to S* among those of the same quality (or better), its speed-up
    and memory against its own identical run and against the reference framework's identical run, and what
    it cost in eval loss; every "trains worse" recipe named beside it."""
    worse = [f["label"] for f in frameworks if f["worse"]]
    usable = [f for f in frameworks if not f["worse"] and f["rows"][1]["time_to_target"] is not None]
    labels = [f["label"] for f in frameworks if f["twin_found"]]
    groups = {f["label"]: [] for f in frameworks}
    ref = choose_reference(labels, groups, reference) if labels else None
    ref_fw = next((f for f in frameworks if f["label"] == ref), None)
    if not usable:
        text = "No recommended run of the same quality has a time to the supervised-token target."
    else:
        best = min(usable, key=lambda f: f["rows"][1]["time_to_target"])
        rec, ident = best["rows"][1], best["rows"][0]
        active = [x["id"] for x in best["features"] if x["status"] == "active"]
        parts = [f"Fastest recommended setup: {best['label']} ({', '.join(map(str, active)) or 'no feature active'}), "
                 f"{rec['text']['time_to_target']} to {best['target_text']} supervised tokens"]
        if best["speedup"] is not None:
            parts.append(f"{speed_words(best['speedup'])} than its identical run")
        if ref_fw is not None and ref_fw["rows"][0]["time_to_target"] and ref_fw is not best:
            parts.append(f"{ref_fw['rows'][0]['time_to_target'] / rec['time_to_target']:.2f}x {ref}'s identical run")
        if best["memory_ratio"] is not None:
            parts.append(f"{best['memory_ratio']:.2f}x its peak memory ({rec['memory_kind']})")
        text = ", ".join(parts) + f"; eval loss {best['quality_text']}."
    if worse:
        text += f" Trains worse than its identical run: {', '.join(worse)}."
    return {"text": text, "worse": worse, "kind": "unfair" if worse else "compared"}


def recipe_sections(records: list[Result], audits: list[dict[str, Any]], reference: str | None) -> list[dict[str, Any]]:
    """One entry per recommended sweep point of the report (empty when there is none)."""
    by_point: dict[str, list[Result]] = {}
    for r in records:
        if not r.profiled:
            by_point.setdefault(str(r.point_hash), []).append(r)
    out = []
    for audit in audits:
        if audit.get("recipe_name") != "recommended" or str(audit.get("point_hash")) not in by_point:
            continue
        out.append(recipe_point(audit, by_point[str(audit.get("point_hash"))], records, reference))
    return out
