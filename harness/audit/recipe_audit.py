"""The audit of a recommended recipe (issue 17, docs/recipes.md 3.6-3.7): each framework's recommended run
against its own identical run (its "twin", found by ``result.recipe.identical_job_hash``), from the
live-object fields both recorded.

- differences: every audited field that differs, each tagged with the applied feature(s) of the recipe
  that declare it (``fields:`` in conf/framework/NAME.yaml) and their class (data / math / impl); a
  difference no applied feature declares is ``unexplained`` (the report shows it red);
- quality: ``delta = eval loss (recommended) - eval loss (identical)``, both by our evaluator on the same
  held-out records, against ``tol`` (:func:`tolerance`): "trains worse" when ``delta > tol``, "trains
  better" when ``delta < -tol`` (it saw other data or math), else "same quality";
- budget: a recipe that packs must consume the identical run's supervised tokens within 3%
  (harness/data/budget.py), or "budget missed".
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.audit.fairness import _EVIDENCE_FIELDS, _all_equal
from harness.stats import median

if TYPE_CHECKING:
    from harness.records import Result

# Why 5e-3 (docs/recipes.md 3.7): repeats of the 7B H200 jobs spread by sigma ~0.8e-3 (bf16 LoRA) and
# ~1.3e-3 (QLoRA), so two single runs differ by sigma*sqrt(2) ~1.2e-3 / 1.8e-3: 5e-3 is ~4 and ~3 sigma,
# while trl's bf16 QLoRA adapters, a known change of the math, moved the eval loss by 0.017.
EVAL_LOSS_TOL = 5e-3
SIGMAS = 3.0
# Per-run evidence, different between any two runs (harness/audit/fairness.py _EVIDENCE_FIELDS), and the
# audit's own bookkeeping: never a difference.
# global_step stays compared: the packing features declare it (conf/framework/*.yaml).
# sdpa_probe is the shape the audit's SDPA probe was given, read from per_device_batch and padded_lengths, which are
# compared (and declared by the batching features) themselves: a packed or padding-free batch changes it with them.
NOT_COMPARED = frozenset({"notes", "schema", "framework", "sdpa_probe"}) | (_EVIDENCE_FIELDS - {"global_step"})
APPLIED_STATUSES = ("active", "not seen", "not checked", "applied")


def tolerance(identical: list[float], recommended: list[float]) -> tuple[float, str]:
    """``(tol, how)``: 5e-3, or with repeats on both sides max(5e-3, 3 sigma sqrt(1/n_a + 1/n_b)) with sigma
    the pooled standard deviation of the two groups' repeats."""
    na, nb = len(identical), len(recommended)
    if na < 2 or nb < 2:
        return EVAL_LOSS_TOL, f"{EVAL_LOSS_TOL:g} (absolute; single runs)"
    def ss(xs: list[float]) -> float:
        mean = sum(xs) / len(xs)
        return sum((x - mean) ** 2 for x in xs)
    pooled = math.sqrt((ss(identical) + ss(recommended)) / (na + nb - 2))
    noise = SIGMAS * pooled * math.sqrt(1 / na + 1 / nb)
    tol = max(EVAL_LOSS_TOL, noise)
    return tol, (f"{tol:.2g} = max({EVAL_LOSS_TOL:g}, {SIGMAS:g} x pooled sigma {pooled:.2g} x "
                 f"sqrt(1/{na} + 1/{nb}))")


def quality(identical: list[float], recommended: list[float]) -> dict[str, Any]:
    """The quality verdict from the two groups' eval losses (ours), medians compared."""
    a, b = (median(identical) if identical else None), (median(recommended) if recommended else None)
    if a is None or b is None:
        return {"verdict": "no eval loss", "delta": None, "tol": EVAL_LOSS_TOL, "tol_text": f"{EVAL_LOSS_TOL:g}",
                "identical": a, "recommended": b, "n_identical": len(identical), "n_recommended": len(recommended)}
    tol, how = tolerance(identical, recommended)
    delta = b - a
    verdict = "trains worse" if delta > tol else ("trains better" if delta < -tol else "same quality")
    return {"verdict": verdict, "delta": delta, "tol": tol, "tol_text": how, "identical": a, "recommended": b,
            "n_identical": len(identical), "n_recommended": len(recommended)}


