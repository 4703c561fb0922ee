"""Which loss path a profiled run's training steps took, read back from the live objects, and the same-loss
control (``profile.loss=transformers``) put in place.

Every profiled run (``profile=memory|time``) carries a :class:`LossPathProbe` among its callbacks:

- while the adapter trains, ``transformers.Trainer.__init__`` is wrapped (:meth:`LossPathProbe.watching`),
  so the trainer a framework builds, ours or its own (LLaMA-Factory's, ms-swift's, axolotl's), is found as
  the one whose callbacks hold this probe, and the probe reads its class's ``compute_loss``;
- at train begin, under the control, it puts the harness's common loss in the trainer's ``compute_loss``
  place (harness/worker/common_loss.py) for a framework whose own loss is another (``Adapter.native_loss ==
  "own"``), then reads what is in place;
- it reads what the model's forward calls given labels (its ``loss_function``) and hooks the
  LM head module (``get_output_embeddings()``) and the model's forward: a training micro-step whose head
  module runs built the full logits (their shape and dtype are read from its output); a fused loss reads
  the head's weight and never calls the module.

The control asked for but not put in place (no trainer of this run was built through
``transformers.Trainer.__init__``) is refused at train begin, before any step: the run is 'unavailable' with
the reason, never a native run labelled as the control.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

from transformers import TrainerCallback

from harness.frameworks.adapter import FrameworkUnavailable
from harness.records.profile import LossPath
from harness.worker.common_loss import CommonLoss


def qualname(fn: Any) -> str | None:
    """``module.qualname`` of a function or bound method (the function a bound method wraps)."""
    fn = getattr(fn, "__func__", fn)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if name and module else (name or None)


def _grad_training(module: Any) -> bool:
    import torch

    return bool(module.training and torch.is_grad_enabled())


class LossPathProbe(TrainerCallback):
    def __init__(self, requested: str | None, native_loss: str) -> None:
        self.record = LossPath(requested=requested or "native")
        self.switch = requested == "transformers" and native_loss != "transformers"
        self.native_loss = native_loss
        self.common = CommonLoss() if self.switch else None
        self.trainer: Any = None
        self.handles: list[Any] = []

    # ---- the trainer ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """For the adapter's ``train``: each Trainer built inside is offered to :meth:`adopt`."""
        import transformers

        original = transformers.Trainer.__init__
        probe = self

        @functools.wraps(original)  # its signature stays the original's: ms-swift reads it (processing_class)
        def __init__(trainer: Any, *args: Any, **kwargs: Any) -> None:
            original(trainer, *args, **kwargs)
            probe.adopt(trainer)

        transformers.Trainer.__init__ = __init__
        try:
            yield
        finally:
            transformers.Trainer.__init__ = original

    def adopt(self, trainer: Any) -> None:
        """The trainer that holds this probe among its callbacks is this run's."""
        handler = getattr(trainer, "callback_handler", None)
        if not any(cb is self for cb in getattr(handler, "callbacks", ())):
            return
        self.trainer = trainer
        self.record.trainer_compute_loss = qualname(type(trainer).compute_loss)

    # ---- the model --------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if self.switch and self.trainer is None:
            raise FrameworkUnavailable("profile.loss=transformers: the run's trainer was not built through "
                                       "transformers.Trainer.__init__, so its compute_loss could not be replaced")
        if self.common is not None:
            # here, not at the trainer's init: a subclass's __init__ runs on after transformers.Trainer's
            self.common.install(self.trainer)
        if self.trainer is not None:
            self.record.compute_loss = qualname(self.trainer.compute_loss)  # what training_step will call
        if model is None:
            self.record.notes.append("no model at train begin: the LM head was not watched")
            return
        try:
            self.record.model_loss_function = qualname(model.loss_function)
        except Exception:  # noqa: BLE001  a model without one (not a transformers model)
            self.record.model_loss_function = None
        self.handles.append(model.register_forward_pre_hook(self._forward))
        if self.common is not None:
            self.common.attach(model)  # after the StepMeter's hook (this probe is the last callback)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is None:
            self.record.notes.append("the model has no output embeddings: the LM head was not watched")
        else:
            self.handles.append(head.register_forward_hook(self._head))

    def _forward(self, module: Any, args: Any) -> None:
        if _grad_training(module):
            self.record.micro_steps += 1

    def _head(self, module: Any, args: Any, output: Any) -> None:
        if not _grad_training(module):
            return
        self.record.head_calls += 1
        if self.record.logits_shape is None and hasattr(output, "shape"):
            self.record.logits_shape = [int(n) for n in output.shape]
            self.record.logits_dtype = str(output.dtype).replace("torch.", "")

    def on_train_end(self, args, state, control, **kwargs):
        self.stop()

    def stop(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles = []

    # ---- the record -------------------------------------------------------------------------------
    def finish(self) -> LossPath:
        self.stop()
        rec = self.record
        self.trainer = None
        if self.common is not None:
            self.common.detach()  # kept past train end: the framework's own evaluation calls compute_loss too
            rec.common_loss_calls = self.common.calls
            rec.loss_function, rec.loss_dtype = self.common.loss_function, self.common.loss_dtype
        elif rec.requested == "transformers":
            rec.notes.append("nothing switched: this framework's own loss is transformers' path (Adapter.native_loss)")
            if rec.micro_steps and not rec.head_calls:
                rec.notes.append("but the LM head module never ran in training: Adapter.native_loss is wrong here, "
                                 "this run is not the control")
        rec.path = describe(rec)
        return rec


def describe(rec: LossPath) -> str:
    """The path in one line, from what was read back (never from what was asked)."""
    logits = f"{rec.logits_dtype} {rec.logits_shape}" if rec.logits_shape else "?"
    if rec.common_loss_calls:
        return (f"full logits ({logits}) -> {rec.loss_function} in {rec.loss_dtype} "
                f"(the harness's common compute_loss, {rec.common_loss_calls} micro-steps)")
    if not rec.micro_steps:
        return "no training micro-step was watched"
    if rec.head_calls:
        return (f"full logits ({logits}) from the LM head in {rec.head_calls}/{rec.micro_steps} micro-steps -> "
                f"{rec.model_loss_function}, via {rec.trainer_compute_loss}")
    return (f"no full logits: the LM head module never ran in {rec.micro_steps} micro-steps (a fused loss reads "
            f"its weight), via {rec.trainer_compute_loss}")
