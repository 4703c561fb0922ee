"""Whether each applied feature of a recommended recipe is really on, read from the live objects (issue 17).

One probe per feature id (the ids of the ``recommended:`` blocks in conf/framework/*.yaml): a pure function of
the live objects (``harness.worker.live_objects.LiveObjects``) and of the audit fields already read from them
(harness/worker/live_fields/read.py), returning ``(active, evidence)``: True / False, or None where nothing
on the live objects can tell; ``evidence`` says what was read. A feature id without a probe is reported
``not checked``, never assumed active. Probes never raise (an error is evidence too)."""
from __future__ import annotations

from typing import Any, Callable

from harness.worker.live_fields.model import base_model, unwrap_model
from harness.worker.live_fields.trainer_args import train_collator
from harness.worker.live_fields.values import attr_path

Probe = Callable[[Any, dict[str, Any]], tuple[bool | None, str]]


def _batches(audit: dict[str, Any]) -> str:
    return (f"first batches: padded widths {audit.get('padded_lengths')}, {audit.get('first_batch_rows')} sequences "
            f"in the first; padding-free {audit.get('batch_padding_free')}, packed {audit.get('batch_packed')}")


def padding_free(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    seen = audit.get("batch_padding_free")
    return (None if seen is None else bool(seen)), f"args.padding_free={attr_path(live.args, 'padding_free')}; {_batches(audit)}"


def packing(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    seen = audit.get("batch_packed")
    return (None if seen is None else bool(seen)), (f"args.packing={attr_path(live.args, 'packing')}, "
                                                     f"packing_strategy={audit.get('packing_strategy')}; {_batches(audit)}")


def neat_packing(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    collator = train_collator(live)
    neat, block = getattr(collator, "neat_packing", None), getattr(collator, "block_diag_attn", None)
    seen = audit.get("batch_packed")
    active = bool(neat and block and seen) if seen is not None else None
    return active, (f"collator {type(collator).__name__}: neat_packing={neat}, block_diag_attn={block}; "
                    f"max_length {audit.get('max_length')}; {_batches(audit)}")


def no_pad_multiple(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    collator = train_collator(live)
    if collator is None:
        return None, "no train collator found"
    value = getattr(collator, "pad_to_multiple_of", None)
    return value is None, f"collator {type(collator).__name__}.pad_to_multiple_of={value}; padded widths {audit.get('padded_lengths')}"


def fused_adamw(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    options = audit.get("optimizer_options") or {}
    fused = options.get("fused")
    return (None if fused is None else bool(fused)), f"{audit.get('optimizer')} defaults fused={fused} (args.optim={audit.get('args_optim')})"


def liger(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    """Liger swaps module classes (LLaMA-Factory) or binds its forwards to instances and renames them (trl's
    ``_apply_liger_kernel_to_instance``: ``_get_name()`` says Liger*), and patches the rotary function."""
    model = unwrap_model(getattr(live, "model", None))
    if model is None:
        return None, "no live model"
    names: set[str] = set()
    for module in base_model(model).modules():
        for name in (type(module).__name__, _get_name(module)):
            if name and name.startswith("Liger"):
                names.add(name)
    forward = type(base_model(model)).forward
    if str(getattr(forward, "__module__", "")).startswith("liger_kernel"):
        names.add(f"forward from {forward.__module__}")
    rotary = _rotary_module(base_model(model))
    if rotary and rotary.startswith("liger_kernel"):
        names.add(f"apply_rotary_pos_emb from {rotary}")
    return bool(names), ("Liger modules: " + ", ".join(sorted(names))) if names else "no Liger module or function in the model"


def _get_name(module: Any) -> str | None:
    try:
        return module._get_name()
    except Exception:  # noqa: BLE001
        return None


def _rotary_module(base: Any) -> str | None:
    import sys

    module = sys.modules.get(type(base).__module__)
    fn = getattr(module, "apply_rotary_pos_emb", None)
    return getattr(fn, "__module__", None) if fn is not None else None


def bf16_adapters(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    dtype = audit.get("trainable_dtype")
    return (None if dtype is None else dtype == "bfloat16"), f"trainable parameters' dtype {dtype}"


def offloaded_checkpointing(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    """A checkpoint function of the framework's own (the adapter's ``checkpointing_kind``), or torch's checkpoint
    replaced by an offloading one."""
    import torch.utils.checkpoint as checkpoint

    kind, names = audit.get("gradient_checkpointing_kind"), audit.get("gradient_checkpointing_func") or []
    replaced = getattr(checkpoint.checkpoint, "__name__", "")
    active = kind not in (None, "hf") or "offload" in replaced
    return active, f"gradient_checkpointing_kind={kind}; function {names}; torch.utils.checkpoint.checkpoint is {replaced}"


def reentrant_gc(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    value = audit.get("gradient_checkpointing_use_reentrant")
    return (None if value is None else bool(value)), f"gradient_checkpointing_use_reentrant={value}"


def attention_choice(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    """The framework chose the attention itself: active means a choice was made and can be named."""
    impl = audit.get("attn_implementation")
    return (None if impl is None else True), f"the framework chose {impl}"


def upcast_layernorm(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    model = unwrap_model(getattr(live, "model", None))
    if model is None:
        return None, "no live model"
    norms = [str(p.dtype).replace("torch.", "") for n, p in base_model(model).named_parameters()
             if p.ndim == 1 and "norm" in n]
    return (bool(norms) and all(d == "float32" for d in norms)), f"norm weights' dtypes {sorted(set(norms))}"


def multipack(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    """Multipack sample packing: a multipack batch sampler under the Trainer's dataloader, and packed rows in the
    batches (its collator concatenates each bin's records into one row with restarting position ids)."""
    args = getattr(live, "args", None)
    sampler = _batch_sampler(getattr(live, "train_dataloader", None))
    seen = audit.get("batch_packed")
    on = bool(attr_path(args, "sample_packing")) and type(sampler).__name__ == "MultipackBatchSampler"
    active = (on and bool(seen)) if seen is not None else None
    return active, (f"args.sample_packing={attr_path(args, 'sample_packing')}, multipack_real_batches="
                    f"{attr_path(args, 'multipack_real_batches')}, sample_packing_drop_attention_mask="
                    f"{attr_path(args, 'sample_packing_drop_attention_mask')}; batch sampler {type(sampler).__name__}; "
                    f"{_batches(audit)}")


def _batch_sampler(dataloader: Any) -> Any:
    """The batch sampler a dataloader really draws from, under accelerate's shard wrappers."""
    sampler = getattr(dataloader, "batch_sampler", None)
    for _ in range(4):
        inner = getattr(sampler, "batch_sampler", None)
        if inner is None or inner is sampler:
            break
        sampler = inner
    return sampler


def sdpa_varlen(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    """Packed rows through varlen attention under SDPA: the attention function registered as ``sdpa`` is a
    framework's varlen wrapper (its name says so), no longer transformers' own."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    fn = ALL_ATTENTION_FUNCTIONS["sdpa"]
    module, name = str(getattr(fn, "__module__", "")), str(getattr(fn, "__name__", ""))
    impl = audit.get("attn_implementation")
    active = impl == "sdpa" and not module.startswith("transformers.") and "varlen" in name
    return active, f"attention 'sdpa' is {module}.{name}; the model's attention {impl}"


def lora_kernels(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    """LoRA kernels bound to the layers' instances in place of peft's path: an instance ``forward`` (the MLP),
    ``apply_qkv`` or ``apply_o`` (the attention projections) whose function is an ``apply_lora*`` one."""
    model = unwrap_model(getattr(live, "model", None))
    if model is None:
        return None, "no live model"
    counts: dict[str, int] = {}
    for module in model.modules():
        for name in ("forward", "apply_qkv", "apply_o"):
            fn = getattr(module.__dict__.get(name), "__func__", None)
            if str(getattr(fn, "__name__", "")).startswith("apply_lora"):
                key = f"{fn.__module__}.{fn.__name__}"
                counts[key] = counts.get(key, 0) + 1
    return bool(counts), (f"LoRA kernels bound: {dict(sorted(counts.items()))}" if counts
                          else "no module has an apply_lora* forward, apply_qkv or apply_o")


def tf32(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    import torch

    allowed = bool(torch.backends.cuda.matmul.allow_tf32)
    return allowed, f"torch.backends.cuda.matmul.allow_tf32={allowed}; args.tf32={attr_path(live.args, 'tf32')}"


def dataloader_workers(live: Any, audit: dict[str, Any]) -> tuple[bool | None, str]:
    dataloader = getattr(live, "train_dataloader", None)
    if dataloader is None:
        return None, "no train dataloader"
    workers = getattr(dataloader, "num_workers", None)
    return (None if workers is None else workers > 0), (
        f"train dataloader num_workers={workers}, pin_memory={getattr(dataloader, 'pin_memory', None)}, "
        f"prefetch_factor={getattr(dataloader, 'prefetch_factor', None)}")


PROBES: dict[str, Probe] = {
    "padding_free": padding_free, "packing": packing, "neat_packing": neat_packing,
    "no_pad_multiple": no_pad_multiple, "fused_adamw": fused_adamw, "liger": liger,
    "bf16_adapters": bf16_adapters, "offloaded_gc": offloaded_checkpointing, "reentrant_gc": reentrant_gc,
    "flash_attn_auto": attention_choice, "upcast_layernorm": upcast_layernorm,
    "multipack": multipack, "sdpa_varlen": sdpa_varlen, "lora_kernels": lora_kernels, "tf32": tf32,
    "dataloader_workers": dataloader_workers,
}


def probe_features(plan: list[dict[str, Any]], live: Any, audit: dict[str, Any]) -> list[dict[str, Any]]:
    """The plan (harness.frameworks.recipes.feature_plan) with every applied feature read back: status
    ``active`` or ``not seen`` (``not checked`` where no probe exists), and its evidence."""
    out = []
    for feature in plan:
        feature = dict(feature)
        if feature.get("status") == "applied":
            probe = PROBES.get(str(feature.get("id")))
            if probe is None:
                feature["status"], feature["evidence"] = "not checked", "no probe for this feature"
            else:
                try:
                    active, evidence = probe(live, audit)
                except Exception as err:  # noqa: BLE001  an unreadable probe is evidence, never a failure
                    active, evidence = None, f"probe failed: {type(err).__name__}: {str(err)[:200]}"
                feature["status"] = "active" if active else ("not seen" if active is False else "not checked")
                feature["evidence"] = evidence
        out.append(feature)
    return out
