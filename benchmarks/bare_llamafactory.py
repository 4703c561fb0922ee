"""The harness's LLaMA-Factory job as a bare script: no harness process, no callbacks, no sampler.

    ENV_PYTHON benchmarks/bare_llamafactory.py RUN_DIR/job.json

Calls ``run_exp`` with exactly the arguments the LLaMA-Factory adapter passes (same native_args,
dataset_info.json, data and model files) and no callbacks; ``trainer.train()`` is timed by the same
class-level wrapper the adapter uses (nothing per step). Prints one JSON line: {"tokens",
"train_call_s", "tokens_per_s"}, tokens being the Trainer's own ``num_input_tokens_seen``.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path


def main(job_path: str) -> None:
    os.environ.setdefault("DISABLE_VERSION_CHECK", "1")
    from bare_common import load_job, print_figures, step_clock  # noqa: PLC0415  (beside this script)

    from harness.frameworks.base import TrainCallTimer
    from harness.frameworks.llamafactory import _stub_missing_torchaudio, native_args, write_dataset_info

    job = load_job(job_path)
    _stub_missing_torchaudio()
    from llamafactory.train.tuner import run_exp

    write_dataset_info(Path(job["runtime"]["data_dir"]), job)
    args = dict(native_args(job), output_dir=str(Path(job_path).parent / "bare_output"))
    with step_clock(job) as clock, TrainCallTimer() as timer:
        run_exp(args=args, callbacks=[])
    print_figures(timer.trainer, timer.seconds, clock)


if __name__ == "__main__":
    main(sys.argv[1])
