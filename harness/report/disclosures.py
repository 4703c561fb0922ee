"""What a reader must know before trusting a comparison, in plain words: failed cross-checks, audit
mismatches, and disclosures (shared host, single repeat, random weights, uncommitted code).

Host concurrency comes from, in order: ``result["host"]["disclosure"]`` (recorded at run time by the
parent's sampler: other processes on the run's GPUs, the host's other busy GPUs, other processes' CPU); a ``disclosures.json`` note file in the
results folder or any folder above it, for facts known about older runs but not recorded with them
(layout: ``[{"match": {"dotted.path": [allowed values]}, "text": "..."}]``, a record matches when every
path holds one of its values); and, where neither exists, what the record does show (the run saw only
some of its host's GPUs, so other work may have shared the host: not recorded).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.records import Result

NOTE_FILE = "disclosures.json"

CHECK_WORDS = {
    "tokens_match_framework": "our count of tokens that entered the model differs from the framework's own count",
    "nvml_peak_ge_torch_reserved": "the GPU memory peak seen by NVML is below the allocator's reserved peak "
                                   "(one of the two memory readings is wrong)",
    "eval_loss_matches_framework": "our eval loss and the framework's own eval loss on the same records differ "
                                   "by more than the rounding of the model's precision allows",
    "loss_fell": "the training loss did not fall",
    "grad_norm_positive": "a gradient norm was zero or not finite",
    "lora_weights_changed": "the LoRA weights did not change (nothing was trained)",
    "timing_settled": "a timed step of the run's first half was far slower than the steady state (warm-up too short)",
    "no_compile_in_timed_steps": "torch.compile compiled inside the timed steps, so the speed includes compilation",
}

AUDIT_WORDS = {
    "trainable_dtype": "the trainable LoRA weights were kept in different dtypes",
    "base_dtype": "the frozen base weights were stored in different dtypes",
    "base_dtypes": "the frozen base weights were stored in different dtypes",
    "quantization": "the base model was quantized differently",
    "padded_lengths": "batches were padded to different lengths",
    "first_batch_hash": "the first batches held different tokens",
    "first_batches_multiset_hash": "the first batches held different records",
    "loss_type": "the loss was computed differently",
    "trainable_params": "a different number of parameters was trained",
    "lora_modules": "LoRA was applied to different modules",
    "optimizer": "a different optimizer was used",
    "lr": "the learning rates differ",
    "effective_batch": "the effective batch sizes differ",
    "gradient_checkpointing": "gradient checkpointing differs",
    "mixed_precision": "the mixed precision differs",
    "max_length": "the maximum sequence lengths differ",
    "eval_set_hash": "the eval records differ",
    "train_set_hash": "the training records differ",
}


def check_failures(runs: list[Result]) -> list[dict[str, Any]]:
    """One entry per failed cross-check name: plain words, the runs it failed in, explained or not.

    A check counts as explained when it carries ``explained: true`` or an ``explanation`` text (the check
    itself knows why it cannot agree); only unexplained failures withhold the word "fair"."""
    by_name: dict[str, dict[str, Any]] = {}
    for r in sorted(runs, key=lambda r: (str(r.framework.name), r.repeat or 0)):
        if not r.ok:
            continue
        for c in r.checks:
            if c.passed is not False:
                continue
            entry = by_name.setdefault(c.name, {"name": c.name, "runs": [], "details": [],
                                                "explanations": [], "explained": True,
                                                "words": CHECK_WORDS.get(c.name, f"check {c.name} failed")})
            fw = r.framework
            entry["runs"].append(f"{fw.name} r{r.repeat or 0}")
            entry["details"].append(f"{fw.name} r{r.repeat or 0}: {c.detail}")
            explanation = c.explanation or ("explained" if c.explained else None)
            if explanation:
                entry["explanations"].append(str(explanation))
            else:
                entry["explained"] = False
    out = list(by_name.values())
    for e in out:
        e["text"] = f"Cross-check failed in {', '.join(e['runs'])}: {e['words']}" + (
            f" (explained: {'; '.join(dict.fromkeys(e['explanations']))})." if e["explained"] else
            " — not explained, so this is not called a fair comparison.")
    return out


def audit_words(audit: dict[str, Any] | None) -> list[str]:
    """The strict mismatches of a fairness audit as sentences (values shown where they are short)."""
    out = []
    for m in (audit or {}).get("mismatches") or []:
        field = str(m.get("field"))
        values = m.get("values") or {}
        shown = ", ".join(f"{label}: {json.dumps(v, default=str)}" for label, v in values.items())
        words = AUDIT_WORDS.get(field, f"{field} differs")
        out.append(f"{words} ({field}: {shown})" if len(shown) <= 160 else f"{words} ({field}; values in the audit table)")
    for label in (audit or {}).get("missing_audit") or []:
        out.append(f"{label} recorded no audit of what it trained, so nothing can be compared for it")
    return out


@lru_cache(maxsize=64)
def _notes_in(folder: str) -> tuple[dict[str, Any], ...]:
    path = Path(folder) / NOTE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ()
    return tuple(n for n in data if isinstance(n, dict) and isinstance(n.get("text"), str)) if isinstance(data, list) else ()


def _note_matches(note: dict[str, Any], record: Result) -> bool:
    match = note.get("match") or {}
    return all(record.lookup(path) in (allowed if isinstance(allowed, list) else [allowed])
               for path, allowed in match.items())


def host_sentence(record: Result) -> str | None:
    """What is known about other work on the run's host, or None where nothing needs saying."""
    host = record.host
    if host is not None and isinstance(host.disclosure, dict):
        # recorded by the sampler during the run (harness/sampling/host_activity.py): GPU neighbours per
        # NVML, the host's other busy GPUs, other processes' CPU use; judged by today's thresholds
        from harness.sampling.host_activity import host_disclosure as judge  # noqa: PLC0415

        verdict = judge(host.to_dict())
        if verdict.get("shared"):
            return "; ".join(verdict.get("because") or []) + " (recorded at run time)"
        if verdict.get("shared") is False:
            return None
    source = record.source
    if source:
        for folder in Path(source).resolve().parents:
            for note in _notes_in(str(folder)):
                if _note_matches(note, record):
                    return note["text"]
    visible = record.env.cuda_visible_devices
    if visible not in (None, ""):
        return (f"the run saw only GPU {visible} of its host (CUDA_VISIBLE_DEVICES); whether other work used the "
                f"host's other GPUs or CPUs at the same time was not recorded")
    return None


