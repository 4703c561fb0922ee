"""Watch how the first optimizer steps weigh each micro-batch's loss, on the framework's own Trainer.

Every framework here trains through a ``transformers.Trainer`` (or a subclass); how the loss of a step is
normalised over its micro-batches (and ranks) is decided inside its ``training_step`` / ``compute_loss``, which
subclasses override (trl computes the loss itself from a fused LM head, ms-swift rescales the model's own loss,
unsloth patches both). Flags such as ``model_accepts_loss_kwargs`` say what the stock path would do; this probe
records what actually happened, per micro-batch of the first ``steps`` optimizer steps:

- ``trainer_items``: the ``num_items_in_batch`` the training loop handed to ``training_step`` (its token count);
- through a forward hook on the model the Trainer calls (while training, with grad on): the supervised tokens
  (``labels[..., 1:] != -100``, or ``shift_labels``), the ``num_items_in_batch`` the forward got, and the
  ``loss`` it returned;
- through the accelerator's ``backward`` (wrapped on the instance): the loss that was backpropagated, and the
  divisor accelerate applies itself (its ``gradient_accumulation_steps``, except under DeepSpeed).

Values stay device tensors until the audit reads them after training (no host sync inside the run); the hooks
are removed after ``steps`` steps, which the worker keeps inside the untimed warm-up.
:mod:`harness.worker.live_fields.loss_normalization` turns the records into the audit's fields.
"""
from __future__ import annotations

import inspect
from typing import Any

IGNORE_INDEX = -100
# Steps watched at most: enough for a step whose micro-batches differ in supervised tokens (which is what tells
# a token mean over the step from a mean of micro-batch means), few enough to stay inside any warm-up.
LOSS_PROBE_STEPS = 4


def find_trainer(args: Any) -> Any:
    """The ``transformers.Trainer`` running the callback that calls this (its frame's ``self``), or None.

    Callbacks are handed the model, optimizer and dataloaders but not the Trainer; the loop that calls them is
    the Trainer's own method, so the Trainer is on the stack (the one whose ``args`` are the callback's)."""
    from transformers import Trainer

    frame = inspect.currentframe()
    try:
        for _ in range(16):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return None
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, Trainer) and getattr(candidate, "args", None) is args:
                return candidate
    finally:
        del frame
    return None


def _qualname(fn: Any) -> str | None:
    if fn is None:
        return None
    fn = getattr(fn, "__func__", fn)
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _loss_of(output: Any) -> Any:
    loss = getattr(output, "loss", None)
    if loss is None and isinstance(output, dict):
        loss = output.get("loss")
    return loss


