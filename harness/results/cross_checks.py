"""Cross-checks written into every result: each figure against a second, independent measurement.

A check is a :class:`harness.records.Check` {name, passed, detail}; ``passed`` is None where it does not
apply (no GPU, the framework reports no eval loss). Definitions are in the README ("What each figure means").
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from harness.records.audit import Audit
from harness.records.checks import Check
from harness.records.memory import Memory
from harness.records.training import Eval, Train, Warmup

if TYPE_CHECKING:
    from harness.records.result import Result

# Unit roundoff of the dtype the model computes in: bf16 keeps 8 significant bits, fp16 11, fp32 24.
UNIT_ROUNDOFF = {"bfloat16": 2.0 ** -8, "float16": 2.0 ** -11, "float32": 2.0 ** -24}
# Floor for fp32: reduction order of a few thousand float32 terms, and float64 summation on our side.
EVAL_FLOOR = 1e-5
# The rule results recorded before logits_rms existed were judged by (kept for them: same verdicts).
LEGACY_EVAL_AGREEMENT = 1e-3


def eval_tolerance(compute_dtype: str | None, logits_rms: float | None) -> float:
    """How far two correct evaluations of the same model on the same records may differ.

    Both sides compute cross-entropy in float32 from logits that carry the rounding of the dtype the model
    computes in (its base weights' dtype: transformers hands back float32 logits from a bf16 model, but
    they were rounded to bf16). Two correct implementations (unsloth's fused loss against the full logits,
    another matmul tiling for another batch shape) see each logit z moved by up to ``u * |z|``; a token's
    loss ``logsumexp(z) - z_y`` then moves by at most about ``u * rms(z)``, and so does the mean over
    tokens when the errors share a sign, as a different kernel's errors can (unsloth's fused eval loss was
    1.0-3.3e-4 above ours in all three 7B repeats of session 3, 2.5-8x what independent errors would give).
    Allowed: ``u * rms(z)``, ``logits_rms`` measured by our evaluator at the supervised positions (7B bf16
    random-init: 1.20 -> 4.7e-3). A masking or averaging difference (a token more or less per record) or
    another model's losses move the mean by 1e-2 and more and still fail. Results without ``logits_rms``
    keep the fixed 1e-3 they were recorded under.
    """
    if not logits_rms:
        return LEGACY_EVAL_AGREEMENT
    u = UNIT_ROUNDOFF.get(compute_dtype or "", UNIT_ROUNDOFF["bfloat16"])
    return max(EVAL_FLOOR, u * logits_rms)


def _check(name: str, passed: bool | None, detail: str) -> Check:
    return Check(name=name, passed=passed, detail=detail)


def token_count(train: Train) -> Check:
    ours, theirs = train.tokens, train.framework_tokens_seen
    if ours is None or not theirs:
        return _check("tokens_match_framework", None, "the framework reported no token count")
    passed = int(ours) == int(theirs)
    detail = f"ours {ours}, framework {theirs}"
    if not passed:
        detail += " (framework counts attention_mask of every micro-batch it saw, ours the batches entering the model)"
    return _check("tokens_match_framework", passed, detail)


def memory_order(memory: Memory) -> Check:
    nvml, reserved = memory.nvml_peak_bytes, memory.torch_max_reserved_bytes
    if nvml is None or reserved is None:
        return _check("nvml_peak_ge_torch_reserved", None, "no GPU memory readings")
    return _check("nvml_peak_ge_torch_reserved", nvml >= reserved,
                  f"NVML peak above idle {nvml / 2**20:.0f} MiB, torch reserved peak {reserved / 2**20:.0f} MiB")


def ddp_step_mean(record_losses: list[list[float]], world_size: int) -> float | None:
    """What transformers reports as eval loss under DDP at eval batch 1 with ``average_tokens_across_devices``:
    eval step k hands record kW+r to rank r, each rank's loss is divided by the tokens gathered over all ranks
    and multiplied by W, so a step's loss is the token-weighted mean of its W records; steps are averaged."""
    steps = [record_losses[i:i + world_size] for i in range(0, len(record_losses), world_size)]
    means = [sum(s for s, _ in step) / sum(n for _, n in step) for step in steps if sum(n for _, n in step)]
    return sum(means) / len(means) if means else None


