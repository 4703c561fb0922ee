"""The trl SFT recipe shared by the trl and unsloth adapters (unsloth trains through trl's SFTTrainer).

Data goes in as conversational prompt/completion pairs, so the tokenizer's own chat template renders
it and only the completion is supervised (response-only loss), as in LLaMA-Factory with
``train_on_prompt: false``.
"""
from __future__ import annotations

from typing import Any

from harness.data import read_split
from harness.frameworks.base import PAD_TO_MULTIPLE_OF, Job, training_arguments
from harness.measure.evaluator import messages_for


def sft_config_args(job: Job) -> dict[str, Any]:
    """SFTConfig arguments: the shared Trainer arguments plus every trl default we must not inherit."""
    t = job["train"]
    args = training_arguments(job)
    args.update({
        "max_length": t["max_length"],
        "packing": t["packing"],
        "packing_strategy": "bfd",  # trl's default today; pinned so a new default cannot slip in
        # unsloth switches padding-free batching on by itself; trl's default may change too.
        "padding_free": bool(t["packing"]),
        "pad_to_multiple_of": PAD_TO_MULTIPLE_OF,
        "completion_only_loss": True,
        "assistant_only_loss": False,
        "loss_type": "nll",
        "truncation_mode": "keep_start",
        "shuffle_dataset": False,
        "activation_offloading": False,
        "use_liger_kernel": False,
        "average_tokens_across_devices": True,
    })
    return args


def lora_config_args(job: Job) -> dict[str, Any]:
    lora = job["train"]["lora"]
    return {
        "r": lora["r"],
        "lora_alpha": lora["alpha"],
        "lora_dropout": lora["dropout"],
        "target_modules": list(lora["targets"]),
        "bias": "none",
        "task_type": "CAUSAL_LM",
        "use_rslora": False,
        "use_dora": False,
    }


def conversation(record: dict[str, str]) -> dict[str, Any]:
    messages = messages_for(record)
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def load_split(job: Job, split: str):
    """The prepared records as a ``datasets.Dataset`` of prompt/completion conversations."""
    from datasets import Dataset

    return Dataset.from_list([conversation(r) for r in read_split(job["runtime"]["data_dir"], split)])
