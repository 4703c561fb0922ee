"""axolotl (PyPI ``axolotl``): its own YAML-driven pipeline, run as ``axolotl train CONFIG.yaml`` runs it:
``axolotl.cli.config.load_cfg`` (validation, normalisation) then ``axolotl.cli.train.do_train`` (its dataset
preparation, model and LoRA loading, ``HFCausalTrainerBuilder``, ``AxolotlTrainer``).

The config is ``native_args(job)``, written to ``RUN_DIR/axolotl_config.yaml`` (the file a user would run).
Data goes in as ``messages`` jsonl (``harness.data.tokenize.messages_for`` of each prepared record, as every
adapter does) through axolotl's ``chat_template`` dataset type with the tokenizer's own chat template; each
message carries a ``train`` flag set on the supervised turns (``supervised_turns``), so only those are in the
loss, as in every other framework.

Our callbacks reach its Trainer through axolotl's plugin system (``plugins:`` names
``CallbacksPlugin`` below, whose ``add_callbacks_pre_trainer`` hook hands them to the Trainer's constructor).
``do_train`` returns nothing: the Trainer is the one ``TrainCallTimer`` saw train, and its ``evaluate()`` runs
once afterwards for the framework's own eval loss.

Every default of axolotl's that changes the job is pinned in ``native_args``, each with the file of axolotl
0.19.0 (``axolotl/...``) that holds it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from harness.frameworks.adapter import Adapter
from harness.frameworks.base import (FRAMEWORK_EVAL_BATCH, PAD_TO_MULTIPLE_OF, FrameworkUnavailable, Job, TrainCallTimer, Trained, output_dir,
                                     precision, uses_cuda)
from harness.frameworks.quantization import bnb_config_args

PACKAGES = ("axolotl", "transformers", "peft", "trl", "accelerate", "datasets", "torch", "bitsandbytes")
INSTALL_HINT = "python -m harness env build framework=axolotl"
CONFIG_FILE = "axolotl_config.yaml"
# The per-message key that says whether a turn is supervised (axolotl's message_field_training).
TRAIN_FLAG = "train"
# Trainer arguments axolotl hard-codes or maps from a boolean, set through its plugin hook get_training_args
# (applied last, core/builders/causal.py build):
# - average_tokens_across_devices: hard-coded False (core/builders/base.py _set_base_training_args): under DDP
#   each rank's loss is its own token mean; the others divide by the tokens of every rank.
# - include_num_input_tokens_seen: from include_tokens_per_second, a boolean (True counts padding too); the
#   Trainer's own count of non-padding tokens is what the harness cross-checks its count with.
# - disable_tqdm: its progress bar would interleave with the worker's progress lines (not mapped by axolotl).
# data_seed (not mapped either) is added from the config's seed (CallbacksPlugin.get_training_args).
TRAINER_ARGS = {"average_tokens_across_devices": True, "include_num_input_tokens_seen": "non_padding",
                "disable_tqdm": True}
# The attention kinds axolotl packs rows over (axolotl/utils/schemas/enums.py ATTN_IMPLS_SUPPORTING_PACKING).
PACKING_ATTENTION = ("flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")


def data_files(job: Job) -> dict[str, str]:
    """Where the axolotl copies of the prepared splits go (beside the framework's output)."""
    folder = Path(job["runtime"]["run_dir"]) / "axolotl_data"
    return {"train": str(folder / "train.jsonl"), "eval": str(folder / "eval.jsonl")}


def _dataset(path: str) -> dict[str, Any]:
    """One ``datasets:`` entry (axolotl/utils/schemas/datasets.py SFTDataset; axolotl/prompt_strategies/
    chat_template.py ChatTemplateStrategy)."""
    return {
        "path": path,
        "ds_type": "json",
        "split": "train",  # a json file loads as one 'train' split
        "type": "chat_template",
        "chat_template": "tokenizer_default",  # the model's own template, as every framework renders
        "field_messages": "messages",
        "message_property_mappings": {"role": "role", "content": "content"},
        # A turn's ``train`` flag decides (chat_template.py _tokenize_single_prompt: it overrides roles_to_train).
        "message_field_training": TRAIN_FLAG,
        "roles_to_train": ["assistant"],
        # default 'turn' (chat_template.py _get_strategy_params): the EOS (<|im_end|>) closing a trained turn.
        "train_on_eos": "turn",
        # eot_tokens ['\n'] (below): the newline after it, which the others supervise as the turn's last token.
        "train_on_eot": "turn",
        "drop_system_message": False,
    }


def device_map(job: Job) -> dict[str, Any]:
    """This process's own device (see ``device_map`` in ``native_args``)."""
    return {"": int(os.environ.get("LOCAL_RANK", 0))} if uses_cuda(job) else {"": "cpu"}


def native_args(job: Job) -> dict[str, Any]:
    """The axolotl config for ``job``: every setting that changes the math, pinned."""
    t, lora = job["train"], job["train"]["lora"]
    files = data_files(job)
    prec = precision(job)
    run_dir = Path(job["runtime"]["run_dir"])
    quant = bnb_config_args(job)
    cfg: dict[str, Any] = {
        # ---- model (axolotl/utils/schemas/model.py) ----------------------------------------------------------
        "base_model": job["model"]["path"],
        "tokenizer_config": job["model"]["path"],
        "model_type": "AutoModelForCausalLM",
        "tokenizer_type": "AutoTokenizer",
        "trust_remote_code": job["model"]["trust_remote_code"],
        "attn_implementation": job["model"]["attn_implementation"],
        # default None -> 'auto' on one process (axolotl/utils/config/__init__.py choose_device): the model split
        # layer-wise over every visible GPU.
        "device_map": device_map(job),
        # ---- adapter (axolotl/utils/schemas/peft.py) ------------------------------------------------------
        "adapter": "qlora" if quant is not None else "lora",
        "load_in_4bit": quant is not None,
        "load_in_8bit": False,
        "lora_r": lora["r"],
        "lora_alpha": lora["alpha"],
        "lora_dropout": lora["dropout"],
        "lora_target_modules": list(lora["targets"]),
        "lora_target_linear": False,
        "lora_fan_in_fan_out": False,
        "peft_use_rslora": False,
        "peft_use_dora": False,
        # default None -> True (axolotl/utils/schemas/config.py check_auto_enable_lora_kernels): axolotl's own
        # LoRA autograd functions and Triton SwiGLU kernels replace the MLP and attention projections.
        "lora_mlp_kernel": False,
        "lora_qkv_kernel": False,
        "lora_o_kernel": False,
        "lora_embedding_kernel": False,
        # ---- data (axolotl/utils/schemas/config.py, datasets.py) ----------------------------------------------
        "datasets": [_dataset(files["train"])],
        "test_datasets": [_dataset(files["eval"])],
        "val_set_size": 0.0,
        "chat_template": "tokenizer_default",
        # default [eos_token] (chat_template.py __init__): see train_on_eot above.
        "eot_tokens": ["\n"],
        "train_on_inputs": False,
        "sequence_len": t["max_length"],
        # default 'drop' (axolotl/utils/data/utils.py handle_long_seq_in_dataset): a longer record is dropped;
        # 'truncate' keeps its first sequence_len tokens, as trl's keep_start and our evaluator.
        "excess_length_strategy": "truncate",
        # default True (axolotl/utils/data/shared.py merge_datasets): the train set is shuffled once at load.
        "shuffle_merged_datasets": False,
        "shuffle_before_merging_datasets": False,
        "dataset_prepared_path": str(run_dir / "axolotl_prepared"),  # default ./last_run_prepared (the cwd)
        "dataset_num_proc": 1,  # default os.cpu_count() worker processes (axolotl/utils/datasets.py)
        "dataset_exact_deduplication": False,
        "sample_packing": bool(t["packing"]),
        "eval_sample_packing": False,
        # default None -> pad to a multiple of 64 (axolotl/core/builders/causal.py build); ours is 8.
        "pad_to_sequence_len": None,
        "pad_to_multiple_of": PAD_TO_MULTIPLE_OF,
        # default 'auto' -> flattened padding-free batches over varlen attention (schemas/validation.py).
        "batch_flattening": False,
        # ---- training (axolotl/utils/schemas/training.py) ---------------------------------------------------------
        "output_dir": output_dir(job),
        "micro_batch_size": t["batch_size"],
        "gradient_accumulation_steps": t["grad_accum"],
        "eval_batch_size": FRAMEWORK_EVAL_BATCH,
        "max_steps": t["max_steps"],
        "num_epochs": 1,
        "learning_rate": t["lr"],
        "optimizer": t["optimizer"],
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-8,
        "weight_decay": t["weight_decay"],
        "max_grad_norm": t["max_grad_norm"],
        "lr_scheduler": t["lr_scheduler"],  # default 'cosine' (training.py)
        "warmup_steps": t["warmup_steps"],
        "seed": t["seed"],
        "bf16": prec == "bf16",
        "fp16": prec == "fp16",
        "tf32": False,
        "gradient_checkpointing": t["gradient_checkpointing"],
        "gradient_checkpointing_kwargs": {"use_reentrant": False} if t["gradient_checkpointing"] else None,
        "group_by_length": False,
        "logging_steps": 1,
        "save_strategy": "no",  # default None -> 'epoch' (core/builders/base.py _configure_save_and_eval_strategy)
        # eval_strategy left unset: set, axolotl also turns eval_on_start on (same function); the framework's
        # evaluation runs once after training (train below).
        "dataloader_num_workers": 0,  # default None -> one worker per GPU, prefetch 256 (config.py)
        "dataloader_drop_last": False,
        "torch_compile": False,
        # default True (config.py): a per-step count of supervised tokens, synchronised to the host.
        "include_tkps": False,
        "use_wandb": False,
        "use_mlflow": False,
        "use_tensorboard": False,
        "plugins": [f"{__name__}.CallbacksPlugin"],
        "strict": False,
    }
    if quant is not None:
        # loaders/model.py _set_quantization_config: compute dtype = the model's, storage bfloat16 (the
        # BitsAndBytesConfig default the others get: uint8).
        cfg["bnb_config_kwargs"] = {"bnb_4bit_quant_type": quant["bnb_4bit_quant_type"],
                                    "bnb_4bit_use_double_quant": quant["bnb_4bit_use_double_quant"],
                                    "bnb_4bit_compute_dtype": quant["bnb_4bit_compute_dtype"],
                                    "bnb_4bit_quant_storage": "uint8"}
    return {k: v for k, v in cfg.items() if v is not None}


def write_data(job: Job) -> None:
    """The prepared splits as ``messages`` records, each turn flagged with whether it is supervised."""
    from harness.data.dataset import read_split
    from harness.data.tokenize import messages_for, supervised_turns

    for split, path in data_files(job).items():
        lines = []
        for record in read_split(job["runtime"]["data_dir"], split):
            trained = set(supervised_turns(record))
            messages = [{**m, TRAIN_FLAG: i in trained} for i, m in enumerate(messages_for(record))]
            lines.append(json.dumps({"messages": messages}, ensure_ascii=False))
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_config(job: Job) -> Path:
    import yaml

    path = Path(job["runtime"]["run_dir"]) / CONFIG_FILE
    path.write_text(yaml.safe_dump(native_args(job), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def _base_plugin() -> type:
    from axolotl.integrations.base import BasePlugin

    return BasePlugin


class CallbacksPlugin:
    """axolotl plugin (``plugins:`` in the config) that gives our callbacks to its Trainer. axolotl instantiates
    it by name, so the callbacks wait in ``pending`` (set by ``train``). Made a ``BasePlugin`` subclass on first
    use, so this module imports nothing of axolotl at its top."""

    pending: ClassVar[list[Any]] = []

    def __new__(cls, *args: Any, **kwargs: Any):  # noqa: D102
        plugin_base = _base_plugin()
        if not issubclass(cls, plugin_base):
            real = type(cls.__name__, (cls, plugin_base), {})
            return plugin_base.__new__(real)
        return super().__new__(cls)

    def add_callbacks_pre_trainer(self, cfg: Any, model: Any) -> list[Any]:
        return list(CallbacksPlugin.pending)

    def get_training_args(self, cfg: Any) -> dict[str, Any]:
        return {**TRAINER_ARGS, "data_seed": cfg.seed}

    def pre_lora_load(self, cfg: Any, model: Any) -> None:
        """Seed the adapters' initialisation. axolotl never does: its seed reaches only the Trainer, built after
        the adapters (axolotl/loaders/model.py load), so LoRA's A matrices come from whatever state the global
        generator is in. trl seeds right before (trl/trainer/sft_trainer.py set_seed), as LLaMA-Factory does."""
        from transformers import set_seed

        set_seed(cfg.seed)


def import_framework(job: Job) -> None:
    """Refuse, as unavailable, what axolotl would silently change."""
    if job["train"]["warmup_steps"] == 1:
        raise FrameworkUnavailable("axolotl turns warmup_steps 1 into 2 (axolotl/core/builders/base.py "
                                   "_configure_warmup_and_logging)")
    attention = job["model"]["attn_implementation"]
    if job["train"]["packing"] and attention not in PACKING_ATTENTION:
        raise FrameworkUnavailable(f"axolotl packs rows only over flash or flex attention (model.attn_implementation="
                                   f"{attention}: its multipack sampler batches whole records by length instead, "
                                   "multipack_real_batches, axolotl/core/builders/causal.py build)")
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")  # telemetry off (axolotl/telemetry/manager.py)
    # What do_train imports, imported here so the imports phase holds it (an ImportError: install_hint).
    import axolotl.cli.config  # noqa: F401
    import axolotl.cli.train  # noqa: F401
    import axolotl.common.datasets  # noqa: F401
    import axolotl.train  # noqa: F401


def train(job: Job, callbacks: list[Any]) -> Trained:
    if Path(job["model"]["path"]).is_dir():
        # A local model: do_train's check of the user's Hub token (axolotl/cli/checks.py) asks the Hub otherwise.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from axolotl.cli.args import TrainerCliArgs
    from axolotl.cli.config import load_cfg
    from axolotl.cli.train import do_train

    write_data(job)
    config = write_config(job)
    CallbacksPlugin.pending = list(callbacks)
    cfg = load_cfg(str(config))
    with TrainCallTimer() as timer:
        do_train(cfg, TrainerCliArgs())
    trainer = timer.trainer
    metrics = trainer.evaluate()
    return Trained(model=trainer.model, tokenizer=trainer.processing_class,
                   framework_eval_loss=metrics.get("eval_loss"), train_call_s=timer.seconds)


class AxolotlAdapter(Adapter):
    packages = PACKAGES
    distribution = "axolotl"
    install_hint = INSTALL_HINT
    truncation = ("axolotl excess_length_strategy truncate (axolotl/utils/data/utils.py truncate_long_seq: the "
                  "tokens beyond sequence_len are dropped from the end)")

    def native_args(self, job: Job) -> dict[str, Any]:
        return native_args(job)

    def import_framework(self, job: Job) -> None:
        import_framework(job)

    def train(self, job: Job, callbacks: list[Any]) -> Trained:
        return train(job, callbacks)
