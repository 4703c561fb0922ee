"""The harness's trl job as a bare script: no harness process, no callbacks, no sampler.

    ENV_PYTHON benchmarks/bare_trl.py RUN_DIR/job.json

Builds exactly the trainer the trl adapter builds (same native_args, data files and model files),
times ``trainer.train()`` and prints one JSON line: {"tokens", "train_call_s", "tokens_per_s"}.
The token count is the Trainer's own ``num_input_tokens_seen`` (non-padding), not ours.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(job_path: str) -> None:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from bare_common import load_job, print_figures, step_clock  # noqa: PLC0415  (beside this script)

    from harness.frameworks.base import timed_train
    from harness.frameworks.sft_common import load_split
    from harness.frameworks.trl import native_args

    job = load_job(job_path)
    args = native_args(job)
    kwargs = dict(args["model_kwargs"])
    kwargs.pop("quantization")
    kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    tokenizer = AutoTokenizer.from_pretrained(job["model"]["path"])
    model = AutoModelForCausalLM.from_pretrained(job["model"]["path"], **kwargs)
    sft = dict(args["sft_config"], output_dir=str(Path(job_path).parent / "bare_output"))
    trainer = SFTTrainer(model=model, args=SFTConfig(**sft), train_dataset=load_split(job, "train"),
                         processing_class=tokenizer, peft_config=LoraConfig(**args["lora_config"]))
    with step_clock(job) as clock:
        seconds = timed_train(trainer)
    print_figures(trainer, seconds, clock)


if __name__ == "__main__":
    main(sys.argv[1])
