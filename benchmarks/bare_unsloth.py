"""The harness's unsloth job as a bare script: no harness process, no callbacks, no sampler.

    ENV_PYTHON benchmarks/bare_unsloth.py RUN_DIR/job.json      (needs a CUDA GPU, as unsloth does)

Builds exactly the model and trainer the unsloth adapter builds (same native_args, data and model
files), unsloth imported first as in the worker, times ``trainer.train()`` and prints one JSON line:
{"tokens", "train_call_s", "tokens_per_s"}, tokens being the Trainer's own ``num_input_tokens_seen``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(job_path: str) -> None:
    from bare_common import load_job, print_figures, step_clock  # noqa: PLC0415  (beside this script)

    from harness.frameworks import unsloth as adapter

    adapter.import_framework(json.loads(Path(job_path).read_text()))  # before transformers/trl/peft, as the worker
    job = load_job(job_path)  # which may build the random-weights model with transformers
    import torch
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    from harness.frameworks.base import timed_train
    from harness.frameworks.sft_common import load_split

    args = adapter.native_args(job)
    load = dict(args["from_pretrained"], dtype=getattr(torch, args["from_pretrained"]["dtype"]))
    model, tokenizer = FastLanguageModel.from_pretrained(**load)
    model = FastLanguageModel.get_peft_model(model, **args["get_peft_model"])
    sft = dict(args["sft_config"], output_dir=str(Path(job_path).parent / "bare_output"))
    trainer = SFTTrainer(model=model, args=SFTConfig(**sft), train_dataset=load_split(job, "train", tokenizer),
                         processing_class=tokenizer)
    with step_clock(job) as clock:
        seconds = timed_train(trainer)
    print_figures(trainer, seconds, clock)


if __name__ == "__main__":
    main(sys.argv[1])
