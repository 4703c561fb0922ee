"""The model's fields: parameter counts (bitsandbytes 4-bit weights counted unpacked), the LoRA layers
actually in the model, quantisation and dtypes, read under DDP/FSDP/compile and peft wrappers."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterator

from harness.worker.live_fields.values import attr_path, dtype_name, jsonable



def lora_layers(model: Any) -> Iterator[tuple[str, Any, Any, Any]]:
    """``(name, module, lora_A, lora_B)`` of every peft LoRA layer of ``model``, in module order."""
    for name, module in model.named_modules():
        lora_a, lora_b = getattr(module, "lora_A", None), getattr(module, "lora_B", None)
        if lora_a is None or lora_b is None or not hasattr(lora_a, "keys"):
            continue
        yield name, module, lora_a, lora_b


def unwrap_model(model: Any) -> Any:
    """The model under DDP/FSDP/compile wrappers (keeps a PeftModel: that is what we audit)."""
    for _ in range(8):
        if model is None:
            return None
        inner = getattr(model, "_orig_mod", None)  # torch.compile
        if inner is None and type(model).__name__ in ("DistributedDataParallel", "DataParallel",
                                                      "FullyShardedDataParallel", "DeepSpeedEngine"):
            inner = getattr(model, "module", None)
        if inner is None:
            return model
        model = inner
    return model


def base_model(model: Any) -> Any:
    """The transformers PreTrainedModel under a peft wrapper (``PeftModel.base_model.model``)."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        try:
            return get_base()
        except Exception:  # noqa: BLE001
            pass
    return model


def approx_numel(param: Any) -> int:
    """Parameter count, with bitsandbytes 4-bit weights (two values per stored byte) unpacked."""
    n = int(param.numel())
    if type(param).__name__ == "Params4bit":
        itemsize = getattr(param, "element_size", lambda: 1)()
        n = n * 2 * int(itemsize)
    return n


def read_params(model: Any, out: dict[str, Any]) -> None:
    trainable = total = 0
    frozen_float: Counter = Counter()
    trainable_dtypes: Counter = Counter()
    for _, p in model.named_parameters():
        n = approx_numel(p)
        total += n
        if p.requires_grad:
            trainable += n
            trainable_dtypes[dtype_name(p.dtype)] += n
        elif p.is_floating_point():
            frozen_float[dtype_name(p.dtype)] += n
    out["trainable_params"] = trainable
    out["total_params"] = total
    out["base_dtype"] = frozen_float.most_common(1)[0][0] if frozen_float else None
    out["base_dtypes"] = dict(frozen_float)
    out["trainable_dtype"] = (trainable_dtypes.most_common(1)[0][0] if len(trainable_dtypes) == 1
                              else ",".join(sorted(trainable_dtypes)) or None)


