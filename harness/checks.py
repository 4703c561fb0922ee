"""Cross-checks written into every result: each figure against a second, independent measurement.

A check is {name, passed, detail}; ``passed`` is None where it does not apply (no GPU, the
framework reports no eval loss). Definitions are in the README ("What each figure means").
"""
from __future__ import annotations

import math
from typing import Any

EVAL_AGREEMENT = 1e-3


def _check(name: str, passed: bool | None, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "detail": detail}


def token_count(train: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = train.get("tokens"), train.get("framework_tokens_seen")
    if ours is None or not theirs:
        return _check("tokens_match_framework", None, "the framework reported no token count")
    passed = int(ours) == int(theirs)
    detail = f"ours {ours}, framework {theirs}"
    if not passed:
        detail += " (framework counts attention_mask of every micro-batch it saw, ours the batches entering the model)"
    return _check("tokens_match_framework", passed, detail)


def memory_order(memory: dict[str, Any]) -> dict[str, Any]:
    nvml, reserved = memory.get("nvml_peak_bytes"), memory.get("torch_max_reserved_bytes")
    if nvml is None or reserved is None:
        return _check("nvml_peak_ge_torch_reserved", None, "no GPU memory readings")
    return _check("nvml_peak_ge_torch_reserved", nvml >= reserved,
                  f"NVML peak above idle {nvml / 2**20:.0f} MiB, torch reserved peak {reserved / 2**20:.0f} MiB")


def eval_agreement(evaluation: dict[str, Any]) -> dict[str, Any]:
    ours, theirs = evaluation.get("record_mean_loss"), evaluation.get("framework_loss")
    if ours is None or theirs is None:
        return _check("eval_loss_matches_framework", None, "the framework computed no eval loss")
    diff = abs(ours - theirs)
    return _check("eval_loss_matches_framework", diff <= EVAL_AGREEMENT,
                  f"ours {ours:.5f} (mean over records, as the framework averages), framework {theirs:.5f}, |diff| {diff:.2e}")


def loss_fell(log: list[dict[str, Any]]) -> dict[str, Any]:
    losses = [s["loss"] for s in log if s.get("loss") is not None]
    if len(losses) < 4:
        return _check("loss_fell", None, f"only {len(losses)} logged losses")
    k = max(1, len(losses) // 5)
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    return _check("loss_fell", last < first, f"mean of first {k} steps {first:.4f}, last {k} steps {last:.4f}")


def grad_norm_positive(log: list[dict[str, Any]]) -> dict[str, Any]:
    norms = [s["grad_norm"] for s in log if s.get("grad_norm") is not None]
    if not norms:
        return _check("grad_norm_positive", None, "the framework logged no gradient norm")
    bad = [n for n in norms if not (math.isfinite(n) and n > 0)]
    return _check("grad_norm_positive", not bad, f"{len(norms)} steps, min {min(norms):.3g}, non-positive or non-finite {len(bad)}")


def lora_changed(audit: dict[str, Any]) -> dict[str, Any]:
    norm = audit.get("lora_B_norm")
    if norm is None:
        return _check("lora_weights_changed", None, "LoRA weights not readable")
    # lora_B starts at exactly zero, so any norm above zero proves the adapters were updated.
    return _check("lora_weights_changed", norm > 0, f"Frobenius norm of lora_B weights {norm:.3g} (starts at 0)")


def run_checks(record: dict[str, Any]) -> list[dict[str, Any]]:
    train, log = record.get("train") or {}, (record.get("train") or {}).get("log") or []
    return [token_count(train), memory_order(record.get("memory") or {}), eval_agreement(record.get("eval") or {}),
            loss_fell(log), grad_norm_positive(log), lora_changed(record.get("audit") or {})]
