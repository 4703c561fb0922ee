"""peft's LoRA input cast in a profiled run's training steps, read back from the live model, and the control
that switches it off (``profile.lora_input_cast=off``; docs/explain.md section 4).

Each peft LoRA layer's forward calls ``x = self._cast_input_dtype(x, lora_A.weight.dtype)`` before its
adapters (peft 0.21.0 ``peft/tuners/lora/layer.py:1100``; 0.18.1 ``:805``): with a bf16 model and peft's
fp32 adapters (``autocast_adapter_dtype=True``, or LLaMA-Factory's own upcast) that copies the whole
activation to fp32, and under the trainer's bf16 autocast the LoRA matmul casts it straight back to bf16.
peft's own switch for it is the layer attribute ``cast_input_dtype_enabled`` (``_cast_input_dtype`` in
``peft/tuners/tuners_utils.py``; ``peft.helpers.disable_input_dtype_casting``). Under autocast the
matmuls then see the very same bf16 values (bf16 -> fp32 -> bf16 is exact), so the control removes copies,
never changes the math (tests/test_lora_cast.py checks outputs and gradients bit for bit).

Every profiled run carries a :class:`LoraCastProbe` among its callbacks. At train begin it finds the peft
LoRA layers of the live model; under the control it sets their ``cast_input_dtype_enabled`` to False
(every rank: the control must change every rank's step), and, for a framework whose LoRA layers run peft's
forward (``Adapter.lora_input_cast == "peft"``), it wraps each layer's ``_cast_input_dtype`` with a counter:
one Python call per LoRA forward, cheap beside a layer's matmuls. At train end everything is put back, so
evaluations run as the framework's own. unsloth (``"own"``) runs its LoRA its own way: nothing is switched
or wrapped there (its compiled blocks would trace a wrapper, not run it), and the record says so.
"""
from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from harness.frameworks.adapter import FrameworkUnavailable
from harness.records.profile import LoraCast
from harness.worker.live_fields.values import dtype_name

OWN_NOTE = ("nothing switched, not watched: this framework runs its LoRA layers its own way (Adapter.lora_input_cast"
            "='own'; docs/explain.md section 4)")


def lora_layers(model: Any) -> list[Any]:
    """The peft LoRA layers of ``model`` (``peft.tuners.lora.LoraLayer``: Linear, Embedding, Conv, the
    quantized ones), in module order; none when peft is not installed."""
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:
        return []
    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def _grad_training(module: Any) -> bool:
    import torch

    return bool(module.training and torch.is_grad_enabled())


