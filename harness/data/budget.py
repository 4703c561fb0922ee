"""The supervised-token budget of a recommended run that packs (docs/recipes.md 3.5).

Padding-free batching keeps every step's records, so a recommended run sees exactly the identical run's
supervised tokens. Packing does not: a step holds rows of ``max_length`` tokens, however many records
fill them. So the packed run gets the identical run's expected supervised total,

    S* = max_steps x batch_size x grad_accum x world x s_mean          (s_mean: supervised tokens per record)

in rows per step holding the padded batch's real tokens and as many steps as that budget needs:

    R = max(1, round(batch_size x t_mean / max_length))                 (t_mean: tokens per record)
    N = ceil(S* / (R x grad_accum x world x max_length x fill x s_mean / t_mean))

with ``t_mean`` and ``s_mean`` from the evaluator's tokenisation of the train records cut at ``max_length``, and
``fill`` the mean share of a row that records fill when packed by best-fit decreasing (:func:`packing_fill`): the
bin packing LLaMA-Factory's greedy knapsack, axolotl's multipack and trl's BFD packing all approximate, since a
record is never split across rows. Example (the 2000-record medical mirror, max length 1024, batch 16, 48 steps):
t = 186.7, s = 131.5, S* = 48 x 16 x 131.5 = 101,000, R = round(2987 / 1024) = 3, fill 0.995 (LLaMA-Factory's
greedy knapsack gives the same 357 rows), N = ceil(101,000 / 2,153) = 47. Where records are long beside the row
the fill matters: the tiny data at max length 128 (87 tokens a record) fills 0.72 of a row, and without the fill
LLaMA-Factory's and axolotl's packed CPU runs consumed 9% and 23% fewer supervised tokens than their twins. The
StepMeter's supervised count is the check (:func:`budget_check`): within ``BUDGET_TOLERANCE`` of S* (or 1/N, a
whole step's share, where that is more) or the audit says "budget missed" (a framework's packer filling less than
best fit, and records a framework drops, move it)."""
from __future__ import annotations

import bisect
import math
from typing import Any, Iterable

from harness.data.tokenize import IGNORE_INDEX, tokenize_record

BUDGET_TOLERANCE = 0.03


def token_budget(records: Iterable[dict[str, Any]], tokenizer: Any, train: dict[str, Any], *,
                 world_size: int = 1) -> dict[str, Any]:
    max_length = int(train["max_length"])
    lengths, supervised = [], []
    for record in records:
        tokens = tokenize_record(tokenizer, record, max_length)
        lengths.append(len(tokens["input_ids"]))
        supervised.append(sum(label != IGNORE_INDEX for label in tokens["labels"]))
    return budget_from_counts(lengths, supervised, train, world_size=world_size)


def budget_from_counts(lengths: list[int], supervised: list[int], train: dict[str, Any], *,
                       world_size: int = 1) -> dict[str, Any]:
    """The formula of the module docstring from per-record token and supervised counts."""
    if not lengths or not sum(supervised):
        raise ValueError("token budget: no train record with a supervised token")
    max_length, batch = int(train["max_length"]), int(train["batch_size"])
    per_step = int(train.get("grad_accum", 1)) * int(world_size)
    t_mean, s_mean = sum(lengths) / len(lengths), sum(supervised) / len(supervised)
    target = int(train["max_steps"]) * batch * per_step * s_mean
    rows = max(1, round(batch * t_mean / max_length))
    fill = packing_fill(lengths, max_length)
    per_packed_step = rows * per_step * max_length * fill * s_mean / t_mean
    steps = max(1, math.ceil(target / per_packed_step))
    return {"records": len(lengths), "mean_tokens": t_mean, "mean_supervised": s_mean, "max_length": max_length,
            "target_supervised": target, "rows_per_step": rows, "fill": fill, "steps": steps,
            "formula": (f"S* = {train['max_steps']} x {batch} x {per_step} x {s_mean:.1f} = {target:,.0f}; "
                        f"R = round({batch} x {t_mean:.1f} / {max_length}) = {rows}; fill {fill:.3f}; "
                        f"N = ceil(S* / {per_packed_step:,.0f}) = {steps}")}


def packing_fill(lengths: list[int], max_length: int) -> float:
    """The mean share of a ``max_length`` row that the records fill when packed by best-fit decreasing (each
    record, longest first, into the row it leaves the least room in; a record is never split). 1.0 where every
    record is as long as a row; records of no tokens take no room."""
    sizes = sorted((min(int(n), max_length) for n in lengths if n > 0), reverse=True)
    if not sizes:
        return 1.0
    room: list[int] = []  # the rows' free tokens, ascending
    for size in sizes:
        i = bisect.bisect_left(room, size)  # the fullest row it still fits in
        left = (room.pop(i) if i < len(room) else max_length) - size
        bisect.insort(room, left)
    return sum(sizes) / (len(room) * max_length)


def budget_check(budget: dict[str, Any], consumed: int | None) -> dict[str, Any]:
    """``budget`` with the supervised tokens the run consumed and whether they are within the tolerance."""
    out = dict(budget)
    out["consumed_supervised"] = consumed
    out["tolerance"] = BUDGET_TOLERANCE
    target = budget.get("target_supervised")
    if consumed is None or not target:
        out["within"] = None
        return out
    out["relative_miss"] = (consumed - target) / target
    # N is rounded up to whole steps, which alone overshoots S* by up to one step's share (1/N): never a miss
    steps = budget.get("steps")
    out["tolerance"] = max(BUDGET_TOLERANCE, 1 / steps) if steps else BUDGET_TOLERANCE
    out["within"] = abs(out["relative_miss"]) <= out["tolerance"]
    return out
