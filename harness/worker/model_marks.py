"""Marks inside a training step that the frameworks' trainers do not emit, from module and tensor hooks.

We cannot edit trl's, unsloth's or LLaMA-Factory's trainers, but every one of them runs the model's
modules: a forward pre-hook on the top-level model marks the forward's start, the LM head's mark where
the head and the loss begin, and a gradient hook on the tensor the head read marks where their backward
ends. The head is entered in one of two places, and both are hooked; per micro-batch (per top-level
forward) the first to fire marks it:

- the final norm's output (a forward hook on ``model.model.norm``): where trl's and LLaMA-Factory's
  models enter it, the fused-loss paths included (trl's chunked loss reads ``lm_head.weight`` after
  transformers' model has called its norm). Outside the decoder layers, never re-run by gradient
  checkpointing;
- the LM head's input (a forward pre-hook on ``get_output_embeddings()``): unsloth's fast forward never
  calls the norm module (``fast_rms_layernorm(self.norm, hidden_states)``, unsloth/models/llama.py:1681,
  2026.10.9), but it calls ``self.lm_head(hidden_states)`` when it builds the full logits (llama.py:2152:
  called without labels, as the harness's common loss calls it, harness/worker/common_loss.py).

Neither fires where the model's own forward computes the head and its loss without calling a module:
unsloth's fused cross-entropy given labels (``unsloth_fused_ce_loss(lm_head_weight=self.lm_head.weight)``,
llama.py:2122). Then the head and loss cannot be separated from the forward; :meth:`ModelMarks.note` says
so, and the attributions find no head mark in the step (harness/results/memory_attribution.py,
time_attribution.py): logits and loss are counted in activations / forward, never reported as 0.

``mark(kind)`` is the profiler's: a tiny allocation (memory profile) or a zero-length record_function
range (time profile). Kinds: forward, head, head_grad (plus the callbacks' step_begin, pre_optimizer,
step_end). The hooks exist only while a profiler holds a ModelMarks (profiled runs only).
"""
from __future__ import annotations

from typing import Any, Callable

FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_norm")
NORM_OUTPUT = "final norm output"
HEAD_INPUT = "LM head input"
NOT_MARKED = "none"  # a record's head_mark when training micro-batches ran and no site ever fired


def final_norm(model: Any) -> Any | None:
    """The model's last norm outside its decoder layers (``model.model.norm`` in Qwen2/Llama), or None."""
    found = None
    for name, module in model.named_modules():
        parts = name.split(".")
        if parts[-1] in FINAL_NORM_NAMES and not any(p.isdigit() for p in parts):
            found = module
    return found


def lm_head(model: Any) -> Any | None:
    """The model's LM head module (``get_output_embeddings()``; through a PeftModel too), or None."""
    getter = getattr(model, "get_output_embeddings", None)
    try:
        return getter() if callable(getter) else None
    except (AttributeError, NotImplementedError):  # a model class without output embeddings
        return None


class ModelMarks:
    """Install the hooks on ``model``; ``remove()`` takes them off (the model leaves as it came)."""

    def __init__(self, model: Any, mark: Callable[[str], None]) -> None:
        self.mark = mark
        self.handles: list[Any] = []
        self.enabled = True
        self.sites: list[str] = []  # the places hooked, in the order they run in a forward
        self.forwards = 0  # training micro-batches whose forward was marked
        self.heads: dict[str, int] = {}  # site -> micro-batches whose head mark it gave
        self._head_done = False  # this micro-batch's head is marked (the first site to fire wins)
        self.handles.append(model.register_forward_pre_hook(self._forward))
        norm, head = final_norm(model), lm_head(model)
        if norm is not None:
            self.handles.append(norm.register_forward_hook(self._head_from_output))
            self.sites.append(NORM_OUTPUT)
        if head is not None and head is not norm:
            self.handles.append(head.register_forward_pre_hook(self._head_from_input))
            self.sites.append(HEAD_INPUT)

    def _forward(self, module: Any, args: Any) -> None:
        self._head_done = False  # a new micro-batch (or an eval forward, which marks nothing)
        if self.enabled and module.training:
            self.forwards += 1
            self.mark("forward")

    def _head(self, hidden: Any, site: str) -> None:
        import torch

        if not (self.enabled and torch.is_grad_enabled()) or self._head_done:
            return
        self._head_done = True
        self.heads[site] = self.heads.get(site, 0) + 1
        self.mark("head")
        if getattr(hidden, "requires_grad", False):
            hidden.register_hook(self._head_grad)

    def _head_grad(self, grad: Any) -> None:
        if self.enabled:
            self.mark("head_grad")

    def _head_from_output(self, module: Any, args: Any, output: Any) -> None:
        if module.training:
            self._head(output[0] if isinstance(output, tuple) else output, NORM_OUTPUT)

    def _head_from_input(self, module: Any, args: Any) -> None:
        if module.training and args:
            self._head(args[0], HEAD_INPUT)

    @property
    def head_mark(self) -> str | None:
        """Where the head was marked (a site, or sites joined by ', '), ``NOT_MARKED`` when training
        micro-batches ran and none was, None when no training forward was seen."""
        if self.heads:
            return ", ".join(site for site in self.sites if site in self.heads)
        return NOT_MARKED if self.forwards else None

    def note(self) -> str | None:
        """What the profile must say when the head was not marked in every micro-batch, else None."""
        marked = sum(self.heads.values())
        if not self.forwards or marked >= self.forwards:
            return None
        hooked = " and ".join(self.sites) or "no final norm or LM head module found"
        if not marked:
            return (f"the LM head was never entered through a module in {self.forwards} training micro-batch(es) "
                    f"(hooked: {hooked}): the model's forward computes the head and its loss itself (a fused "
                    "loss reading lm_head.weight without calling the module), so they are not separable "
                    "from the forward")
        return (f"the LM head was marked in {marked} of {self.forwards} training micro-batch(es) (hooked: {hooked}); "
                "in the others its head and loss are counted with the forward")

    def remove(self) -> None:
        self.enabled = False
        for handle in self.handles:
            handle.remove()
        self.handles = []
