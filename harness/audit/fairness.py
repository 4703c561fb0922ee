"""Diff the live-object audits of one sweep point across frameworks; refuse the comparison in strict mode.

``STRICT_FIELDS`` is the one list of what must be identical for a fair comparison (``fairness=strict``,
the default): any difference there makes the point invalid. ``INFORMATIONAL_FIELDS`` are shown beside
them, never enforced. In ``native`` mode every framework runs with its own recommended settings, so the
point stays valid and every difference (strict or not) is listed for the report.

Floats compare with a relative tolerance (``REL_TOL``); lists whose order means nothing
(``UNORDERED_FIELDS``) compare as sorted lists.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from harness.records import Result

REL_TOL = 1e-6

STRICT_FIELDS: tuple[str, ...] = (
    # model and adapter
    "trainable_params", "total_params",
    "lora_modules", "lora_module_count", "lora_r", "lora_alpha", "lora_dropout", "lora_scaling",
    "use_rslora", "use_dora", "lora_bias",
    # the adapters' weights as training starts (seed and init of every lora_A / lora_B, in module order)
    "lora_init_hash",
    "quantization", "base_dtype", "trainable_dtype", "mixed_precision", "attn_implementation",
    # optimisation
    "optimizer", "lr", "betas", "eps", "weight_decay", "max_grad_norm",
    "lr_scheduler", "warmup_steps", "total_steps",
    # how a step's loss is normalised over its micro-batches and ranks, as observed in the first steps
    "loss_normalization",
    # batching and data
    "per_device_batch", "grad_accum", "world_size", "effective_batch",
    "max_length", "packing", "padding_free", "loss_mask_share", "padded_lengths",
    "first_batch_hash", "eval_set_hash", "train_set_hash",
    # memory/time trade-offs that are part of the recipe
    "gradient_checkpointing",
    # the attention kernels SDPA may run (train.sdpa_backend) and the one it picks for the job's calls
    "sdpa_enabled", "sdpa_choice",
    "seed",
)

INFORMATIONAL_FIELDS: tuple[str, ...] = (
    "base_dtypes", "quantization_detail", "optimizer_module", "optimizer_params",
    "optimizer_groups", "optimizer_options", "lr_final", "lr_scheduler_class", "lr_lambda",
    "lr_scheduler_type_args", "scheduler_training_steps", "global_step", "dataloader_batch_size",
    "data_seed", "args_optim", "loss_type", "completion_only_loss", "assistant_only_loss", "average_tokens_across_devices",
    "max_length_source", "packing_strategy", "packing_source", "padding_free_source",
    "batch_padding_free", "batch_packed", "truncation_mode", "truncation_strategy",
    "records_truncated", "records_total", "records_max_tokens",
    "first_batches_multiset_hash", "first_batch_rows", "first_batches_seen", "first_batches_tokens",
    "first_batches_supervised", "chat_template_hash", "pad_token_id", "eos_token_id",
    # Reentrant or not, the same activations are recomputed and the gradients are the same: it changes
    # speed and memory a little, not the math. unsloth installs its own reentrant checkpoint function
    # even when asked for standard checkpointing (seen on the H200), so it is shown, not enforced.
    "gradient_checkpointing_use_reentrant",
    "gradient_checkpointing_kind", "gradient_checkpointing_func", "gradient_checkpointing_args",
    "lora_config_targets", "lora_init", "lora_modules_to_save",
    "lora_B_nonzero", "lora_B_norm", "lora_A_norm", "collator", "pad_to_multiple_of",
    "lora_init_tensors", "lora_init_A_norm", "lora_init_B_norm", "lora_init_B_nonzero", "lora_init_read_at",
    "loss_normalization_source", "loss_normalization_flags", "loss_normalization_mechanism",
    "loss_normalization_trainer", "loss_normalization_steps",
    "sdpa_probe", "sdpa_priority", "sdpa_enabled_at_end", "sdpa_kv",
)

# recipe=recommended (issue 17): what stays the task when each framework runs its own features, strict across
# the frameworks of a recommended point (a mismatch refuses it); every other difference is listed, per
# framework against its identical run (harness/audit/recipe_audit.py).
TASK_FIELDS: tuple[str, ...] = (
    "trainable_params", "total_params",
    "lora_modules", "lora_module_count", "lora_r", "lora_alpha", "lora_dropout", "lora_scaling",
    "use_rslora", "use_dora", "lora_bias",
    "quantization", "mixed_precision",
    "lr", "betas", "eps", "weight_decay", "max_grad_norm", "lr_scheduler", "warmup_steps", "seed",
    "eval_set_hash", "train_set_hash", "chat_template_hash",
)

UNORDERED_FIELDS: frozenset[str] = frozenset({"lora_modules", "lora_config_targets", "lora_modules_to_save"})

# Fields that are per-run evidence (expected to differ even between repeats, or between frameworks whose classes
# differ while the math is the same: the loss probe's trainer classes and raw readings): listed, never "mismatch".
_EVIDENCE_FIELDS: frozenset[str] = frozenset({"lora_B_norm", "lora_A_norm", "lr_final", "global_step",
                                              "loss_normalization_trainer", "loss_normalization_steps"})


def _canon(field: str, value: Any) -> Any:
    if field in UNORDERED_FIELDS and isinstance(value, (list, tuple)):
        return sorted(value, key=repr)
    if isinstance(value, tuple):
        return list(value)
    return value


def values_equal(a: Any, b: Any, *, rel_tol: float = REL_TOL) -> bool:
    """Equality with a relative float tolerance, recursing into lists and dicts; bools are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=rel_tol, abs_tol=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(values_equal(x, y, rel_tol=rel_tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(values_equal(a[k], b[k], rel_tol=rel_tol) for k in a)
    return a == b


def _all_equal(field: str, values: list[Any]) -> bool:
    canon = [_canon(field, v) for v in values]
    return all(values_equal(canon[0], v) for v in canon[1:])


def diff_point(audits: dict[str, dict[str, Any]], *, strict_fields: Iterable[str] = STRICT_FIELDS) -> dict[str, Any]:
    """Compare the audits of one sweep point, keyed by run label (e.g. ``"trl-1.16.0"``).

    Returns ``{fields: [{field, values: {label: value}, match, strict}], mismatches: [strict fields
    that differ, as in fields], valid}``. A strict field missing from an audit counts as ``None``
    (so a framework that could not report it does not pass silently). With fewer than two audits
    nothing can differ and the point is valid.
    """
    strict = tuple(strict_fields)
    labels = sorted(audits)
    ordered = list(strict) + [f for f in INFORMATIONAL_FIELDS if f not in strict]
    extra = sorted({k for a in audits.values() for k in (a or {})} - set(ordered) - {"notes", "schema", "framework"})
    rows: list[dict[str, Any]] = []
    for field in ordered + extra:
        values = {label: (audits[label] or {}).get(field) for label in labels}
        if field not in strict and all(v is None for v in values.values()):
            continue
        match = True if len(labels) < 2 or field in _EVIDENCE_FIELDS else _all_equal(field, list(values.values()))
        rows.append({"field": field, "values": values, "match": match, "strict": field in strict})
    mismatches = [row for row in rows if row["strict"] and not row["match"]]
    return {"fields": rows, "mismatches": mismatches, "valid": not mismatches}


def run_label(record: Result) -> str:
    return record.label


def audit_point(records: list[Result], mode: str = "strict") -> dict[str, Any]:
    """The fairness verdict of ONE sweep point from its result records (status ``ok`` only).

    Repeats of the same framework version are folded into one label: the first ok repeat's audit is
    compared, and any strict field that differs between its repeats is reported as
    ``repeat_mismatches`` (that would be non-determinism in what was built). ``mode`` is ``strict``
    (any strict mismatch makes the point invalid) or ``native`` (valid stays True, every difference,
    strict or informational, is listed in ``differences``). A point of recommended runs (recipe=recommended)
    is audited in ``task`` mode unless ``native``: only ``TASK_FIELDS`` must match across its frameworks.
    """
    if mode not in ("strict", "native"):
        raise ValueError(f"fairness mode must be strict or native, got {mode!r}")
    recommended = bool(records) and all(r.recipe_name == "recommended" for r in records)
    if recommended and mode == "strict":
        mode = "task"
    ok = [r for r in records if r.ok]
    skipped = sorted({run_label(r) for r in records if not r.ok})
    by_label: dict[str, list[Result]] = {}
    for r in sorted(ok, key=lambda r: (run_label(r), r.repeat or 0)):
        by_label.setdefault(run_label(r), []).append(r)
    audits: dict[str, dict[str, Any]] = {}
    missing_audit: list[str] = []
    repeat_mismatches: list[dict[str, Any]] = []
    for label, runs in by_label.items():
        with_audit = [r for r in runs if r.audit is not None]
        if not with_audit:
            missing_audit.append(label)
            audits[label] = {}
            continue
        audits[label] = with_audit[0].audit.fields()
        if len(with_audit) > 1:
            rep = diff_point({f"{label}#r{r.repeat if r.has('repeat') else i}": r.audit.fields()
                              for i, r in enumerate(with_audit)})
            repeat_mismatches.extend({**m, "label": label} for m in rep["mismatches"])
    result = diff_point(audits, strict_fields=TASK_FIELDS if mode == "task" else STRICT_FIELDS)
    result["mode"] = mode
    result["recipe_name"] = "recommended" if recommended else "identical"
    result["point_hash"] = next((r.point_hash for r in records if r.point_hash), None)
    result["labels"] = sorted(audits)
    result["skipped"] = skipped
    result["missing_audit"] = missing_audit
    result["repeat_mismatches"] = repeat_mismatches
    result["differences"] = [row for row in result["fields"] if not row["match"]]
    result["notes"] = {label: list((audits[label] or {}).get("notes") or []) for label in sorted(audits)}
    if mode == "native":
        result["valid"] = True
    elif missing_audit:
        result["valid"] = False
    return result


def audit_sweep(records: list[Result], mode: str = "strict") -> list[dict[str, Any]]:
    """One :func:`audit_point` per sweep point (records grouped by ``point_hash``), in first-seen order; a
    recommended point also gets ``recipe``: each framework against its identical twin among ``records``
    (harness/audit/recipe_audit.py)."""
    from harness.audit.recipe_audit import compare_with_twins

    groups: dict[Any, list[Result]] = {}
    for r in records:
        groups.setdefault(r.point_hash, []).append(r)
    audits = []
    for group in groups.values():
        audit = audit_point(group, mode)
        if audit["recipe_name"] == "recommended":
            audit["recipe"] = compare_with_twins(group, records)
        audits.append(audit)
    return audits


def write_audit(path: str | Path, audits: Any) -> Path:
    """Write an audit (one point's dict or a sweep's list) as JSON, atomically."""
    from harness.atomic import atomic_write_json

    path = Path(path)
    atomic_write_json(path, audits)
    return path
