"""Hold on to the objects a framework built, as its Trainer hands them to callbacks.

trl, unsloth and LLaMA-Factory all end in ``transformers.Trainer``, whose callback events carry the
live model, tokenizer, optimizer, scheduler and dataloaders. Reading them here is how the audit sees
what was really built (not what we asked for) and how the worker gets the trained model back from
frameworks that do not return it (LLaMA-Factory's ``run_exp``).

Readings that must be taken before the first optimizer step changes them are taken here at
``on_train_begin``: gradient checkpointing as installed, the LoRA weights as initialised
(``live_fields/lora_init.py``) and the SDPA backends enabled (``harness/worker/sdpa.py``). The loss probe (``harness/worker/loss_probe.py``) watches the first
``loss_probe_steps`` steps of the Trainer that runs these callbacks (found on the stack).
"""
from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from harness.phases import mark, mark_together


class LiveObjects(TrainerCallback):
    def __init__(self, loss_probe_steps: int = 1) -> None:
        from harness.worker.loss_probe import LossProbe

        self.model: Any = None
        self.tokenizer: Any = None
        self.optimizer: Any = None
        self.lr_scheduler: Any = None
        self.train_dataloader: Any = None
        self.args: Any = None
        self.state: Any = None
        self.eval_metrics: dict[str, float] = {}
        self.train_begin_checkpointing: dict[str, Any] | None = None
        self.train_begin_lora_init: dict[str, Any] | None = None
        self.train_begin_sdpa: dict[str, Any] | None = None
        self.trainer: Any = None
        self.loss_probe = LossProbe(loss_probe_steps)

    def _take(self, args: Any, state: Any, kwargs: dict[str, Any]) -> None:
        self.args, self.state = args, state
        for name in ("model", "optimizer", "lr_scheduler", "train_dataloader"):
            if kwargs.get(name) is not None:
                setattr(self, name, kwargs[name])
        tokenizer = kwargs.get("processing_class") or kwargs.get("tokenizer")
        if tokenizer is not None:
            self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor wraps one

    def on_init_end(self, args, state, control, **kwargs):
        # Frameworks that load model and data inside their own entry point (LLaMA-Factory) reach
        # both by the time their Trainer exists; marks already set by an adapter are kept.
        mark_together("model_loaded", "data_ready")
        self._take(args, state, kwargs)

    def on_train_begin(self, args, state, control, **kwargs):
        mark("train_start")
        self._take(args, state, kwargs)
        from harness.worker.sdpa import snapshot

        self.train_begin_sdpa = snapshot()  # the SDPA backends enabled as training starts
        if self.model is not None:
            from harness.worker.live_fields.checkpointing import checkpointing_snapshot
            from harness.worker.live_fields.lora_init import lora_init_snapshot

            self.train_begin_checkpointing = checkpointing_snapshot(self.model, args)
            try:
                self.train_begin_lora_init = lora_init_snapshot(self.model)
            except Exception as err:  # noqa: BLE001  an unreadable field is None plus a note, never a failure
                self.train_begin_lora_init = {"lora_init_hash": None,
                                              "lora_init_error": f"{type(err).__name__}: {str(err)[:200]}"}
        from harness.worker.loss_probe import find_trainer

        self.trainer = find_trainer(args)
        self.loss_probe.start(self.model, self.trainer)

    def on_step_end(self, args, state, control, **kwargs):
        self.loss_probe.step_end(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        mark("train_end")
        self.loss_probe.stop()
        self._take(args, state, kwargs)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.eval_metrics.update({k: float(v) for k, v in (metrics or {}).items() if isinstance(v, (int, float))})