def read_lora(model: Any, out: dict[str, Any], notes: list[str]) -> None:
    adapter = getattr(model, "active_adapter", None)
    if isinstance(adapter, (list, tuple)):
        adapter = adapter[0] if adapter else None
    peft_configs = getattr(model, "peft_config", None) or {}
    if adapter is None and isinstance(peft_configs, dict) and peft_configs:
        adapter = next(iter(peft_configs))
    cfg = peft_configs.get(adapter) if isinstance(peft_configs, dict) else None
    suffixes: set[str] = set()
    count = 0
    rs, alphas, scalings, dropouts, doras = set(), set(), set(), set(), set()
    b_sq = a_sq = 0.0
    b_nonzero = False
    for name, module, lora_a, lora_b in lora_layers(model):
        key = adapter if adapter in lora_a else next(iter(lora_a.keys()), None)
        if key is None:
            continue
        count += 1
        suffixes.add(name.rsplit(".", 1)[-1])
        for attr, bucket in (("r", rs), ("lora_alpha", alphas), ("scaling", scalings), ("use_dora", doras)):
            value = getattr(module, attr, None)
            if isinstance(value, dict) and key in value:
                bucket.add(float(value[key]) if attr == "scaling" else value[key])
        drop = getattr(module, "lora_dropout", None)
        if drop is not None and hasattr(drop, "keys") and key in drop:
            dropouts.add(float(getattr(drop[key], "p", 0.0)))  # nn.Identity when dropout is 0
        for sub, is_b in ((lora_a[key], False), (lora_b[key], True)):
            w = getattr(sub, "weight", None)
            if w is None:
                continue
            sq = float(w.detach().float().pow(2).sum().item())
            if is_b:
                b_sq += sq
                b_nonzero = b_nonzero or bool(w.detach().ne(0).any().item())
            else:
                a_sq += sq

    def one(values: set) -> Any:
        if not values:
            return None
        return next(iter(values)) if len(values) == 1 else sorted(values)

    out["lora_adapter"] = adapter
    out["lora_modules"] = sorted(suffixes)
    out["lora_module_count"] = count
    out["lora_r"] = one(rs) if rs else attr_path(cfg, "r")
    out["lora_alpha"] = one(alphas) if alphas else attr_path(cfg, "lora_alpha")
    out["lora_scaling"] = one(scalings)
    out["lora_dropout"] = one(dropouts) if dropouts else attr_path(cfg, "lora_dropout")
    out["use_dora"] = one(doras) if doras else attr_path(cfg, "use_dora")
    out["use_rslora"] = attr_path(cfg, "use_rslora")
    out["lora_bias"] = attr_path(cfg, "bias")
    out["lora_config_targets"] = jsonable(attr_path(cfg, "target_modules"))
    out["lora_init"] = jsonable(attr_path(cfg, "init_lora_weights"))
    out["lora_modules_to_save"] = jsonable(attr_path(cfg, "modules_to_save"))
    out["lora_B_nonzero"] = b_nonzero if count else None
    out["lora_B_norm"] = math.sqrt(b_sq) if count else None
    out["lora_A_norm"] = math.sqrt(a_sq) if count else None
    if not count:
        notes.append("no LoRA layer (module with lora_A/lora_B) found in the live model")
    if cfg is None:
        notes.append("no peft_config attached to the live model")


def read_quantization(model: Any, out: dict[str, Any]) -> None:
    kinds: Counter = Counter()
    quant_types, compute, double, storage = set(), set(), set(), set()
    for module in model.modules():
        cls = type(module)
        name = cls.__name__
        if name in ("Linear4bit", "Linear8bitLt") and cls.__module__.startswith("bitsandbytes"):
            kinds[name] += 1
            if getattr(module, "compute_dtype", None) is not None:
                compute.add(dtype_name(module.compute_dtype))
            w = getattr(module, "weight", None)
            state = getattr(w, "quant_state", None)
            if state is not None:
                quant_types.add(getattr(state, "quant_type", None))
                double.add(bool(getattr(state, "nested", False)))
            if type(w).__name__ == "Params4bit" and getattr(w, "quant_type", None):
                quant_types.add(w.quant_type)
            if w is not None:
                storage.add(dtype_name(getattr(w, "dtype", None)))
    hf_cfg = attr_path(base_model(model), "config", "quantization_config")
    if hf_cfg is not None and hasattr(hf_cfg, "to_dict"):
        try:
            hf_cfg = hf_cfg.to_dict()
        except Exception:  # noqa: BLE001
            pass
    out["quantization_config"] = jsonable(hf_cfg)
    if not kinds:
        out["quantization"] = "none"
        out["quantization_detail"] = None
        return
    quant_types.discard(None)
    detail = {"modules": dict(kinds), "quant_type": sorted(quant_types), "double_quant": sorted(double),
              "compute_dtype": sorted(compute), "storage_dtype": sorted(s for s in storage if s)}
    out["quantization_detail"] = detail
    if "Linear4bit" in kinds:
        out["quantization"] = (f"bnb-4bit:{'/'.join(detail['quant_type']) or '?'}"
                               f":double_quant={'/'.join(str(d) for d in detail['double_quant']) or '?'}"
                               f":compute={'/'.join(detail['compute_dtype']) or '?'}")
    else:
        out["quantization"] = "bnb-8bit"
