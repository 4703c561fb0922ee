"""Marks inside a training step that the frameworks' trainers do not emit, from module and tensor hooks.

We cannot edit trl's, unsloth's or LLaMA-Factory's trainers, but every one of them runs the model's
modules: a forward pre-hook on the top-level model marks the forward's start, a forward hook on the final
norm marks where the LM head and the loss begin (its output is what the head reads), and a gradient hook
on that same output marks where their backward ends. The norm, not the head module, because unsloth's
fused cross-entropy reads ``lm_head.weight`` without calling the module; the norm runs in every framework
and, outside the decoder layers, is never re-run by gradient checkpointing. Where a model has no final
norm the LM head's input is used instead.

``mark(kind)`` is the profiler's: a tiny allocation (memory profile) or a zero-length record_function
range (time profile). Kinds: forward, head, head_grad (plus the callbacks' step_begin, pre_optimizer,
step_end).
"""
from __future__ import annotations

from typing import Any, Callable

FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_norm")


def final_norm(model: Any) -> Any | None:
    """The model's last norm outside its decoder layers (``model.model.norm`` in Qwen2/Llama), or None."""
    found = None
    for name, module in model.named_modules():
        parts = name.split(".")
        if parts[-1] in FINAL_NORM_NAMES and not any(p.isdigit() for p in parts):
            found = module
    return found


class ModelMarks:
    """Install the hooks on ``model``; ``remove()`` takes them off (the model leaves as it came)."""

    def __init__(self, model: Any, mark: Callable[[str], None]) -> None:
        self.mark = mark
        self.handles: list[Any] = []
        self.enabled = True
        self.handles.append(model.register_forward_pre_hook(self._forward))
        norm = final_norm(model)
        if norm is not None:
            self.handles.append(norm.register_forward_hook(self._head_from_output))
            self.where = "final norm"
        else:
            head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
            if head is not None:
                self.handles.append(head.register_forward_pre_hook(self._head_from_input))
            self.where = "LM head input" if head is not None else None

    def _forward(self, module: Any, args: Any) -> None:
        if self.enabled and module.training:
            self.mark("forward")

    def _head(self, hidden: Any) -> None:
        import torch

        if not (self.enabled and torch.is_grad_enabled()):
            return
        self.mark("head")
        if getattr(hidden, "requires_grad", False):
            hidden.register_hook(self._head_grad)

    def _head_grad(self, grad: Any) -> None:
        if self.enabled:
            self.mark("head_grad")

    def _head_from_output(self, module: Any, args: Any, output: Any) -> None:
        if module.training:
            self._head(output[0] if isinstance(output, tuple) else output)

    def _head_from_input(self, module: Any, args: Any) -> None:
        if module.training and args:
            self._head(args[0])

    def remove(self) -> None:
        self.enabled = False
        for handle in self.handles:
            handle.remove()
        self.handles = []
