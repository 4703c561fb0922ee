"""How the loss of an optimizer step is normalised over its micro-batches and ranks, from what the
:class:`~harness.worker.loss_probe.LossProbe` saw in the first steps of the framework's own Trainer.

Three normalisations are told apart (the value of the strict field ``loss_normalization``):

- ``step_token_mean``: every supervised token of the step (all its micro-batches, on every rank) weighs
  1 / N, N the supervised tokens of the whole step: transformers' ``num_items_in_batch`` path with
  ``average_tokens_across_devices``;
- ``rank_token_mean`` (several ranks only): each rank's token mean over its own micro-batches, then DDP's
  average over ranks (the token count not gathered across devices);
- ``micro_batch_mean``: each micro-batch's own token mean, divided by the accumulation steps (and averaged
  over ranks): a Trainer that does not hand the token count to the loss (``model_accepts_loss_kwargs``
  False, the GA bug transformers fixed in 4.46).

With one micro-batch per step on one rank the three are the same thing, and the field says
``step_token_mean``.

**Observed** (``loss_normalization_source: observed``): per micro-batch i, the forward's loss is its token-loss
sum S_i over a divisor the forward knows (the ``num_items_in_batch`` it was given, else its own supervised
tokens n_i: transformers' and trl's causal-LM loss contract), so S_i is known; the loss that was backpropagated,
E_i (after accelerate's own division), gives the weight of each of its tokens, E_i / S_i, divided by the ranks
DDP averages over. The normalisation is the one whose weights fit every micro-batch of every probed step
(relative tolerance ``TOL``); steps whose micro-batches hold equally many tokens cannot tell
``step_token_mean`` from ``micro_batch_mean`` and are passed over by the next steps.
**Trainer flags** (``loss_normalization_flags``, and the value when the forward returns no loss to observe):
the stock ``Trainer.training_step`` rule, from the live trainer's ``model_accepts_loss_kwargs``,
``compute_loss_func`` and ``args.average_tokens_across_devices``, and the token count the loop handed to
``training_step``.
"""
from __future__ import annotations

from typing import Any

from harness.worker.live_fields.values import attr_path, jsonable

STEP, RANK, MICRO = "step_token_mean", "rank_token_mean", "micro_batch_mean"
ORDER = (STEP, RANK, MICRO)
TOL = 1e-3


def _global_tokens(meter: Any) -> dict[int, int]:
    """Each step's supervised tokens over all ranks: the StepMeter sums its per-step counts over ranks at train end."""
    out: dict[int, int] = {}
    for record in getattr(meter, "records", None) or []:
        if isinstance(record.get("supervised_tokens"), int):
            out[int(record["step"])] = record["supervised_tokens"]
    return out


def _observe_step(step: dict[str, Any], world: int, n_global: float | None) -> tuple[list[str] | None, dict[str, Any]]:
    """The normalisations consistent with one step (None: not observable, with the reason in the evidence)."""
    micros = step["micro_batches"]
    evidence: dict[str, Any] = {"step": step["step"], "micro_batches": len(micros),
                                "supervised": [m["supervised"] for m in micros],
                                "trainer_items": micros[0]["trainer_items"] if micros else None,
                                "forward_items": [m["forward_items"] for m in micros]}
    missing = next((why for m in micros for why, bad in (
        ("no forward with grad", m["forwards"] < 1), ("no backward", m["backwards"] < 1),
        ("no labels reached the forward", m["supervised"] is None),
        ("the forward returned no loss", m["forward_loss"] is None),
        ("no backpropagated loss", m["backward_loss"] is None)) if bad), None)
    if not micros or missing:
        evidence["unobserved"] = missing or "no micro-batch went through training_step"
        return None, evidence
    n_local = sum(m["supervised"] for m in micros)
    n_global = n_global if world > 1 else n_local
    if not n_global:
        evidence["unobserved"] = "the step's supervised token count over all ranks is unknown" if n_global is None \
            else "no supervised token in the step"
        return None, evidence
    accum = len(micros)
    weights = []  # per token, after DDP's average over ranks, for micro-batches that hold tokens
    for m in micros:
        if not m["supervised"]:
            continue
        divisor = m["forward_items"] if m["forward_items"] is not None else m["supervised"]
        token_sum = m["forward_loss"] * divisor
        effective = m["backward_loss"] / (m["accelerate_divisor"] or 1)
        weights.append((m["supervised"], effective / token_sum / world if token_sum else float("nan")))
    evidence["weight_x_step_tokens"] = [round(w * n_global, 6) for _, w in weights]
    denominators = {STEP: lambda n: n_global, RANK: lambda n: world * n_local, MICRO: lambda n: world * accum * n}
    candidates = [c for c in ORDER if c != RANK or world > 1]
    fits = [c for c in candidates if weights and all(abs(w * denominators[c](n) - 1.0) <= TOL for n, w in weights)]
    return fits, evidence


