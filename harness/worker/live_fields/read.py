"""Read the fairness fields back FROM THE LIVE OBJECTS a framework built, never from our own config.

``read_live_fields(live, meter, job, adapter)`` runs in the worker right after training. ``live`` is a
``harness.worker.live_objects.LiveObjects`` callback holding the framework's own model, tokenizer, optimizer,
scheduler, dataloader, TrainingArguments and TrainerState; ``meter`` is the ``StepMeter`` whose
forward pre-hook kept the first micro-batches as they entered the model (``meter.first_batches``,
built with :func:`batch_record`). ``job`` is used only to label (framework name) and to find the
prepared data files; ``adapter`` supplies what is known of the framework by source reading (its
truncation strategy, whether a checkpoint function is its own). A value that cannot be found on the
live objects is ``None`` with a line in ``notes`` saying why, never an exception. Everything returned
is JSON-serialisable.

Where each field comes from (``live.`` omitted):

- trainable_params / total_params: ``model.named_parameters()`` (bitsandbytes 4-bit weights counted
  unpacked, as peft does).
- lora_*: the LoRA layers actually in the model (modules with ``lora_A``/``lora_B``): wrapped
  module suffixes, count, and their ``r``, ``lora_alpha``, ``scaling``, dropout ``p``, ``use_dora``;
  ``use_rslora``/``bias`` from the ``peft_config`` attached to the model.
- quantization / base_dtype / trainable_dtype: the parameters' classes and dtypes, bitsandbytes
  detected by class name (``Linear4bit``, ``Params4bit``...) so bitsandbytes need not be importable.
- attn_implementation: ``model.config._attn_implementation``.
- optimizer_*: ``optimizer`` (unwrapped from accelerate's ``AcceleratedOptimizer``), ``param_groups``.
- lr_scheduler / warmup_steps / total_steps: ``lr_scheduler`` (unwrapped), its ``lr_lambdas``,
  ``args.lr_scheduler_type``, ``args.get_warmup_steps``, ``state.max_steps``.
- batch sizes, seed, max length, packing, padding-free, precision: ``args``.
- gradient checkpointing: the base model's modules (``gradient_checkpointing`` flags) and the
  checkpoint function installed on them (``_gradient_checkpointing_func``), not ``args``: LLaMA-Factory
  enables it on the model itself.
- lora_init_*: the LoRA weights at ``on_train_begin`` (``live.train_begin_lora_init``, lora_init.py).
- loss_normalization*: what ``live.loss_probe`` saw of the first steps' micro-batches, and the live
  trainer's flags (loss_normalization.py).
- sdpa_enabled / sdpa_choice / sdpa_probe / sdpa_priority: torch's SDPA flags at ``on_train_begin``
  (``live.train_begin_sdpa``) and the backend PyTorch's dispatcher picks under them for calls of the live
  model's heads, head size and dtype at the per-device batch and the widest first batch (harness/worker/sdpa.py).
- loss_mask_share, first_batch_hash, first_batches_multiset_hash: ``meter.first_batches``.
- eval_set_hash / train_set_hash / records_truncated: the prepared files in ``job.runtime.data_dir``
  tokenised with the live tokenizer."""
from __future__ import annotations

from typing import Any, Callable

from harness.worker.live_fields.values import attr_path, jsonable
from harness.worker.live_fields.model import base_model, read_lora, read_params, read_quantization, unwrap_model
from harness.worker.live_fields.checkpointing import read_gradient_checkpointing
from harness.worker.live_fields.optimizer import read_optimizer, read_scheduler
from harness.worker.live_fields.batches import read_batches
from harness.worker.live_fields.trainer_args import read_batching, read_collator, read_max_length, read_packing
from harness.worker.live_fields.data_files import read_data_files
from harness.worker.live_fields.loss_normalization import read_loss_normalization
from harness.worker.sdpa import read_sdpa


SCHEMA = 1


def _registered_adapter(job: dict[str, Any]) -> Any:
    """The adapter of the job's framework, or None (no job, or a name the registry does not know)."""
    from harness.frameworks import registry

    try:
        return registry.adapter(str(((job or {}).get("framework") or {}).get("name")))
    except registry.UnknownFramework:
        return None


def read_live_fields(live: Any, meter: Any, job: dict[str, Any], adapter: Any = None) -> dict[str, Any]:
    """The audit record of one run, read from the live objects (see the module docstring). ``adapter``
    (default: the job's framework's) supplies what is known by source reading, not by looking: its
    truncation strategy and whether a checkpoint function is its own (``checkpointing_kind``)."""
    adapter = adapter if adapter is not None else _registered_adapter(job)
    notes: list[str] = []
    out: dict[str, Any] = {"schema": SCHEMA,
                           "framework": ((job or {}).get("framework") or {}).get("name")}
    model = unwrap_model(getattr(live, "model", None))

    def section(name: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as err:  # noqa: BLE001  an unreadable field is None plus a note, never a failure
            notes.append(f"{name}: {type(err).__name__}: {str(err)[:200]}")

    if model is None:
        notes.append("no live model: model fields unknown")
    else:
        section("params", lambda: read_params(model, out))
        section("lora", lambda: read_lora(model, out, notes))
        section("quantization", lambda: read_quantization(model, out))
        section("attn_implementation", lambda: out.__setitem__(
            "attn_implementation", jsonable(attr_path(base_model(model), "config", "_attn_implementation"))))
        begin = getattr(live, "train_begin_checkpointing", None)
        if begin:
            # Read when training started: a framework's own evaluation afterwards (unsloth's
            # for_inference) switches the flags off again, which says nothing about training.
            out.update(begin)
        else:
            section("gradient_checkpointing", lambda: read_gradient_checkpointing(model, getattr(live, "args", None), out, notes))
        lora_init = getattr(live, "train_begin_lora_init", None)
        if lora_init:
            out.update(lora_init)
            if lora_init.get("lora_init_error"):
                notes.append(f"lora_init: {lora_init['lora_init_error']}")
        else:
            out["lora_init_hash"] = None
            notes.append("lora_init_hash unknown: the LoRA weights were not read at train begin")
        if out.get("gradient_checkpointing_kind") is not None and adapter is not None:
            out["gradient_checkpointing_kind"] = adapter.checkpointing_kind(out.get("gradient_checkpointing_func") or [])
    section("optimizer", lambda: read_optimizer(getattr(live, "optimizer", None), out, notes))
    section("scheduler", lambda: read_scheduler(getattr(live, "lr_scheduler", None), getattr(live, "args", None),
                                            getattr(live, "state", None), out, notes))
    section("batching", lambda: read_batching(live, out, notes))
    section("max_length", lambda: read_max_length(live, out, notes))
    section("batches", lambda: read_batches(meter, live, out, notes))
    section("loss_normalization", lambda: read_loss_normalization(live, meter, out, notes))
    section("sdpa", lambda: read_sdpa(live, base_model(model) if model is not None else None, job, out, notes))
    section("packing", lambda: read_packing(live, out, notes))
    section("collator", lambda: read_collator(live, out))
    section("data", lambda: read_data_files(job, live, out, notes,
                                           adapter.truncation_for(job) if adapter is not None else None))
    out["notes"] = notes
    return jsonable(out)
