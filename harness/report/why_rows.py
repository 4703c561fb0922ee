"""The rows of the report's "Why they differ" section (harness/report/why.py): which profiled run stands for
each row, how a row is labelled (a controlled rerun by its one change), the fields every row carries (the
loss path and peft's LoRA input casts, read back), and each controlled rerun's twin, the same framework's run
without the change. Shared by the memory and the time blocks (why_memory.py, why_time.py)."""
from __future__ import annotations

from typing import Any

from harness.records import Result
from harness.report.tables import by_label_and_repeat
from harness.report.why_lora_cast import cast_change, cast_fields
from harness.report.why_points import train_changes

# the tables' column heads (the figures' legends carry the long labels)
SHORT = {"frozen_weights": "frozen weights", "trainable_state": "trainable + grads + optimizer",
         "activations": "activations", "logits_loss": "logits + loss", "other": "other",
         "fragmentation": "fragmentation", "non_pytorch": "non-PyTorch",
         "data": "data", "forward": "forward", "loss": "head + loss", "backward": "backward", "optimizer": "optimizer",
         "gaps": "gaps"}


# A section's point: its control train values (harness/report/why_points.py); None: every field at its default.
Point = dict[str, Any] | None


def first(runs: list[Result], kind: str, point: Point = None) -> dict[str, tuple[Result, Any]]:
    """label -> (run, its ok profile of ``kind``): the first repeat with one."""
    out: dict[str, tuple[Result, Any]] = {}
    for r in sorted(runs, key=by_label_and_repeat):
        prof = getattr(r.profile, kind, None) if r.ok and r.profile is not None else None
        if prof is not None and prof.status == "ok" and row_label(r, point) not in out:
            out[row_label(r, point)] = (r, prof)
    return out


def changes(r: Result, point: Point = None) -> list[str]:
    """A controlled rerun's one change, where it has one: the allocator setting (``profile.alloc_conf``),
    the same loss in every framework (``profile.loss``, as ``loss=transformers``), peft's LoRA input cast
    (``profile.lora_input_cast``, as ``lora_input_cast=off``), the checkpointing kind (``profile.checkpointing``,
    as ``checkpointing=reentrant``), the SDPA kernel allowed where it is not the
    point's (``train.sdpa_backend``, as ``sdpa=efficient``, or ``sdpa=auto`` in a suite that pins one)."""
    prof = r.job.profile
    if prof is None:
        return []
    return ([prof.alloc_conf] if prof.alloc_conf else []) + ([f"loss={prof.loss}"] if prof.loss else []) \
        + ([f"lora_input_cast={prof.lora_input_cast}"] if prof.lora_input_cast else []) \
        + ([f"checkpointing={prof.checkpointing}"] if prof.checkpointing else []) \
        + train_changes(r.job.train, point)


def row_label(r: Result, point: Point = None) -> str:
    """framework-version, and the controlled rerun's one change where it has one."""
    named = changes(r, point)
    return f"{r.label} ({', '.join(named)})" if named else r.label


def loss_cell(r: Result) -> str:
    """The loss path the run's training steps took, read back (harness/worker/loss_path.py), in a few words."""
    lp = r.profile.loss_path if r.profile is not None else None
    if lp is None or not lp.micro_steps:
        return "not read back"
    if lp.common_loss_calls:
        return f"full {lp.logits_dtype} logits -> ForCausalLMLoss ({lp.loss_dtype}), the harness's"
    if lp.head_calls:
        return f"full {lp.logits_dtype} logits -> {(lp.model_loss_function or '?').rsplit('.', 1)[-1]}"
    return "fused: no full logits"


def base(r: Result, row: dict[str, Any], point: Point = None) -> dict[str, Any]:
    """``row`` with the fields every row carries: its framework, whether it is a controlled rerun, its loss path
    and its LoRA input casts."""
    return {**row, "framework": r.label, "control": bool(changes(r, point)), "loss": loss_cell(r),
            "loss_path": (r.profile.loss_path.path if r.profile is not None and r.profile.loss_path else None),
            **cast_fields(r)}


def twins(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(controlled rerun, the same framework's run without the change) pairs."""
    native = {row["framework"]: row for row in rows if not row["control"]}
    return [(row, native[row["framework"]]) for row in rows if row["control"] and row["framework"] in native]


def biggest(hi: dict[str, float], lo: dict[str, float]) -> str:
    """The part by which ``hi`` exceeds ``lo`` most."""
    return max(hi, key=lambda k: (hi.get(k) or 0) - (lo.get(k) or 0))


def loss_change(twin: dict[str, Any], ctl: dict[str, Any]) -> str:
    """A control sentence's tail: the loss path and the LoRA input casts of the twin against the rerun's."""
    loss = (f"loss path {twin['loss']} -> {ctl['loss']}" if twin["loss"] != ctl["loss"]
            else f"same loss path ({ctl['loss']})")
    return loss + cast_change(twin, ctl)
