"""The same-loss control's one loss (``profile.loss=transformers``): transformers' causal-LM loss, computed
the same way in every framework whose own loss is another (``Adapter.native_loss == "own"``: trl, unsloth).

It takes the trainer's ``compute_loss`` place for the run (an instance attribute: ``training_step`` and
``prediction_step`` call ``self.compute_loss``), and does what ``transformers.Trainer.compute_loss`` does
when the model computes its loss, with the loss taken out of the model:

- the model's forward runs without labels, so it returns the full-vocabulary logits whatever loss it
  would have fused: trl's fused LM head runs only when called with ``fused_lm_head=True``
  (trl/trainer/utils.py:1599-1609, 1.16.0), and unsloth's patched forward builds the logits when it has
  no labels (unsloth/models/llama.py:2141-2154, 2026.10.9). The model is *called* with its labels and a
  forward pre-hook of ours, registered after every other (:meth:`CommonLoss.attach`, at train begin, after
  the StepMeter's), takes them out: the hooks that count a batch's supervised tokens from the forward's
  arguments (harness/worker/step_meter.py, the audit's first batches) see the batch as in any other run;
- ``transformers.loss.loss_utils.ForCausalLMLoss`` computes the loss from them: the function Qwen2's
  forward calls given labels, which upcasts the logits to float32 (what LLaMA-Factory, ms-swift and
  axolotl run). The module's function, not the model's ``loss_function``: unsloth maps that to its own
  (unsloth_zoo/loss_utils.py:244-252);
- gradient accumulation and DDP token averaging follow ``Trainer.compute_loss`` exactly:
  ``num_items_in_batch`` reaches the loss only where the trainer says its model accepts loss kwargs (else
  ``training_step`` divides by the accumulation steps), and under ``average_tokens_across_devices`` the
  loss is multiplied by the process count;
- ``use_cache=False``, as trl's own compute_loss sets it (a training step keeps no KV cache).

What goes away with the framework's compute_loss: trl's per-step entropy and token-accuracy metrics (and
their host syncs), which are part of its loss path. The calls, the logits' dtype and the dtype the loss
was computed in are counted here for the read-back (harness/worker/loss_path.py).
"""
from __future__ import annotations

import types
from typing import Any

from harness.frameworks.adapter import FrameworkUnavailable


def _logits(outputs: Any) -> Any:
    if isinstance(outputs, dict):
        return outputs.get("logits")
    return getattr(outputs, "logits", None)


def common_compute_loss(trainer: Any, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                        num_items_in_batch: Any = None) -> Any:
    """What a trainer's ``compute_loss`` is under the control (bound to it by :meth:`CommonLoss.install`)."""
    return trainer._harness_common_loss.compute_loss(trainer, model, inputs, return_outputs, num_items_in_batch)


class CommonLoss:
    """``compute_loss`` for one trainer (``install``), counting what it computed."""

    def __init__(self) -> None:
        self.calls = 0
        self.logits_dtype: str | None = None
        self.loss_dtype: str | None = None
        self.loss_function: str | None = None
        self._handle: Any = None
        self._taking = False  # inside compute_loss's model call: the pre-hook takes the labels out
        self._taken = False

    def attach(self, model: Any) -> None:
        """The labels-taking pre-hook on the trainer's model (the one its callbacks get, which the StepMeter
        hooks too); registered last, so it runs after the hooks that read the labels."""
        self.detach()
        self._handle = model.register_forward_pre_hook(self._take_labels, with_kwargs=True)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _take_labels(self, module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
        if not self._taking:
            return None
        self._taking, self._taken = False, True  # the outermost call only (a wrapper calls its inner model)
        return args, {k: v for k, v in kwargs.items() if k not in ("labels", "shift_labels")}

    def install(self, trainer: Any) -> None:
        trainer._harness_common_loss = self
        trainer.compute_loss = types.MethodType(common_compute_loss, trainer)

    def compute_loss(self, trainer: Any, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        from transformers.loss.loss_utils import ForCausalLMLoss

        inputs = {**inputs, "use_cache": False}
        labels, shift_labels = inputs.get("labels"), inputs.get("shift_labels")
        if labels is None and shift_labels is None:
            raise FrameworkUnavailable("profile.loss=transformers: the trainer's batch has no labels to compute "
                                       "the causal-LM loss from")
        if self._handle is None:  # not attached (no train begin yet): the forward simply gets no labels
            inputs = {k: v for k, v in inputs.items() if k not in ("labels", "shift_labels")}
        self._taking, self._taken = self._handle is not None, False
        try:
            outputs = model(**inputs)
        finally:
            taken, self._taking = self._taken, False
        if self._handle is not None and not taken:
            raise FrameworkUnavailable("profile.loss=transformers: the labels reached the model's forward (the "
                                       "pre-hook that takes them out never ran), so it computed a loss of its own")
        logits = _logits(outputs)
        if logits is None or logits.dim() != 3 or logits.numel() == 0:
            raise FrameworkUnavailable(f"profile.loss=transformers: {type(model).__name__}'s forward returned no "
                                       "full logits without labels, so the common loss cannot replace its own")
        accepts = bool(getattr(trainer, "model_accepts_loss_kwargs", False))
        counted = num_items_in_batch if accepts else None
        loss = ForCausalLMLoss(logits, labels, logits.shape[-1], num_items_in_batch=counted, shift_labels=shift_labels)
        if trainer.args.average_tokens_across_devices and accepts and num_items_in_batch is not None:
            scale = trainer.accelerator.num_processes
            parallelism = getattr(trainer.accelerator, "parallelism_config", None)
            if parallelism is not None:
                scale //= parallelism.tp_size
            # not in place: a loss that is a view of a custom autograd output refuses it (unsloth's note)
            loss = loss * (scale if trainer.args.n_gpu <= 1 else trainer.args.n_gpu)
        if model.training and __import__("torch").is_grad_enabled():
            self.calls += 1
            self.logits_dtype = str(logits.dtype).replace("torch.", "")
            self.loss_dtype = str(loss.dtype).replace("torch.", "")
            self.loss_function = f"{ForCausalLMLoss.__module__}.{ForCausalLMLoss.__qualname__}"
        return (loss, outputs) if return_outputs else loss
