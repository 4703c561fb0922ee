"""What every adapter shares: the recipe fields mapped once to HF TrainingArguments, and train-call timing.

The contract itself (``Adapter``, ``Trained``, ``FrameworkUnavailable``) is ``harness.frameworks.adapter``;
it is re-exported here for the modules that import it from here.

``training_arguments`` is the single place where our recipe becomes Trainer arguments; trl, unsloth
and LLaMA-Factory all pass these through to ``transformers.Trainer``, so pinning them here pins them
for all three.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.frameworks.adapter import FrameworkUnavailable, Job, Trained  # noqa: F401  (re-exported)


class TrainCallTimer:
    """Times every ``transformers.Trainer.train`` call made inside the ``with`` block, for frameworks
    that build and train their Trainer themselves (LLaMA-Factory's ``run_exp``): the class method is
    wrapped for the block's duration, so nothing runs per step (no callback) and the figure is the one
    ``timed_train`` gives for trainers we build. ``seconds`` and ``trainer`` are the last call's."""

    def __init__(self) -> None:
        self.seconds: float | None = None
        self.trainer: Any = None

    def __enter__(self) -> "TrainCallTimer":
        import transformers

        self._original = original = transformers.Trainer.train
        timer = self

        def train(trainer: Any, *args: Any, **kwargs: Any) -> Any:
            import time

            import torch

            started = time.perf_counter()
            out = original(trainer, *args, **kwargs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            timer.seconds, timer.trainer = time.perf_counter() - started, trainer
            return out

        transformers.Trainer.train = train
        return self

    def __exit__(self, *exc: object) -> None:
        import transformers

        transformers.Trainer.train = self._original


def timed_train(trainer: Any) -> float:
    """Run ``trainer.train()`` and return its wall time, GPU work included."""
    import time

    import torch

    started = time.perf_counter()
    trainer.train()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def reentrant_checkpointing(job: Job) -> bool:
    """Whether the job checkpoints with torch's reentrant function: only under the controlled rerun
    ``profile.checkpointing=reentrant`` (docs/explain.md section 6); the identical recipe pins non-reentrant."""
    return ((job.get("profile") or {}).get("checkpointing")) == "reentrant"


def train_then_evaluate(trainer: Any, tokenizer: Any) -> Trained:
    """A transformers Trainer's whole run as the harness records it: ``train()`` timed, then the framework's own
    ``evaluate()``, whose eval loss the harness's evaluator cross-checks (trl and unsloth, both SFTTrainers)."""
    train_call_s = timed_train(trainer)
    metrics = trainer.evaluate()
    return Trained(model=trainer.model, tokenizer=tokenizer, framework_eval_loss=metrics.get("eval_loss"),
                   train_call_s=train_call_s)


def uses_cuda(job: Job) -> bool:
    return job["runtime"]["device"] == "cuda"


def precision(job: Job) -> str:
    """bf16 on a GPU that has it, fp32 on CPU, unless the recipe names one."""
    wanted = job["train"]["precision"]
    if wanted != "auto":
        return wanted
    return "bf16" if uses_cuda(job) and job["runtime"].get("bf16_supported", True) else "fp32"


def torch_dtype_name(job: Job) -> str:
    return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[precision(job)]


def output_dir(job: Job) -> str:
    return str(Path(job["runtime"]["run_dir"]) / "framework_output")


# LLaMA-Factory's SFT workflow hard-codes ``pad_to_multiple_of=8`` in its collator (trl pads to the longest
# row only). Padding changes the tensor shapes, hence speed and memory, never the loss; every framework
# pads the same way so that the same batches have the same shapes (audited as ``padded_lengths``).
PAD_TO_MULTIPLE_OF = 8
# The frameworks' eval batch: their eval loss is then the mean of per-record token means, and our final
# evaluation runs at the same shapes (harness/worker/run_job.py) so the two losses are computed alike.
FRAMEWORK_EVAL_BATCH = 1


def training_arguments(job: Job) -> dict[str, Any]:
    """Trainer arguments that change the math or the measurement, pinned for every framework."""
    t = job["train"]
    prec = precision(job)
    return {
        "output_dir": output_dir(job),
        "max_steps": t["max_steps"],
        "per_device_train_batch_size": t["batch_size"],
        "gradient_accumulation_steps": t["grad_accum"],
        "learning_rate": t["lr"],
        "lr_scheduler_type": t["lr_scheduler"],
        "warmup_steps": t["warmup_steps"],
        "weight_decay": t["weight_decay"],
        "max_grad_norm": t["max_grad_norm"],
        "optim": t["optimizer"],
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-8,
        "seed": t["seed"],
        "data_seed": t["seed"],
        "bf16": prec == "bf16",
        "fp16": prec == "fp16",
        "gradient_checkpointing": t["gradient_checkpointing"],
        # Non-reentrant checkpointing everywhere (LLaMA-Factory defaults to reentrant); reentrant only under the
        # profile.checkpointing control.
        "gradient_checkpointing_kwargs": ({"use_reentrant": reentrant_checkpointing(job)}
                                          if t["gradient_checkpointing"] else None),
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",  # our evaluator runs at train.eval_steps; the framework's eval runs once at the end
        "per_device_eval_batch_size": FRAMEWORK_EVAL_BATCH,  # framework eval loss = mean of per-record token means
        "report_to": "none",
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "non_padding",
        "use_cpu": not uses_cuda(job),
        "disable_tqdm": True,
        "ddp_find_unused_parameters": False if job["runtime"].get("world_size", 1) > 1 else None,
    }
