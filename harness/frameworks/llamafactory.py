"""LLaMA-Factory: ``run_exp`` with a generated ``dataset_info.json`` over the prepared records: alpaca
formatting for alpaca records, sharegpt formatting (OpenAI role/content tags) for conversations, whose
first system turn LLaMA-Factory takes as the system prompt in place of the template's default, as the
tokenizer's chat template does.

LLaMA-Factory builds its own model, data and trainer and returns none of them: ``train`` returns a
``Trained`` without model, tokenizer or eval loss, and the worker takes them from the callbacks
LLaMA-Factory passes to ``transformers.Trainer`` (see ``harness.worker.live_objects``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.atomic import atomic_write_json
from harness.frameworks.adapter import Adapter
from harness.frameworks.base import Job, TrainCallTimer, Trained, precision, reentrant_checkpointing, training_arguments
from harness.frameworks.quantization import bnb_config_args
from harness.frameworks.recipes import apply_recipe

PACKAGES = ("llamafactory", "transformers", "peft", "trl", "accelerate", "datasets", "torch", "bitsandbytes")
INSTALL_HINT = "python -m harness env build framework=llamafactory"

DATASET_INFO = {
    split: {"file_name": f"{split.split('_')[1]}.jsonl", "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"}}
    for split in ("harness_train", "harness_eval")
}
# The prepared conversation form (harness.data.formats) in LLaMA-Factory's sharegpt terms.
CONVERSATION_DATASET_INFO = {
    split: {"file_name": f"{split.split('_')[1]}.jsonl", "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"}}
    for split in ("harness_train", "harness_eval")
}


# neat_packing (recipe=recommended): its packing preprocessor drops a record longer than cutoff_len instead
# of cutting it, and lowers cutoff_len by one (v0.9.5 data/processor/supervised.py:172-173, data_args.py:188-189).
NEAT_PACKING_TRUNCATION = ("LLaMA-Factory neat_packing: records longer than cutoff_len are dropped, not cut; "
                           "cutoff_len lowered by 1")


def _conversations(job: Job) -> bool:
    return (job.get("dataset") or {}).get("format") in ("sharegpt", "messages")

# Trainer arguments LLaMA-Factory handles itself: it turns checkpointing on unless told not to.
_MANAGED_BY_LLAMAFACTORY = ("gradient_checkpointing", "gradient_checkpointing_kwargs")


def native_args(job: Job) -> dict[str, Any]:
    t, lora = job["train"], job["train"]["lora"]
    args = {k: v for k, v in training_arguments(job).items() if k not in _MANAGED_BY_LLAMAFACTORY and v is not None}
    args.update({
        "stage": "sft",
        "do_train": True,
        "do_eval": True,  # one framework eval at the end, beside ours
        "model_name_or_path": job["model"]["path"],
        "trust_remote_code": job["model"]["trust_remote_code"],
        "flash_attn": job["model"]["attn_implementation"],
        "finetuning_type": "lora",
        "lora_rank": lora["r"],
        "lora_alpha": lora["alpha"],  # LLaMA-Factory's default is 2 x rank
        "lora_dropout": lora["dropout"],
        "lora_target": ",".join(lora["targets"]),
        "use_rslora": False,
        "use_dora": False,
        "pissa_init": False,
        "template": "qwen",
        "default_system": None,  # the template's, which equals the Qwen2.5 chat template's default
        "dataset": "harness_train",
        "eval_dataset": "harness_eval",
        "dataset_dir": job["runtime"]["data_dir"],
        "cutoff_len": t["max_length"],
        "train_on_prompt": False,  # response-only loss, as in the other frameworks
        # dataset.loss_on=last_assistant: only the last turn of a conversation is supervised.
        "mask_history": _conversations(job) and job["dataset"].get("loss_on") == "last_assistant",
        "packing": t["packing"],
        "neat_packing": False,
        "overwrite_cache": True,
        "preprocessing_num_workers": None,
        "disable_shuffling": False,
        "overwrite_output_dir": True,
        "disable_gradient_checkpointing": not t["gradient_checkpointing"],
        # LLaMA-Factory defaults to reentrant checkpointing; reentrant only under profile.checkpointing
        "use_reentrant_gc": reentrant_checkpointing(job),
        "use_unsloth": False,
        "use_unsloth_gc": False,
        "enable_liger_kernel": False,
        "upcast_layernorm": False,
        "upcast_lmhead_output": False,
        "pure_bf16": False,
        "use_dft_loss": False,
        "compute_accuracy": False,
        "plot_loss": False,
        "resize_vocab": False,
    })
    if precision(job) == "fp32":
        args.pop("bf16"), args.pop("fp16")
    quant = bnb_config_args(job)
    if quant is not None:
        args.update({"quantization_bit": 4, "quantization_method": "bnb", "quantization_type": "nf4",
                     "double_quantization": True})
    return apply_recipe(job, args, flat="llamafactory")  # recipe=recommended only


def dataset_info(job: Job) -> dict[str, Any]:
    return CONVERSATION_DATASET_INFO if _conversations(job) else DATASET_INFO


def write_dataset_info(data_dir: Path, job: Job | None = None) -> None:
    atomic_write_json(data_dir / "dataset_info.json", dataset_info(job or {}))


def _stub_missing_torchaudio() -> None:
    """LLaMA-Factory imports torchaudio at module level (mm_plugin) but text SFT never calls it, and
    no torchaudio wheel loads over the CPU build of torch: give it an empty module with a spec
    (transformers calls importlib.util.find_spec on it)."""
    import importlib.machinery
    import sys
    import types

    try:
        import torchaudio  # noqa: F401
    except (ImportError, OSError):
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", None)
        sys.modules["torchaudio"] = stub


def train(job: Job, callbacks: list[Any]) -> Trained:
    import os

    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")  # versions are pinned by envs/, not by its check
    _stub_missing_torchaudio()
    from llamafactory.train.tuner import run_exp

    write_dataset_info(Path(job["runtime"]["data_dir"]), job)
    with TrainCallTimer() as timer:  # the wall time of trainer.train(), as for the trainers we build
        run_exp(args=native_args(job), callbacks=callbacks)
    # run_exp returns nothing: model, tokenizer and eval loss are the ones its Trainer gave our callbacks.
    return Trained(train_call_s=timer.seconds)


class LlamaFactoryAdapter(Adapter):
    packages = PACKAGES
    distribution = "llamafactory"
    install_hint = INSTALL_HINT
    truncation = ("LLaMA-Factory infer_seqlen: prompt and response each cut, in proportion to their lengths, "
                  "to fit cutoff_len (the response keeps at least its share)")
    compare_rank = 2
    # the Trainer's compute_loss -> the model's forward -> ForCausalLMLoss (docs/explain.md)
    native_loss = "transformers"

    native_args = staticmethod(native_args)
    train = staticmethod(train)

    def truncation_for(self, job: Job) -> str:
        if native_args(job).get("neat_packing"):
            return NEAT_PACKING_TRUNCATION
        return self.truncation