class LossProbe:
    """Records the first ``steps`` optimizer steps' micro-batches (see the module docstring)."""

    def __init__(self, steps: int = 1) -> None:
        self.steps = max(1, int(steps))
        self.records: list[dict[str, Any]] = []  # one per optimizer step: {"step", "micro_batches": [...]}
        self.trainer_reading: dict[str, Any] | None = None
        self.not_started: str | None = "training never began"
        self._patched: list[tuple[Any, str, bool, Any]] = []
        self._hook: Any = None
        self._current_step: list[dict[str, Any]] = []
        self._micro: dict[str, Any] | None = None
        self._active = False

    # ---- start / stop --------------------------------------------------------------------------------
    def start(self, model: Any, trainer: Any) -> None:
        if trainer is None:
            self.not_started = "no transformers.Trainer on the stack of on_train_begin"
            return
        if model is None:
            self.not_started = "no live model at on_train_begin"
            return
        self.not_started = None
        self.trainer_reading = {
            "trainer_class": f"{type(trainer).__module__}.{type(trainer).__qualname__}",
            "compute_loss": _qualname(getattr(trainer, "compute_loss", None)),
            "training_step": _qualname(getattr(trainer, "training_step", None)),
            "model_accepts_loss_kwargs": getattr(trainer, "model_accepts_loss_kwargs", None),
            "compute_loss_func": _qualname(getattr(trainer, "compute_loss_func", None)),
        }
        original_step = trainer.training_step

        def training_step(*args: Any, **kw: Any) -> Any:
            # (model, inputs, num_items_in_batch) as transformers' loop calls it; passed on exactly as given
            if self._active:
                items = kw.get("num_items_in_batch", args[2] if len(args) > 2 else None)
                self._micro = {"trainer_items": items, "forwards": 0, "backwards": 0}
                self._current_step.append(self._micro)
            try:
                return original_step(*args, **kw)
            finally:
                self._micro = None

        self._patch(trainer, "training_step", training_step)  # every loop calls self.training_step
        accelerator = getattr(trainer, "accelerator", None)
        if accelerator is not None and hasattr(accelerator, "backward"):
            original_backward = accelerator.backward

            def backward(loss: Any, **kw: Any) -> Any:
                micro = self._micro
                if micro is not None:
                    micro["backwards"] += 1
                    if micro["backwards"] == 1:
                        micro["backward_loss"] = loss.detach().clone()
                        deepspeed = str(getattr(accelerator, "distributed_type", "")).endswith("DEEPSPEED")
                        # accelerate divides by its own accumulation steps (1 under transformers >= 5.6)
                        micro["accelerate_divisor"] = 1 if deepspeed else int(
                            getattr(accelerator, "gradient_accumulation_steps", 1) or 1)
                return original_backward(loss, **kw)

            self._patch(accelerator, "backward", backward)
        self._hook = model.register_forward_hook(self._forward_hook, with_kwargs=True)
        self._active = True

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        """Set ``owner.name`` on the instance, remembering what the instance itself held (a framework may have
        patched it there too) so that :meth:`stop` puts exactly that back."""
        own = vars(owner)
        self._patched.append((owner, name, name in own, own.get(name)))
        setattr(owner, name, replacement)

    def stop(self) -> None:
        self._active = False
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        for owner, name, had, previous in reversed(self._patched):
            if had:
                setattr(owner, name, previous)
            elif name in vars(owner):
                delattr(owner, name)  # back to the class's method
        self._patched = []

    # ---- recording ------------------------------------------------------------------------------------
    def _forward_hook(self, module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        import torch

        micro = self._micro
        if micro is None or not module.training or not torch.is_grad_enabled():
            return  # evaluation, or a no-grad forward for metrics (trl's compute_loss_func path)
        micro["forwards"] += 1
        if micro["forwards"] > 1:
            return
        shift = kwargs.get("shift_labels")
        labels = kwargs.get("labels")
        if torch.is_tensor(shift):
            micro["supervised"] = (shift != IGNORE_INDEX).sum()
        elif torch.is_tensor(labels):
            micro["supervised"] = (labels[..., 1:] != IGNORE_INDEX).sum()
        micro["forward_items"] = kwargs.get("num_items_in_batch")
        loss = _loss_of(output)
        if torch.is_tensor(loss):
            micro["forward_loss"] = loss.detach().clone()

    def step_end(self, step: int) -> None:
        if not self._active:
            return
        self.records.append({"step": int(step), "micro_batches": self._current_step})
        self._current_step = []
        if len(self.records) >= self.steps:
            self.stop()

    # ---- reading (after training) ---------------------------------------------------------------------
    def observed(self) -> list[dict[str, Any]]:
        """The records with tensors read as numbers (the audit calls this once, after training)."""
        def number(value: Any) -> Any:
            if value is None:
                return None
            if hasattr(value, "detach"):
                value = value.detach().float()
                return float(value.reshape(-1)[0].item()) if value.numel() else None
            return float(value)

        out = []
        for record in self.records:
            micros = []
            for m in record["micro_batches"]:
                micros.append({"trainer_items": number(m.get("trainer_items")),
                               "supervised": number(m.get("supervised")),
                               "forward_items": number(m.get("forward_items")),
                               "forward_loss": number(m.get("forward_loss")),
                               "backward_loss": number(m.get("backward_loss")),
                               "accelerate_divisor": m.get("accelerate_divisor"),
                               "forwards": m["forwards"], "backwards": m["backwards"]})
            out.append({"step": record["step"], "micro_batches": micros})
        return out
