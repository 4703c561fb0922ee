"""The ``train`` section of result.json from the StepMeter's per-step records: which steps are timed, the
evidence that the warm-up had settled (the steady line and the slow steps; harness/worker/step_meter.py
explains the rule), throughput over the timed steps and step-time statistics. Plain Python, no torch."""
from __future__ import annotations

from typing import Any

from harness.stats import median, percentile, steady_line


def step_time_stats(times: list[float]) -> dict[str, float | None]:
    """Median, mean, extremes and p10/p90 of the timed steps' times (all None without a timed step)."""
    if not times:
        return {k: None for k in ("median", "mean", "min", "max", "p10", "p90")}
    return {"median": median(times), "mean": sum(times) / len(times), "min": min(times), "max": max(times),
            "p10": percentile(times, 10), "p90": percentile(times, 90)}


def settle_evidence(records: list[dict[str, Any]], warmup_steps: int, settle_factor: float | None) -> dict[str, Any]:
    """The warm-up (fixed: ``warmup_steps``) and, with ``settle_factor``, the evidence that step times had
    settled when timing started: the steady line fitted to the second half, the slow steps, and those of
    the first half after the warm-up (``unsettled_timed_steps``)."""
    recs = records
    fixed = {"min_warmup_steps": warmup_steps, "timing_starts_after_step": warmup_steps}
    if not settle_factor:
        return {**fixed, "settle_factor": None, "steady_fixed_s": None, "steady_s_per_token": None,
                "slow_steps": [], "unsettled_timed_steps": [], "settled": None}
    work = [float(r.get("padded_tokens") or r["tokens"]) for r in recs]
    times = [float(r["time_s"]) for r in recs]
    half = len(recs) // 2
    line = steady_line(work[half:], times[half:])
    slow = [r["step"] for r, w, t in zip(recs, work, times)
            if line is not None and t > settle_factor * max(line[0] + line[1] * w, 1e-9)]
    last_of_first_half = recs[half - 1]["step"] if half >= 1 else 0
    unsettled = [step for step in slow if warmup_steps < step <= last_of_first_half]
    return {**fixed, "settle_factor": settle_factor,
            "steady_fixed_s": line[0] if line else None, "steady_s_per_token": line[1] if line else None,
            "slow_steps": slow, "unsettled_timed_steps": unsettled,
            "settled": None if line is None else not unsettled}


def train_summary(records: list[dict[str, Any]], settle: dict[str, Any], *, supervised_known: bool,
                  framework_tokens_seen: int | None, world_size: int,
                  first_batch_shape: list[int] | None) -> dict[str, Any]:
    """The ``train`` section: counts over all steps, rates over the timed ones, and the per-step log."""
    recs = records
    timed = [r for r in recs if r["step"] > settle["timing_starts_after_step"]]
    note = None
    if recs and not timed:
        timed = list(recs)
        note = (f"run has {len(recs)} steps <= warm-up ({settle['timing_starts_after_step']} steps): "
                "throughput is over all steps, warm-up included")
    if not supervised_known:
        note = ((note + "; ") if note else "") + "some batches had no labels: supervised tokens undercounted"
    t_time = sum(r["time_s"] for r in timed)

    def rate(key: str) -> float | None:
        return sum(r[key] for r in timed) / t_time if timed and t_time > 0 else None

    return {
        "steps": len(recs), "warmup_steps": settle["timing_starts_after_step"], "timed_steps": len(timed),
        "warmup": settle,
        "tokens": sum(r["tokens"] for r in recs),
        "supervised_tokens": sum(r["supervised_tokens"] for r in recs),
        "samples": sum(r["samples"] for r in recs),
        "timed_tokens": sum(r["tokens"] for r in timed),
        "timed_supervised_tokens": sum(r["supervised_tokens"] for r in timed),
        "timed_samples": sum(r["samples"] for r in timed),
        "timed_time_s": t_time,
        "tokens_per_s": rate("tokens"), "supervised_tokens_per_s": rate("supervised_tokens"),
        "samples_per_s": rate("samples"),
        "step_time_s": step_time_stats([r["time_s"] for r in timed]),
        "framework_tokens_seen": framework_tokens_seen,
        "world_size": world_size,
        "first_batch_shape": first_batch_shape,
        "note": note,
        "log": [dict(r) for r in recs],
    }
