"""unsloth: ``FastLanguageModel.from_pretrained`` + ``get_peft_model``, trained by its patched SFTTrainer.

unsloth must be imported before transformers, trl and peft in the process (it patches them), so the
worker calls ``import_framework`` before it builds any callback.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from harness.frameworks.adapter import Adapter
from harness.frameworks.base import train_then_evaluate, FrameworkUnavailable, Job, Trained, reentrant_checkpointing, torch_dtype_name
from harness.frameworks.recipes import adapter_flags, apply_recipe
from harness.frameworks.sft_common import load_split, sft_config_args
from harness.phases import mark

PACKAGES = ("unsloth", "unsloth_zoo", "trl", "transformers", "peft", "accelerate", "datasets", "torch",
            "bitsandbytes")
INSTALL_HINT = "python -m harness env build framework=unsloth (needs an NVIDIA GPU)"
# UnslothAdapter.multi_gpu_unsupported: read by the parent before anything is spawned when launcher.nproc > 1.
MULTI_GPU_UNSUPPORTED = ("unsloth does not support multi-GPU training in this harness "
                         "(open-source unsloth is single-GPU)")


# profile.checkpointing=reentrant: unsloth installs its own reentrant checkpoint function whatever it is asked (the
# audit's gradient_checkpointing_kind), so the control has nothing to change in it.
CHECKPOINTING_OWN = ("profile.checkpointing=reentrant: unsloth checkpoints with its own reentrant function already "
                     "(audit field gradient_checkpointing_kind); the control changes nothing in it")


def import_framework(job: Job) -> None:
    """Import unsloth first; it refuses to run without a CUDA GPU, which we report as unavailable."""
    import torch

    if job["runtime"].get("world_size", 1) > 1:  # before the CUDA check: true on every machine
        raise FrameworkUnavailable(MULTI_GPU_UNSUPPORTED)
    if not torch.cuda.is_available():
        raise FrameworkUnavailable("unsloth needs a CUDA GPU (torch.cuda.is_available() is False)")
    if reentrant_checkpointing(job):
        raise FrameworkUnavailable(CHECKPOINTING_OWN)
    # Our recipe pins padding_free explicitly; this also stops the automatic choice at its source (except
    # in the recommended recipe, which leaves unsloth's padding-free batching as unsloth ships it).
    if not adapter_flags(job).get("auto_padding_free"):
        os.environ.setdefault("UNSLOTH_DISABLE_AUTO_PADDING_FREE", "1")
    import unsloth  # noqa: F401  (patches transformers/trl/peft)


def native_args(job: Job) -> dict[str, Any]:
    t, lora = job["train"], job["train"]["lora"]
    native = {
        "from_pretrained": {
            "model_name": job["model"]["path"],
            "max_seq_length": t["max_length"],
            "dtype": torch_dtype_name(job),
            "load_in_4bit": t["quantization"] == "4bit",
            "load_in_8bit": False,
            "full_finetuning": False,
            "trust_remote_code": job["model"]["trust_remote_code"],
            "attn_implementation": job["model"]["attn_implementation"],
        },
        "get_peft_model": {
            "r": lora["r"],
            "lora_alpha": lora["alpha"],
            "lora_dropout": lora["dropout"],
            "target_modules": list(lora["targets"]),
            "bias": "none",
            # True = standard Hugging Face checkpointing, as the others use; unsloth's own "unsloth"
            # mode offloads activations to CPU and is a different algorithm.
            "use_gradient_checkpointing": bool(t["gradient_checkpointing"]),
            "random_state": t["seed"],
            "use_rslora": False,
            "loftq_config": None,
            "max_seq_length": t["max_length"],
        },
        "sft_config": sft_config_args(job),
    }
    return apply_recipe(job, native, trainer_section="sft_config")  # recipe=recommended only


def train(job: Job, callbacks: list[Any]) -> Trained:
    import torch
    from unsloth import FastLanguageModel
    from trl import SFTConfig, SFTTrainer

    args = native_args(job)
    load = dict(args["from_pretrained"])
    load["dtype"] = getattr(torch, load["dtype"])
    model, tokenizer = FastLanguageModel.from_pretrained(**load)
    model = FastLanguageModel.get_peft_model(model, **args["get_peft_model"])
    mark("model_loaded")
    train_set, eval_set = load_split(job, "train", tokenizer), load_split(job, "eval", tokenizer)
    mark("data_ready")
    trainer = SFTTrainer(model=model, args=SFTConfig(**args["sft_config"]), train_dataset=train_set,
                         eval_dataset=eval_set, processing_class=tokenizer, callbacks=callbacks)
    return train_then_evaluate(trainer, tokenizer)


class UnslothAdapter(Adapter):
    packages = PACKAGES
    distribution = "unsloth"
    install_hint = INSTALL_HINT
    truncation = "trl truncation_mode (unsloth trains through trl's SFTTrainer)"
    multi_gpu_unsupported = MULTI_GPU_UNSUPPORTED
    compare_rank = 1
    native_loss = "own"  # its patched forward's fused, chunked cross-entropy (docs/explain.md)
    # its fused LoRA kernels (MLP, O) never call peft's _cast_input_dtype; Qwen2's q/k/v (biased, so not fused)
    # do, inside its torch.compile'd decoder blocks, where inductor drops the lossless bf16->fp32->bf16 pair
    # (docs/explain.md section 4): the LoRA input cast control switches nothing here.
    lora_input_cast = "own"
    # unsloth's patched forward fuses the loss and returns no logits unless this is set; it reads it per
    # call, so it is switched on for our evaluation only (training keeps unsloth's fused path).
    evaluation_env = {"UNSLOTH_RETURN_LOGITS": "1"}

    native_args = staticmethod(native_args)
    import_framework = staticmethod(import_framework)
    train = staticmethod(train)

    def checkpointing_kind(self, function_names: Sequence[str]) -> str:
        # unsloth installs its own checkpoint function (seen on the H200 even when asked for standard
        # checkpointing); the audit names it rather than calling it Hugging Face's.
        return "unsloth" if any("unsloth" in n.lower() for n in function_names) else "hf"