class LoraCastProbe(TrainerCallback):
    def __init__(self, requested: str | None, native: str) -> None:
        self.record = LoraCast(requested=requested or "native")
        self.watch = native == "peft"
        self.switch = requested == "off" and self.watch
        self.saved: list[tuple[Any, bool]] = []  # (layer, its cast_input_dtype_enabled before the control)
        self.wrapped: list[Any] = []
        self.handles: list[Any] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        # a second train() in the same process: the first one's switch and wrappers come off first, or the
        # state saved here would be the switched one, and train end would leave the casts off
        self.stop()
        if model is None:
            if self.switch:
                raise FrameworkUnavailable("profile.lora_input_cast=off: no model at train begin, so no LoRA layer "
                                           "could be switched")
            self.record.notes.append("no model at train begin: the LoRA layers were not read")
            return
        layers = lora_layers(model)
        self.record.layers = len(layers)
        if not self.watch:
            self.record.notes.append(OWN_NOTE)
            return
        unwatchable = [type(m).__name__ for m in layers if not callable(getattr(m, "_cast_input_dtype", None))]
        if unwatchable and not self.switch:
            # a peft older than the cast has nothing to count; a read-back never fails the run it reads
            self.record.notes.append(f"not watched: {len(unwatchable)} LoRA layers ({unwatchable[0]}) have no "
                                     "_cast_input_dtype (a peft without the input cast)")
            return
        if self.switch:
            lacking = [type(m).__name__ for m in layers if not hasattr(m, "cast_input_dtype_enabled")
                       or not callable(getattr(m, "_cast_input_dtype", None))]
            if not layers or lacking:
                raise FrameworkUnavailable(
                    "profile.lora_input_cast=off: " + ("the model has no peft LoRA layer" if not layers else
                                                       f"{len(lacking)} LoRA layers ({lacking[0]}) have no "
                                                       "cast_input_dtype_enabled or _cast_input_dtype (peft too old)"))
            for layer in layers:
                self.saved.append((layer, layer.cast_input_dtype_enabled))
                layer.cast_input_dtype_enabled = False
            self.record.switched = len(layers)
        for layer in layers:
            self._wrap(layer)
        self.record.watched = True
        self.handles.append(model.register_forward_pre_hook(self._forward))

    def _forward(self, module: Any, args: Any) -> None:
        if _grad_training(module):
            self.record.micro_steps += 1

    def _wrap(self, layer: Any) -> None:
        """An instance attribute in front of the class's method: peft calls ``self._cast_input_dtype``."""
        original = layer._cast_input_dtype
        probe = self

        def _cast_input_dtype(x: Any, dtype: Any) -> Any:
            if x is not None and _grad_training(layer):
                probe.seen(layer, x, dtype)
            return original(x, dtype)

        layer.__dict__["_cast_input_dtype"] = _cast_input_dtype
        self.wrapped.append(layer)

    def seen(self, layer: Any, x: Any, dtype: Any) -> None:
        import torch

        rec = self.record
        rec.calls += 1
        if x.dtype == dtype:
            return
        enabled = getattr(layer, "cast_input_dtype_enabled", True)
        autocast = torch.is_autocast_enabled(x.device.type)
        if rec.cast_from is None:
            rec.cast_from, rec.cast_to = dtype_name(x.dtype), dtype_name(dtype)
            rec.autocast = dtype_name(torch.get_autocast_dtype(x.device.type)) if autocast else None
        if enabled:
            rec.casts += 1
            return
        rec.skipped += 1
        if not autocast:
            # outside autocast peft's cast is what makes input and adapters match: without it the matmul fails
            raise FrameworkUnavailable(
                f"profile.lora_input_cast=off: a LoRA layer's {dtype_name(x.dtype)} input met {dtype_name(dtype)} "
                "adapters outside autocast, where peft's cast is needed; this run cannot be the control")

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def stop(self) -> None:
        """Everything back as it was (idempotent): the framework's and our evaluations run peft's own forward."""
        for layer, enabled in self.saved:
            layer.cast_input_dtype_enabled = enabled
        for layer in self.wrapped:
            layer.__dict__.pop("_cast_input_dtype", None)
        for handle in self.handles:
            handle.remove()
        self.saved, self.wrapped, self.handles = [], [], []

    def finish(self) -> LoraCast:
        self.stop()
        rec = self.record
        if rec.requested == "off" and not self.watch and OWN_NOTE not in rec.notes:
            rec.notes.append(OWN_NOTE)
        rec.summary = describe(rec)
        return rec


def describe(rec: LoraCast) -> str:
    """The cast in one line, from what was read back (never from what was asked)."""
    if not rec.watched:
        return f"{rec.layers} peft LoRA layers, not watched (the framework's own LoRA path)"
    where = f"{rec.calls:,} calls of peft's _cast_input_dtype in {rec.layers} LoRA layers, {rec.micro_steps} micro-steps"
    if rec.cast_from is None:
        return f"no cast: inputs already in the adapters' dtype ({where})"
    pair = f"{rec.cast_from} -> {rec.cast_to}"
    under = f"under {rec.autocast} autocast" if rec.autocast else "autocast off"
    if rec.switched:
        return (f"{rec.casts:,} casts, {rec.skipped:,} skipped ({pair}, {under}): cast_input_dtype_enabled off in "
                f"{rec.switched}/{rec.layers} layers ({where})")
    return f"{rec.casts:,} casts {pair}, {under} ({where})"
