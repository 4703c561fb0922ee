"""Gradient checkpointing as installed on the base model's modules (flags and the checkpoint function),
not as ``args`` say: LLaMA-Factory enables it on the model itself."""
from __future__ import annotations

import functools
from typing import Any

from harness.worker.live_fields.values import attr_path, jsonable
from harness.worker.live_fields.model import base_model, unwrap_model


def _checkpoint_function(base: Any) -> Any:
    for module in base.modules():
        fn = getattr(module, "_gradient_checkpointing_func", None)
        if fn is not None:
            return fn
    return None


def _describe_function(fn: Any) -> tuple[list[str], Any]:
    """Names along a wrapped / partial chain and the ``use_reentrant`` keyword found on it."""
    names: list[str] = []
    reentrant = None
    for _ in range(8):
        if fn is None:
            break
        if isinstance(fn, functools.partial):
            if "use_reentrant" in fn.keywords and reentrant is None:
                reentrant = fn.keywords["use_reentrant"]
            names.append("partial")
            fn = fn.func
            continue
        names.append(f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}")
        fn = getattr(fn, "__wrapped__", None)
    return names, reentrant


def checkpointing_snapshot(model: Any, args: Any) -> dict[str, Any]:
    """The gradient-checkpointing fields as they are now (the live objects call this at train begin)."""
    out: dict[str, Any] = {}
    notes: list[str] = []
    try:
        read_gradient_checkpointing(unwrap_model(model), args, out, notes)
    except Exception as err:  # noqa: BLE001
        notes.append(f"gradient_checkpointing: {type(err).__name__}: {str(err)[:200]}")
    out["gradient_checkpointing_read_at"] = "train_begin"
    return jsonable(out)


def read_gradient_checkpointing(model: Any, args: Any, out: dict[str, Any], notes: list[str]) -> None:
    base = base_model(model)
    flags = [bool(m.gradient_checkpointing) for m in base.modules()
             if isinstance(getattr(m, "gradient_checkpointing", None), bool)]
    enabled = any(flags) if flags else None
    if enabled is None:
        enabled = attr_path(base, "is_gradient_checkpointing")
        enabled = bool(enabled) if isinstance(enabled, bool) else None
    out["gradient_checkpointing"] = enabled
    out["gradient_checkpointing_args"] = attr_path(args, "gradient_checkpointing")
    kwargs = attr_path(args, "gradient_checkpointing_kwargs")
    out["gradient_checkpointing_kwargs"] = jsonable(kwargs)
    fn = _checkpoint_function(base) if enabled else None
    names, reentrant = _describe_function(fn)
    if reentrant is None and enabled and isinstance(kwargs, dict):
        reentrant = kwargs.get("use_reentrant")
        if reentrant is not None:
            notes.append("gradient_checkpointing_use_reentrant read from args.gradient_checkpointing_kwargs")
    out["gradient_checkpointing_use_reentrant"] = reentrant if enabled else None
    out["gradient_checkpointing_func"] = names or None
    # "hf" here; read_live_fields asks the framework's adapter whether the function is its own.
    if not enabled:
        out["gradient_checkpointing_kind"] = None
    elif names:
        out["gradient_checkpointing_kind"] = "hf"
    else:
        out["gradient_checkpointing_kind"] = "hf"
        notes.append("gradient checkpointing on but no _gradient_checkpointing_func found: kind assumed hf")
