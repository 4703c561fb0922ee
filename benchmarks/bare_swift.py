"""The harness's ms-swift job as a bare script: no harness process, no callbacks, no sampler.

    ENV_PYTHON benchmarks/bare_swift.py RUN_DIR/job.json

Runs ``SwiftSft`` with exactly the arguments the ms-swift adapter passes (same native_args, data files,
collator padding and model files) and no callbacks; ``trainer.train()`` is timed by the same class-level
wrapper the adapter uses (nothing per step). Prints one JSON line: {"tokens", "train_call_s",
"tokens_per_s"}, tokens being the Trainer's own ``num_input_tokens_seen``.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(job_path: str) -> None:
    from bare_common import load_job, print_figures, step_clock  # noqa: PLC0415  (beside this script)

    from harness.frameworks.base import TrainCallTimer
    from harness.frameworks.swift import PadToMultiple, native_args, write_data

    job = load_job(job_path)
    from swift.arguments import SftArguments
    from swift.pipelines.train.sft import SwiftSft

    write_data(job)
    args = dict(native_args(job), output_dir=str(Path(job_path).parent / "bare_output"), callbacks=[])
    pipeline = SwiftSft(SftArguments(**args))
    pipeline.template.data_collator = PadToMultiple(pipeline.template)
    with step_clock(job) as clock, TrainCallTimer() as timer:
        pipeline.main()
    print_figures(timer.trainer, timer.seconds, clock)


if __name__ == "__main__":
    main(sys.argv[1])
