"""The trainer's own arguments and collator: batch sizes, seed, max length, packing, padding-free."""
from __future__ import annotations

import functools
from typing import Any

from harness.worker.live_fields.values import attr_path, jsonable


def read_batching(live: Any, out: dict[str, Any], notes: list[str]) -> None:
    args = live.args
    per_device = attr_path(args, "per_device_train_batch_size")
    accum = attr_path(args, "gradient_accumulation_steps")
    world = attr_path(args, "world_size")
    out["per_device_batch"] = per_device
    out["grad_accum"] = accum
    out["world_size"] = world
    out["effective_batch"] = (per_device * accum * world
                              if all(isinstance(v, int) for v in (per_device, accum, world)) else None)
    dl = live.train_dataloader
    dl_bs = attr_path(dl, "total_batch_size") or attr_path(dl, "batch_size") or attr_path(dl, "batch_sampler", "batch_size")
    out["dataloader_batch_size"] = dl_bs if isinstance(dl_bs, int) else None
    out["seed"] = attr_path(args, "seed")
    out["data_seed"] = attr_path(args, "data_seed")
    out["max_grad_norm"] = jsonable(attr_path(args, "max_grad_norm"))
    bf16, fp16 = attr_path(args, "bf16"), attr_path(args, "fp16")
    out["mixed_precision"] = "bf16" if bf16 else "fp16" if fp16 else ("no" if args is not None else None)
    out["loss_type"] = jsonable(attr_path(args, "loss_type"))
    out["completion_only_loss"] = attr_path(args, "completion_only_loss")
    out["assistant_only_loss"] = attr_path(args, "assistant_only_loss")
    out["average_tokens_across_devices"] = attr_path(args, "average_tokens_across_devices")
    out["args_optim"] = jsonable(attr_path(args, "optim"))


def read_max_length(live: Any, out: dict[str, Any], notes: list[str]) -> None:
    args = live.args
    value, source = attr_path(args, "max_length"), "args.max_length"
    if value is None:
        value, source = attr_path(args, "max_seq_length"), "args.max_seq_length"
    if value is None:
        # LLaMA-Factory keeps cutoff_len in its DataArguments (not on the Trainer); get_train_args copies it
        # into Seq2SeqTrainingArguments.generation_max_length when that is unset (our adapter leaves it unset).
        value, source = attr_path(args, "generation_max_length"), "args.generation_max_length (a cutoff_len copied there)"
    if value is None:
        # A framework whose truncation lives in a chat template object its collator holds (ms-swift's
        # Template.max_length, reached through the train dataloader's collator).
        value, source = attr_path(train_collator(live), "template", "max_length"), "collator.template.max_length"
    if value is None:
        value, source = attr_path(live.model, "max_seq_length"), "model.max_seq_length"
    if value is None:
        source = None
        notes.append("max_length not found on the live objects (args.max_length, args.generation_max_length, "
                     "collator.template.max_length, model.max_seq_length)")
    out["max_length"] = value if isinstance(value, int) else None
    out["max_length_source"] = source


def train_collator(live: Any) -> Any:
    """The collator the train dataloader really uses, under the Trainer's wrappers and functools.partial."""
    collator = getattr(live.train_dataloader, "collate_fn", None)
    for _ in range(8):
        if collator is None or hasattr(collator, "pad_to_multiple_of"):
            break
        inner = getattr(collator, "data_collator", None)
        if inner is None and isinstance(collator, functools.partial):
            inner = collator.func
        if inner is None:
            break
        collator = inner
    return collator


def read_collator(live: Any, out: dict[str, Any]) -> None:
    """``pad_to_multiple_of`` of the collator the train dataloader really uses (the Trainer may wrap it)."""
    collator = train_collator(live)
    out["collator"] = type(collator).__name__ if collator is not None else None
    out["pad_to_multiple_of"] = getattr(collator, "pad_to_multiple_of", None)


def read_packing(live: Any, out: dict[str, Any], notes: list[str]) -> None:
    args = live.args
    packing = attr_path(args, "packing")
    strategy = attr_path(args, "packing_strategy")
    out["packing_strategy"] = strategy if packing else None
    if isinstance(packing, bool):
        out["packing"] = packing
        out["packing_source"] = "args.packing"
    else:
        out["packing"] = out.get("batch_packed")
        out["packing_source"] = "first batches" if out["packing"] is not None else None
        if out["packing"] is not None:
            notes.append("packing read from the first batches (rows holding several sequences); packing "
                         "without sequence boundaries (no position_ids restarts) cannot be seen there")
    padding_free = attr_path(args, "padding_free")
    if isinstance(padding_free, bool):
        # trl's SFTTrainer: padding_free or (packing with a bfd strategy), whatever the flag says.
        effective = padding_free or bool(packing and strategy in ("bfd", "bfd_split", "bfd-requeue"))
        out["padding_free"] = effective
        out["padding_free_source"] = "args.padding_free / packing_strategy"
    else:
        out["padding_free"] = out.get("batch_padding_free")
        out["padding_free_source"] = "first batches" if out["padding_free"] is not None else None
    for key in ("packing", "padding_free"):
        seen = out.get(f"batch_{key}")
        if seen is not None and out[key] is not None and seen != out[key] and out[f"{key}_source"] != "first batches":
            notes.append(f"{key}: args say {out[key]} but the first batches look {seen}")
    out["truncation_mode"] = jsonable(attr_path(args, "truncation_mode"))
