"""Hugging Face trl: ``SFTTrainer`` with a peft ``LoraConfig``."""
from __future__ import annotations

from typing import Any

from harness.frameworks.adapter import Adapter
from harness.frameworks.base import train_then_evaluate, Job, Trained, torch_dtype_name
from harness.frameworks.recipes import adapter_flags, apply_recipe
from harness.frameworks.sft_common import load_split, load_pretruncated_split, lora_config_args, sft_config_args
from harness.frameworks.quantization import bnb_config_args
from harness.phases import mark

PACKAGES = ("trl", "transformers", "peft", "accelerate", "datasets", "torch", "bitsandbytes")
INSTALL_HINT = "python -m harness env build framework=trl"
# recipe=recommended's padding-free batching: trl 1.16 takes it only over inputs already cut (max_length None).
PRETRUNCATED = ("cut by the harness before trl (harness.data.tokenize.tokenize_record: keep the first "
                "train.max_length tokens, as trl's keep_start); trl gets max_length None")


def native_args(job: Job) -> dict[str, Any]:
    native = {
        "model_kwargs": {
            "dtype": torch_dtype_name(job),
            "attn_implementation": job["model"]["attn_implementation"],
            "trust_remote_code": job["model"]["trust_remote_code"],
            "quantization": bnb_config_args(job),
        },
        "sft_config": sft_config_args(job),
        "lora_config": lora_config_args(job),
    }
    native = apply_recipe(job, native, trainer_section="sft_config")  # recipe=recommended only
    if adapter_flags(job).get("pretruncate"):
        # The data goes in as tokens with their labels (harness.data.tokenize: the evaluator's tokenisation,
        # cut at train.max_length), which trl takes as they are: a conversational flag would be refused.
        native["sft_config"]["assistant_only_loss"] = False
        native["sft_config"].pop("chat_template_path", None)
    return native


def adapters_to_fp32(model: Any) -> int:
    """Put the trainable (LoRA) parameters back in float32; returns how many tensors were cast.

    With a quantized base, trl's SFTTrainer casts the adapters to bf16 (its reading of the QLoRA paper),
    so the adapter weights and AdamW's updates run in bf16, where peft, LLaMA-Factory and unsloth keep
    them in fp32 (H200, 7B QLoRA: eval loss 0.017 apart after 30 steps). Called after the Trainer is built
    and before ``train()`` creates the optimizer, so the optimizer sees fp32 parameters. The initial values
    survive the round trip: peft >= 0.20 already rounded the adapters over a 4-bit layer to its bf16 compute
    dtype when it made them (tests/audit/test_lora_init_qlora.py).
    """
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


def build_trainer(job: Job, callbacks: list[Any]) -> tuple[Any, Any]:
    """trl's SFTTrainer for ``job`` (QLoRA: adapters back in float32), and the tokenizer."""
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    args = native_args(job)
    model_kwargs = dict(args["model_kwargs"])
    quant = model_kwargs.pop("quantization")
    model_kwargs["dtype"] = getattr(torch, model_kwargs["dtype"])
    if quant is not None:
        quant["bnb_4bit_compute_dtype"] = getattr(torch, quant["bnb_4bit_compute_dtype"])
        model_kwargs["quantization_config"] = BitsAndBytesConfig(**quant)
    path = job["model"]["path"]
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=job["model"]["trust_remote_code"])
    model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
    mark("model_loaded")
    flags = adapter_flags(job)
    load = load_pretruncated_split if flags.get("pretruncate") else load_split
    train_set, eval_set = load(job, "train", tokenizer), load(job, "eval", tokenizer)
    mark("data_ready")
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**args["sft_config"]),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=LoraConfig(**args["lora_config"]),
        callbacks=callbacks,
    )
    if quant is not None and not flags.get("keep_bf16_adapters"):
        adapters_to_fp32(trainer.model)
    return trainer, tokenizer


def train(job: Job, callbacks: list[Any]) -> Trained:
    trainer, tokenizer = build_trainer(job, callbacks)
    return train_then_evaluate(trainer, tokenizer)


class TrlAdapter(Adapter):
    packages = PACKAGES
    distribution = "trl"
    install_hint = INSTALL_HINT
    truncation = "trl truncation_mode (keep_start: the tail of prompt+completion beyond max_length is dropped)"
    compare_rank = 0  # the reference the reports compare the others against
    native_loss = "own"  # trl's fused, chunked LM head and loss (docs/explain.md)

    native_args = staticmethod(native_args)

    def truncation_for(self, job: Job) -> str:
        if adapter_flags(job).get("pretruncate"):
            return PRETRUNCATED
        return self.truncation

    train = staticmethod(train)