def _observed(steps: list[dict[str, Any]], world: int, global_tokens: dict[int, int],
              notes: list[str]) -> tuple[str | None, list[dict[str, Any]]]:
    consistent: list[str] | None = None
    evidence = []
    for step in steps:
        fits, ev = _observe_step(step, world, global_tokens.get(step["step"]))
        evidence.append(ev)
        if fits is None:
            notes.append(f"loss_normalization: step {step['step']} not observed ({ev['unobserved']})")
            return None, evidence
        consistent = fits if consistent is None else [c for c in consistent if c in fits]
    if consistent is None:
        return None, evidence
    if all(len(s["micro_batches"]) * world == 1 for s in steps):
        return STEP, evidence  # one micro-batch on one rank: every normalisation is its token mean
    if not consistent:
        weights = [w for ev in evidence for w in ev.get("weight_x_step_tokens", [])]
        return f"other (token weight x step tokens: {', '.join(f'{w:.3f}' for w in weights)})", evidence
    if len(consistent) > 1:
        notes.append(f"loss_normalization: the {len(steps)} probed step(s) fit {' and '.join(consistent)} alike "
                     "(their micro-batches hold equally many supervised tokens)")
    return "|".join(consistent), evidence


def _flags(reading: dict[str, Any] | None, steps: list[dict[str, Any]], world: int, average_across: Any,
           global_tokens: dict[int, int]) -> str | None:
    """The stock Trainer's rule (transformers trainer.py training_step / compute_loss) on the live trainer's flags."""
    if reading is None or not steps:
        return None
    values = set()
    for step in steps:
        micros = step["micro_batches"]
        if not micros:
            return None
        if len(micros) * world == 1:
            values.add(STEP)
            continue
        items = micros[0]["trainer_items"]
        supervised = [m["supervised"] for m in micros]
        n_local = sum(supervised) if all(isinstance(s, float) for s in supervised) else None
        n_global = global_tokens.get(step["step"]) if world > 1 else n_local
        if items is None or (not reading.get("model_accepts_loss_kwargs") and reading.get("compute_loss_func") is None):
            values.add(MICRO)
        elif world > 1 and average_across and items == n_global:
            values.add(STEP)
        elif world > 1 and items == n_local:
            values.add(RANK)
        elif world == 1 and items == n_local:
            values.add(STEP)
        else:
            values.add("other")
    return values.pop() if len(values) == 1 else "other"


def _mechanism(steps: list[dict[str, Any]]) -> str | None:
    micros = [m for s in steps for m in s["micro_batches"]]
    if not micros:
        return None
    if any(m["forward_items"] is not None for m in micros):
        return "num_items_in_batch passed to the model's forward"
    if any(m["trainer_items"] is not None for m in micros):
        return "num_items_in_batch passed to compute_loss, not to the forward"
    return "no token count: each micro-batch's loss is its own mean"


def read_loss_normalization(live: Any, meter: Any, out: dict[str, Any], notes: list[str]) -> None:
    probe = getattr(live, "loss_probe", None)
    args = getattr(live, "args", None)
    world = attr_path(args, "world_size") or 1
    keys = ("loss_normalization", "loss_normalization_source", "loss_normalization_flags",
            "loss_normalization_mechanism", "loss_normalization_trainer", "loss_normalization_steps")
    out.update(dict.fromkeys(keys))
    if probe is None or probe.not_started:
        notes.append(f"loss_normalization unknown: {probe.not_started if probe is not None else 'no loss probe'}")
        return
    steps = probe.observed()
    global_tokens = _global_tokens(meter)
    observed, evidence = _observed(steps, world, global_tokens, notes)
    flags = _flags(probe.trainer_reading, steps, world, attr_path(args, "average_tokens_across_devices"), global_tokens)
    out["loss_normalization"] = observed if observed is not None else flags
    out["loss_normalization_source"] = "observed" if observed is not None else ("trainer flags" if flags else None)
    out["loss_normalization_flags"] = flags
    out["loss_normalization_mechanism"] = _mechanism(steps)
    out["loss_normalization_trainer"] = jsonable(probe.trainer_reading)
    out["loss_normalization_steps"] = jsonable(evidence)
    if observed is not None and flags is not None and observed != flags:
        notes.append(f"loss_normalization: observed {observed}, but the trainer's flags read as {flags} under the "
                     "stock Trainer rule (its compute_loss or training_step is not the stock one)")