def twin_differences(identical: dict[str, Any], recommended: dict[str, Any],
                     features: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every audited field whose value differs between the twin runs, with the applied features that
    declare it; ``unexplained`` when none does."""
    declared: dict[str, list[dict[str, Any]]] = {}
    for f in features:
        if f.get("status") in APPLIED_STATUSES:
            for name in f.get("fields") or []:
                declared.setdefault(str(name), []).append(f)
    rows = []
    for field in sorted((set(identical) | set(recommended)) - NOT_COMPARED):
        a, b = identical.get(field), recommended.get(field)
        if _all_equal(field, [a, b]):
            continue
        by = declared.get(field, [])
        rows.append({"field": field, "identical": a, "recommended": b,
                     "features": [str(f.get("id")) for f in by],
                     "changes": sorted({str(f.get("changes")) for f in by}), "unexplained": not by})
    return rows


def _eval_losses(runs: list["Result"]) -> list[float]:
    return [float(r.eval.loss) for r in runs if r.ok and r.eval is not None and isinstance(r.eval.loss, (int, float))]


def compare_with_twins(point: list["Result"], every: list["Result"]) -> list[dict[str, Any]]:
    """One entry per framework label of a recommended sweep point: its twin (the identical runs with the
    job hash its results name, from ``every``), the differences, the quality verdict and the budget."""
    by_hash: dict[str, list["Result"]] = {}
    for r in every:
        by_hash.setdefault(str(r.job_hash), []).append(r)
    groups: dict[str, list["Result"]] = {}
    for r in sorted(point, key=lambda r: (r.label, r.repeat or 0)):
        groups.setdefault(r.label, []).append(r)
    out = []
    for label, runs in groups.items():
        recipe = next((r.recipe for r in runs if r.recipe is not None), None)
        twin_hash = recipe.identical_job_hash if recipe is not None else None
        twins = sorted(by_hash.get(str(twin_hash), []), key=lambda r: r.repeat or 0)
        ok_runs, ok_twins = [r for r in runs if r.ok], [r for r in twins if r.ok]
        first = next((r for r in ok_runs if r.recipe is not None), None)
        features = list(first.recipe.features) if first is not None else (list(recipe.features) if recipe else [])
        entry: dict[str, Any] = {
            "label": label, "twin_job_hash": twin_hash, "twin_point_hash": recipe.identical_point_hash if recipe else None,
            "twin_found": bool(twins), "twin_ok": bool(ok_twins), "features": features,
            "always_on": list(first.recipe.always_on) if first is not None else [],
            "budget": first.recipe.budget if first is not None else None,
            "quality": quality(_eval_losses(twins), _eval_losses(runs)),
            "ok": bool(ok_runs), "statuses": "/".join(sorted({str(r.status) for r in runs})),
            "differences": [], "unexplained": 0, "not_seen": [f.get("id") for f in features if f.get("status") == "not seen"],
        }
        if first is not None and ok_twins and first.audit is not None and ok_twins[0].audit is not None:
            rows = twin_differences(ok_twins[0].audit.fields(), first.audit.fields(), features)
            entry["differences"], entry["unexplained"] = rows, sum(r["unexplained"] for r in rows)
        budget = entry["budget"] or {}
        entry["budget_missed"] = budget.get("within") is False
        out.append(entry)
    return out


def summary_lines(audit: dict[str, Any]) -> list[str]:
    """One line per framework of a recommended point's audit (printed at the end of a sweep and by audit)."""
    lines = []
    for entry in audit.get("recipe") or []:
        q = entry["quality"]
        if not entry.get("ok"):
            lines.append(f"recipe: {entry['label']} recommended: no successful run here ({entry.get('statuses')})")
            continue
        if not entry["twin_found"]:
            lines.append(f"recipe: {entry['label']} recommended: no identical twin ({entry['twin_job_hash']}) "
                         "in these results: nothing to check it against")
            continue
        delta = "–" if q["delta"] is None else f"{q['delta']:+.4f}"
        extra = "; budget missed" if entry.get("budget_missed") else ""
        if entry.get("not_seen"):
            extra += f"; applied but not seen: {', '.join(map(str, entry['not_seen']))}"
        lines.append(f"recipe: {entry['label']} recommended vs identical: {len(entry['differences'])} differences "
                     f"({entry['unexplained']} unexplained); eval loss delta {delta}: {q['verdict']} "
                     f"(tol {q['tol']:.2g}){extra}")
    return lines