def eval_agreement(evaluation: Eval, world_size: int = 1, compute_dtype: str | None = None) -> Check:
    """Our evaluator against the framework's own eval loss, averaged the way a Trainer averages it: the mean over
    records (eval batch 1); under DDP also transformers' token-weighted mean per eval step (see ``ddp_step_mean``),
    which frameworks that compute their own loss (trl) do not use. Passes if the framework matches either."""
    ours, theirs = evaluation.record_mean_loss, evaluation.framework_loss
    if ours is None or theirs is None:
        return _check("eval_loss_matches_framework", None, "the framework computed no eval loss")
    candidates = {"mean over records, as the framework averages": ours}
    if world_size > 1 and evaluation.record_losses:
        candidates[f"token-weighted per eval step of {world_size} ranks, as transformers averages under DDP"] = (
            ddp_step_mean(evaluation.record_losses, world_size))
    how, value = min(((k, v) for k, v in candidates.items() if v is not None), key=lambda kv: abs(kv[1] - theirs))
    diff = abs(value - theirs)
    dtype = compute_dtype or evaluation.logits_dtype
    tol = eval_tolerance(dtype, evaluation.logits_rms)
    shapes = ("same batch shapes as the framework's eval" if evaluation.batch_size == 1
              else "our batches differ in shape from the framework's eval (batch 1)")
    rms = evaluation.logits_rms
    check = _check("eval_loss_matches_framework", diff <= tol,
                   f"ours {value:.5f} ({how}), framework {theirs:.5f}, |diff| {diff:.2e}, tolerance {tol:.1e} "
                   f"({dtype or 'dtype not recorded, bf16 assumed'} model, logits rms "
                   f"{f'{rms:.3g}' if rms else 'not recorded: the fixed 1e-3 of older results'}, "
                   f"over {evaluation.tokens} tokens; {shapes})")
    if not check.passed and evaluation.batch_size != 1:
        # Results from before the evaluation ran at the framework's shapes: not like with like.
        check.explanation = ("our evaluation batched records differently from the framework's (batch 1), and "
                                "bf16 rounds differently shaped matmuls differently (1.1-1.6e-3 on the 7B jobs of "
                                "session 2); runs made since evaluate at the framework's shapes")
    return check


