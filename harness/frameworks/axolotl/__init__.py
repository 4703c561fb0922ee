"""axolotl (PyPI ``axolotl``): its own YAML-driven pipeline, run as ``axolotl train CONFIG.yaml`` runs it:
``axolotl.cli.config.load_cfg`` (validation, normalisation) then ``axolotl.cli.train.do_train`` (its dataset
preparation, model and LoRA loading, ``HFCausalTrainerBuilder``, ``AxolotlTrainer``).

- ``config.py``: the config (``native_args``), written to ``RUN_DIR/axolotl_config.yaml``, the file a user runs.
- ``files.py``: the data, ``messages`` jsonl of the prepared records (``messages_for``, as every adapter does),
  each turn flagged with whether it is supervised, read by axolotl's ``chat_template`` dataset type with the
  tokenizer's own chat template.
- ``plugin.py``: the plugin named in the config, which hands our callbacks to its Trainer, sets the Trainer
  arguments axolotl does not map, seeds the adapters and runs the framework's own evaluation after training.

``do_train`` returns nothing: the model and tokenizer are its Trainer's (held by the plugin).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.frameworks.adapter import Adapter
from harness.frameworks.axolotl.config import data_files, native_args  # noqa: F401  (the bare script, the tests)
from harness.frameworks.axolotl.files import write_config, write_data  # noqa: F401
from harness.frameworks.base import FrameworkUnavailable, Job, TrainCallTimer, Trained

PACKAGES = ("axolotl", "transformers", "peft", "trl", "accelerate", "datasets", "torch", "bitsandbytes")
INSTALL_HINT = "python -m harness env build framework=axolotl"
# The attention kinds axolotl packs rows over (axolotl/utils/schemas/enums.py ATTN_IMPLS_SUPPORTING_PACKING).
PACKING_ATTENTION = ("flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")


def import_framework(job: Job) -> None:
    """Refuse, as unavailable, what axolotl would silently change or cannot do; then import it."""
    if job["train"]["warmup_steps"] == 1:
        raise FrameworkUnavailable("axolotl turns warmup_steps 1 into 2 (axolotl/core/builders/base.py "
                                   "_configure_warmup_and_logging)")
    attention = job["model"]["attn_implementation"]
    if job["train"]["packing"] and attention not in PACKING_ATTENTION:
        raise FrameworkUnavailable(f"axolotl packs rows only over flash or flex attention (model.attn_implementation="
                                   f"{attention}: its multipack sampler batches whole records by length instead, "
                                   "multipack_real_batches, axolotl/core/builders/causal.py build)")
    if job["runtime"].get("world_size", 1) > 1:
        import torch

        if not torch.cuda.is_available():
            raise FrameworkUnavailable("axolotl runs several processes only on GPUs (with WORLD_SIZE > 1 it puts "
                                       "each rank's model on GPU LOCAL_RANK, axolotl/utils/config/__init__.py "
                                       "normalize_config)")
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")  # telemetry off (axolotl/telemetry/manager.py)
    # What do_train imports, imported here so the imports phase holds it (an ImportError: install_hint).
    import axolotl.cli.config  # noqa: F401
    import axolotl.cli.train  # noqa: F401
    import axolotl.common.datasets  # noqa: F401
    import axolotl.train  # noqa: F401


def run_axolotl(job: Job, callbacks: list[Any], *, evaluate: bool = True, config: Path | None = None) -> TrainCallTimer:
    """What ``axolotl train CONFIG`` does, with ``callbacks`` on its Trainer; returns the timer of its
    ``Trainer.train`` call (``seconds``, ``trainer``). The bare benchmark script calls it without callbacks."""
    from harness.frameworks.axolotl.plugin import HANDOFF

    if Path(job["model"]["path"]).is_dir():
        # A local model: do_train's check of the user's Hub token (axolotl/cli/checks.py) asks the Hub otherwise.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.cli.train import do_train

    write_data(job)
    HANDOFF.callbacks, HANDOFF.evaluate = list(callbacks), evaluate
    cfg = load_cfg(str(config or write_config(job)))
    with TrainCallTimer() as timer:  # the wall time of trainer.train(), as for the trainers we build
        do_train(cfg, TrainerCliArgs())
    return timer


def train(job: Job, callbacks: list[Any]) -> Trained:
    from harness.frameworks.axolotl.plugin import HANDOFF

    timer = run_axolotl(job, callbacks)
    trainer = HANDOFF.trainer
    return Trained(model=trainer.model, tokenizer=trainer.processing_class,
                   framework_eval_loss=(HANDOFF.eval_metrics or {}).get("eval_loss"), train_call_s=timer.seconds)


class AxolotlAdapter(Adapter):
    packages = PACKAGES
    distribution = "axolotl"
    install_hint = INSTALL_HINT
    truncation = ("axolotl excess_length_strategy truncate (axolotl/utils/data/utils.py truncate_long_seq: the "
                  "tokens beyond sequence_len are dropped from the end)")
    compare_rank = 4  # it trains on CPU: part of the plain -m (the Quick start), after ms-swift
    # AxolotlTrainer.compute_loss -> the Trainer's -> the model's forward -> ForCausalLMLoss (docs/explain.md)
    native_loss = "transformers"

    native_args = staticmethod(native_args)
    import_framework = staticmethod(import_framework)
    train = staticmethod(train)