def disclosures(runs: list[Result]) -> list[str]:
    """Everything that qualifies the numbers of one sweep point, as sentences."""
    ok = [r for r in runs if r.ok]
    out: list[str] = []
    hosts: dict[str, list[str]] = {}
    for r in ok:
        text = host_sentence(r)
        if text:
            hosts.setdefault(text, []).append(str(r.framework.name))
    for text, fws in hosts.items():
        who = ", ".join(dict.fromkeys(fws))
        out.append(f"Shared host ({who}): {text}.")
    counts: dict[str, int] = {}
    for r in ok:
        label = f"{r.framework.name}"
        counts[label] = counts.get(label, 0) + 1
    single = [label for label, n in counts.items() if n < 2]
    if single:
        out.append(f"Single run for {', '.join(single)}: no spread was measured, so a difference can be neither "
                   f"confirmed nor dismissed as noise; a ★ there rests on the 2% margin alone.")
    if any(r.job.model.weights == "random" for r in runs):
        out.append("Random weights: the model was randomly initialised (same seed and files for every framework), "
                   "so eval losses compare across these frameworks only, not with a pretrained model.")
    if any(r.env.git.dirty for r in runs):
        out.append("Uncommitted code: the harness checkout had uncommitted changes when these runs were made.")
    return out