def loss_fell(log: list[dict[str, Any]]) -> Check:
    losses = [s["loss"] for s in log if s.get("loss") is not None]
    if len(losses) < 4:
        return _check("loss_fell", None, f"only {len(losses)} logged losses")
    k = max(1, len(losses) // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return _check("loss_fell", last < first, f"mean of first {k} steps {first:.4f}, last {k} steps {last:.4f}")


def grad_norm_positive(log: list[dict[str, Any]]) -> Check:
    norms = [s["grad_norm"] for s in log if s.get("grad_norm") is not None]
    if not norms:
        return _check("grad_norm_positive", None, "the framework logged no gradient norm")
    bad = [n for n in norms if not (math.isfinite(n) and n > 0)]
    return _check("grad_norm_positive", not bad, f"{len(norms)} steps, min {min(norms):.3g}, non-positive or non-finite {len(bad)}")


def lora_changed(audit: Audit) -> Check:
    norm = audit.lora_B_norm
    if norm is None:
        return _check("lora_weights_changed", None, "LoRA weights not readable")
    # lora_B starts at exactly zero, so any norm above zero proves the adapters were updated.
    return _check("lora_weights_changed", norm > 0, f"Frobenius norm of lora_B weights {norm:.3g} (starts at 0)")


def timing_settled(warmup: Warmup | None) -> Check:
    """Compilation, autotuning and allocator growth ended before timing started (harness/worker/step_meter.py):
    no step of the run's first half after the fixed warm-up took more than ``settle_factor`` x the steady line."""
    if warmup is None or not warmup.settle_factor:
        return _check("timing_settled", None, "not verified (train.settle_factor is not set)")
    if not warmup.has("unsettled_timed_steps"):  # recorded while the window still moved past slow steps
        return _check("timing_settled", True, f"timing was moved past the slow steps, to after step "
                      f"{warmup.timing_starts_after_step} (recorded before the window was fixed)")
    if warmup.settled is None:
        return _check("timing_settled", None, "too few steps to fit the steady line")
    after, unsettled = warmup.timing_starts_after_step, warmup.unsettled_timed_steps or []
    if unsettled:
        return _check("timing_settled", False, f"timed steps {unsettled} took more than {warmup.settle_factor}x the "
                      f"steady line after timing started (after step {after}): raise train.measure_warmup_steps")
    return _check("timing_settled", True, f"no step after step {after} of the run's first half was slower than "
                  f"{warmup.settle_factor}x the steady line")


def no_compile_in_timed_steps(train: Train) -> Check:
    """torch.compile compiled nothing in a timed step (issue 13: compilation never falls in timed steps), read
    per step from dynamo's own timings (harness/worker/host_pauses.py). A shape the compiled graphs had not seen
    (a recompile) in step N fails it, naming the steps: raise train.measure_warmup_steps past them, or pad the
    lengths so fewer new ones come."""
    timed = train.timed_log()
    if not timed:
        return _check("no_compile_in_timed_steps", None, "no step was logged")
    if any(s.get("compiles") is None for s in timed):
        return _check("no_compile_in_timed_steps", None, "not recorded (results before per-step compile readings)")
    compiled = [s for s in timed if s["compiles"]]
    before = sum(int(s.get("compiles") or 0) for s in train.log[:len(train.log) - len(timed)])  # the warm-up's
    if compiled:
        where = ", ".join(f"{s['step']} ({s['compiles']}, {s['compile_s']:.2f} s)" for s in compiled[:6])
        return _check("no_compile_in_timed_steps", False, f"torch.compile compiled in timed steps {where}"
                      f"{' ...' if len(compiled) > 6 else ''}: the figure includes compilation (a warm-up past "
                      "those steps, or fewer padded lengths, keeps it out)")
    return _check("no_compile_in_timed_steps", True, f"none in {len(timed)} timed steps"
                  + (f" ({before} in the warm-up)" if before else ""))


def run_checks(record: Result) -> list[Check]:
    """Every check of one result; a section the run did not record is judged as empty (checks say n/a)."""
    train, audit = record.train or Train(), record.audit or Audit()
    log = train.log or []
    checks = [token_count(train), memory_order(record.memory),
              eval_agreement(record.eval or Eval(), int(train.world_size or 1), audit.base_dtype),
              loss_fell(log), grad_norm_positive(log), lora_changed(audit), timing_settled(train.warmup),
              no_compile_in_timed_steps(train)]
    packing = [str(f.get("id")) for f in (record.recipe.features if record.recipe is not None else [])
               if f.get("packing") and f.get("status") == "active"]
    for check in checks:
        if packing and check.passed is False and check.name in PACKED_EXPLANATIONS:
            check.explanation = f"{', '.join(packing)} (recipe=recommended) is active: {PACKED_EXPLANATIONS[check.name]}"
    return checks


# A recommended recipe that packs (issue 17) changes what the framework's own counters see.
PACKED_EXPLANATIONS = {
    "tokens_match_framework": "the framework counts its packed rows' attention masks (a 4-D additive block mask "
                              "under neat_packing sums to no token count), ours the tokens of each packed sequence",
    "eval_loss_matches_framework": "the framework packs the held-out records too, so its eval loss is a token mean "
                                   "over packed rows, ours the mean over records (the quality check uses ours)",
}
