"""The axolotl plugin (``plugins:`` in the config) through which the harness reaches what axolotl builds.

axolotl instantiates a plugin by its dotted name (``axolotl/integrations/base.py load_plugin``), so what the
plugin hands over waits in :data:`HANDOFF`, set by the adapter before ``do_train``. Its hooks:

- ``add_callbacks_pre_trainer``: our callbacks, given to the Trainer's constructor (core/builders/base.py
  get_callbacks), so they see ``on_init_end`` like every other framework's.
- ``get_training_args``: Trainer arguments axolotl hard-codes or does not map (``TRAINER_ARGS``), applied last
  (core/builders/causal.py build).
- ``pre_lora_load``: seeds the adapters' initialisation, which axolotl never does.
- ``post_model_load``: QLoRA's frozen base back in the dtype it was loaded in (axolotl leaves biases in float32).
- ``post_trainer_create``: gives the Trainer back transformers' token-weighted loss over accumulated micro-batches.
- ``post_trainer_create`` / ``post_train``: hold the Trainer and run its ``evaluate()`` once, right after
  ``train()`` (axolotl/train.py execute_training), before axolotl destroys the process group of a multi-GPU run.

The class derives from axolotl's ``BasePlugin``, so it is built on first access (module ``__getattr__``): this
module is imported by the parent too, which has no axolotl.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

# Trainer arguments set through get_training_args:
# - average_tokens_across_devices: hard-coded False (core/builders/base.py _set_base_training_args): under DDP
#   each rank's loss is its own token mean; the others divide by the tokens of every rank.
# - include_num_input_tokens_seen: mapped from include_tokens_per_second, a boolean (True counts padding too);
#   the Trainer's own count of non-padding tokens is what the harness cross-checks its count with.
# - disable_tqdm: not mapped; its progress bar would interleave with the worker's progress lines.
# - data_seed: not mapped (None: the sampler falls back to seed); set to the seed, as every other framework does.
TRAINER_ARGS = {"average_tokens_across_devices": True, "include_num_input_tokens_seen": "non_padding",
                "disable_tqdm": True}


@dataclass
class Handoff:
    """What the adapter and the plugin instance axolotl creates pass to each other (one run per process)."""
    callbacks: list[Any] = field(default_factory=list)
    evaluate: bool = True
    trainer: Any = None
    eval_metrics: dict[str, float] | None = None


HANDOFF = Handoff()


def _transformers_accepts_loss_kwargs(trainer: Any) -> bool:
    """What ``transformers.Trainer.__init__`` concludes for the unwrapped base model: its ``accepts_loss_kwargs``,
    else whether its forward takes ``**kwargs``."""
    import inspect

    model = trainer.accelerator.unwrap_model(trainer.model)
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(model, "accepts_loss_kwargs"):
        return bool(model.accepts_loss_kwargs)
    return any(p.kind == inspect.Parameter.VAR_KEYWORD for p in inspect.signature(model.forward).parameters.values())


@functools.lru_cache(maxsize=None)
def _plugin_class() -> type:
    from axolotl.integrations.base import BasePlugin

    class CallbacksPlugin(BasePlugin):
        def add_callbacks_pre_trainer(self, cfg: Any, model: Any) -> list[Any]:
            return list(HANDOFF.callbacks)

        def get_training_args(self, cfg: Any) -> dict[str, Any]:
            return {**TRAINER_ARGS, "data_seed": cfg.seed}

        def pre_lora_load(self, cfg: Any, model: Any) -> None:
            # axolotl/loaders/model.py load: nothing seeds the generator before the adapters are made (cfg.seed
            # reaches only the Trainer, built after them), so LoRA's A matrices would come from whatever state it
            # is in. trl seeds right before (trl/trainer/sft_trainer.py set_seed), as LLaMA-Factory does.
            from transformers import set_seed

            set_seed(cfg.seed)

        def post_model_load(self, cfg: Any, model: Any) -> None:
            # QLoRA: axolotl runs peft's prepare_model_for_kbit_training, which upcasts every frozen parameter that is
            # not 4-bit to float32, then casts only the norms and embeddings back (axolotl/loaders/model.py
            # _prepare_model_for_quantization, _configure_embedding_dtypes): the attention biases stay float32. trl
            # and LLaMA-Factory keep the base in the dtype it was loaded in; so does this.
            if cfg.adapter != "qlora":
                return
            for param in model.parameters():
                if not param.requires_grad and param.is_floating_point() and param.dtype != cfg.torch_dtype:
                    param.data = param.data.to(cfg.torch_dtype)

        def post_trainer_create(self, cfg: Any, trainer: Any) -> None:
            HANDOFF.trainer = trainer
            # core/trainers/base.py AxolotlTrainer.__init__ turns model_accepts_loss_kwargs off when the model's
            # forward has no parameter named num_items_in_batch; Qwen2's takes it through **kwargs (its loss uses
            # it). Off, the loss over accumulated micro-batches (and over DDP ranks) is the mean of their own
            # token means, not the token mean of them all, as in every other framework. transformers' own
            # reading (trainer.py, model introspection), restored:
            trainer.model_accepts_loss_kwargs = _transformers_accepts_loss_kwargs(trainer)

        def post_train(self, cfg: Any, model: Any) -> None:
            # Called right after trainer.train() and again at the end of axolotl.train.train (after the process
            # group is gone): the first call evaluates.
            if HANDOFF.evaluate and HANDOFF.eval_metrics is None and HANDOFF.trainer is not None:
                HANDOFF.eval_metrics = dict(HANDOFF.trainer.evaluate())

    return CallbacksPlugin


def __getattr__(name: str) -> Any:
    if name == "CallbacksPlugin":
        return _plugin_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
