"""Test double: a framework made of plain ``transformers.Trainer`` + peft, with injectable faults.

It drives the real runner and worker through every status on CPU without trl, unsloth or
LLaMA-Factory installed (``framework=fake framework.fault=oom``). With ``fault=none`` it really
trains, through the same callbacks as the real adapters, seeding the LoRA initialisation as trl does.
One fault trains to the end but builds another job, silently, as a real framework did (the strict audit must
catch it): ``micro_batch_loss`` turns the Trainer's ``model_accepts_loss_kwargs`` off, so each micro-batch's
loss is its own token mean divided by the accumulation steps (what axolotl's Trainer does for Qwen2 unless
the harness's plugin restores transformers' reading). ``sdpa_flags`` turns every SDPA backend back on after
the worker applied ``train.sdpa_backend``, as a framework setting the flags itself would.
"""
from __future__ import annotations

import atexit
import os
import signal
import time
from typing import Any

from harness.data.dataset import read_split
from harness.frameworks.adapter import Adapter
from harness.frameworks.base import (PAD_TO_MULTIPLE_OF, FrameworkUnavailable, Job, Trained, torch_dtype_name,
                                     training_arguments)
from harness.frameworks.sft_common import lora_config_args
from harness.data.tokenize import tokenize_record
from harness.phases import mark

PACKAGES = ("transformers", "peft", "torch")
INSTALL_HINT = "pip install transformers peft"
# What ``framework.fault=`` can ask for (none: train normally).
FAULTS = ("none", "exception", "import_error", "unavailable", "oom", "segfault", "hang", "exit", "hang_at_exit",
          "micro_batch_loss", "sdpa_flags")
# Faults that train to the end, with a job that differs from the one asked for.
DEVIATIONS = ("micro_batch_loss", "sdpa_flags")


def native_args(job: Job) -> dict[str, Any]:
    return {"training_arguments": training_arguments(job), "lora_config": lora_config_args(job),
            "fault": job["framework"].get("fault", "none")}


def import_framework(job: Job) -> None:
    fault = job["framework"].get("fault", "none")
    if fault == "import_error":
        import harness_fake_framework_that_is_not_installed  # noqa: F401
    if fault == "unavailable":
        raise FrameworkUnavailable("fake framework told to be unavailable")


def _inject(fault: str) -> None:
    if fault == "exception":
        raise RuntimeError("injected failure in the training loop")
    if fault == "oom":
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB (injected)")
    if fault == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if fault == "hang":
        # The line tests wait for (in worker.log) before they signal or time out a hung run.
        print(f"fake: hanging (pid {os.getpid()}, process group {os.getpgid(0)})", flush=True)
        time.sleep(3600)
    if fault == "exit":
        os._exit(3)
    if fault == "hang_at_exit":
        # trains normally and writes its result, then never exits: a rank stuck in teardown (seen with
        # LLaMA-Factory under torchrun: a gloo thread joined in ~ProcessGroupGloo, waiting on a peer gone)
        atexit.register(time.sleep, 3600)


def _dataset(job: Job, tokenizer: Any, split: str) -> list[dict[str, Any]]:
    rows = read_split(job["runtime"]["data_dir"], split)
    tokenized = [tokenize_record(tokenizer, r, job["train"]["max_length"]) for r in rows]
    return [{"input_ids": t["input_ids"], "labels": t["labels"]} for t in tokenized]


def train(job: Job, callbacks: list[Any]) -> Trained:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments, set_seed)

    fault = job["framework"].get("fault", "none")
    args = native_args(job)
    tokenizer = AutoTokenizer.from_pretrained(job["model"]["path"])
    model = AutoModelForCausalLM.from_pretrained(job["model"]["path"], dtype=getattr(torch, torch_dtype_name(job)))
    set_seed(job["train"]["seed"])  # right before peft draws the A matrices, as trl's SFTTrainer does
    model = get_peft_model(model, LoraConfig(**args["lora_config"]))
    mark("model_loaded")
    train_set = _dataset(job, tokenizer, "train")
    mark("data_ready")
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=PAD_TO_MULTIPLE_OF)
    trainer = Trainer(model=model, args=TrainingArguments(**args["training_arguments"]), train_dataset=train_set,
                      data_collator=collator, processing_class=tokenizer, callbacks=callbacks)
    if fault == "micro_batch_loss":
        trainer.model_accepts_loss_kwargs = False
    if fault == "sdpa_flags":
        for setter in ("enable_cudnn_sdp", "enable_flash_sdp", "enable_mem_efficient_sdp", "enable_math_sdp"):
            getattr(torch.backends.cuda, setter)(True)
    if fault not in ("none", "import_error", "unavailable", *DEVIATIONS):
        _inject(fault)
    trainer.train()
    return Trained(model=trainer.model, tokenizer=tokenizer)


class FakeAdapter(Adapter):
    packages = PACKAGES
    distribution = None  # no package of its own, so no versions to check
    install_hint = INSTALL_HINT
    truncation = "none"
    faults = FAULTS
    native_loss = "transformers"  # a plain transformers.Trainer
    # compare_rank stays None: a test double is never part of a plain -m

    native_args = staticmethod(native_args)
    import_framework = staticmethod(import_framework)
    train = staticmethod(train)
