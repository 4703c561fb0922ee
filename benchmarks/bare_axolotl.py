"""The harness's axolotl job as a bare script: no harness process, no callbacks, no sampler.

    ENV_PYTHON benchmarks/bare_axolotl.py RUN_DIR/job.json

Runs ``axolotl train`` (``load_cfg`` + ``do_train``) on exactly the config the axolotl adapter writes (same
native_args, data files and model files; its output and prepared-data folders under ``RUN_DIR/bare_output``),
with the adapter's plugin giving the Trainer no callbacks and running no evaluation; ``trainer.train()`` is
timed by the same class-level wrapper the adapter uses (nothing per step). Prints one JSON line:
{"tokens", "train_call_s", "tokens_per_s"}, tokens being the Trainer's own ``num_input_tokens_seen``.
"""
from __future__ import annotations

import sys
from pathlib import Path


def main(job_path: str) -> None:
    import yaml

    from bare_common import load_job, print_figures, step_clock  # noqa: PLC0415  (beside this script)

    from harness.frameworks.axolotl import import_framework, native_args, run_axolotl

    job = load_job(job_path)
    import_framework(job)  # the same refusals and imports as a harness run (telemetry off)
    out = Path(job_path).parent / "bare_output"
    out.mkdir(parents=True, exist_ok=True)
    config = out / "axolotl_config.yaml"
    args = dict(native_args(job), output_dir=str(out / "framework_output"),
                dataset_prepared_path=str(out / "axolotl_prepared"))
    config.write_text(yaml.safe_dump(args, sort_keys=False, allow_unicode=True), encoding="utf-8")
    with step_clock(job) as clock:
        timer = run_axolotl(job, [], evaluate=False, config=config)
    print_figures(timer.trainer, timer.seconds, clock)


if __name__ == "__main__":
    main(sys.argv[1])
