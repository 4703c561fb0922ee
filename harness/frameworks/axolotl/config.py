"""The axolotl config of a job (``native_args``): the YAML ``axolotl train`` would read, every setting that
changes the math pinned, each with the file of axolotl 0.19.0 (``axolotl/...``) that holds its default.

Pure (no axolotl import): the silent-defaults tests and the bare benchmark script read it too."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.frameworks.base import (FRAMEWORK_EVAL_BATCH, PAD_TO_MULTIPLE_OF, Job, output_dir, precision,
                                     reentrant_checkpointing, uses_cuda)
from harness.frameworks.quantization import bnb_config_args
from harness.frameworks.recipes import adapter_flags, apply_recipe

# The per-message key that says whether a turn is supervised (axolotl's message_field_training).
TRAIN_FLAG = "train"
# The plugin that carries our callbacks and the Trainer arguments axolotl does not map (plugin.py).
PLUGIN = "harness.frameworks.axolotl.plugin.CallbacksPlugin"


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
        "gradient_checkpointing_kwargs": ({"use_reentrant": reentrant_checkpointing(job)}
                                          if t["gradient_checkpointing"] else None),
        "group_by_length": False,
        "logging_steps": 1,
        "save_strategy": "no",  # default None -> 'epoch' (core/builders/base.py _configure_save_and_eval_strategy)
        # eval_strategy left unset: set, axolotl also turns eval_on_start on (same function); the framework's
        # evaluation runs once, right after training (plugin.py post_train).
        "dataloader_num_workers": 0,  # default None -> one worker per GPU, prefetch 256 (config.py)
        "dataloader_drop_last": False,
        "torch_compile": False,
        # default True (config.py): a per-step count of supervised tokens, synchronised to the host.
        "include_tkps": False,
        "use_wandb": False,
        "use_mlflow": False,
        "use_tensorboard": False,
        "plugins": [PLUGIN],
        "strict": False,
    }
    if quant is not None:
        # loaders/model.py _set_quantization_config: compute dtype = the model's, storage bfloat16 (the
        # BitsAndBytesConfig default the others get: uint8).
        cfg["bnb_config_kwargs"] = {"bnb_4bit_quant_type": quant["bnb_4bit_quant_type"],
                                    "bnb_4bit_use_double_quant": quant["bnb_4bit_use_double_quant"],
                                    "bnb_4bit_compute_dtype": quant["bnb_4bit_compute_dtype"],
                                    "bnb_4bit_quant_storage": "uint8"}
    # recipe=recommended only (conf/framework/axolotl.yaml): the features' keys of this one flat config; the token
    # budget of multipack sets micro_batch_size (rows per step) and max_steps. A plugin a feature needs (Liger's)
    # joins ours: ``plugins`` is one list, which a plain merge would replace.
    cfg = apply_recipe(job, cfg, flat="axolotl", batch_key="micro_batch_size")
    cfg["plugins"] = [PLUGIN, *adapter_flags(job).get("plugins", [])]
    return {k: v for k, v in cfg.items() if v is not None}
