"""The LoRA adapters as training starts: a fingerprint of every lora_A / lora_B weight, read at ``on_train_begin``
(before the first optimizer step), so that an unseeded, differently seeded or differently initialised adapter
in one framework fails the strict audit.

peft's default init (``init_lora_weights=True``) draws each A from kaiming-uniform on the torch generator and
sets each B to zero; the A matrices are therefore exactly equal across frameworks only if every framework seeds
the same generator right before ``get_peft_model`` and wraps the same modules in the same order. Loss curves
barely show a different A (B is zero, so the first losses are equal), hence a fingerprint: sha256 over every
tensor's float32 bytes (and shape), in the model's module order. Names are left out: the same layer is
``base_model.model.model.layers.0...`` in one framework and could be nested differently in another; the order of
``named_modules`` is the architecture's. float32 holds every bf16/fp16 value exactly, so an adapter stored in
another dtype hashes the same only if it holds the same numbers (a bf16-rounded A does not).
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

from harness.worker.live_fields.model import lora_layers


def _adapter_key(model: Any, module: Any) -> str | None:
    active = getattr(model, "active_adapter", None)
    if isinstance(active, (list, tuple)):
        active = active[0] if active else None
    lora_a = module.lora_A
    if active in lora_a:
        return active
    return next(iter(lora_a.keys()), None)


def lora_init_snapshot(model: Any) -> dict[str, Any]:
    """``lora_init_hash`` and exact statistics of the LoRA weights of ``model`` as they are now."""
    import torch

    digest = hashlib.sha256()
    tensors = 0
    a_sq = b_sq = 0.0
    b_nonzero = False
    for _, module, lora_a, lora_b in lora_layers(model):
        key = _adapter_key(model, module)
        if key is None or key not in lora_b:
            continue
        for sub, is_b in ((lora_a[key], False), (lora_b[key], True)):
            weight = getattr(sub, "weight", None)
            if weight is None:
                continue
            values = weight.detach().to("cpu", torch.float32).contiguous()
            digest.update(repr(tuple(values.shape)).encode())
            digest.update(values.numpy().tobytes())
            tensors += 1
            sq = float(values.double().pow(2).sum())
            if is_b:
                b_sq += sq
                b_nonzero = b_nonzero or bool(values.ne(0).any())
            else:
                a_sq += sq
    if not tensors:
        return {"lora_init_hash": None, "lora_init_tensors": 0, "lora_init_A_norm": None, "lora_init_B_norm": None,
                "lora_init_B_nonzero": None, "lora_init_read_at": "train_begin"}
    return {"lora_init_hash": digest.hexdigest(), "lora_init_tensors": tensors, "lora_init_A_norm": math.sqrt(a_sq),
            "lora_init_B_norm": math.sqrt(b_sq), "lora_init_B_nonzero": b_nonzero, "lora_init_read_at": "train_begin"}
