"""The identical recipe's native arguments as they were before recipes existed (issue 17), per adapter and job:
``python -m tests.recipes.golden`` rewrote ``identical_native_args.json`` once, at the commit before the
recipe group; tests/recipes/test_recipe_args.py checks today's adapters still produce exactly these. axolotl's
entries were added, captured the same way, at the commit before its recommended recipe (branch axrecipe)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).with_name("identical_native_args.json")
FRAMEWORKS = ("trl", "unsloth", "llamafactory", "swift", "axolotl")
# The committed suites' jobs: the CPU default (tiny), and the two H200 jobs (cuda runtime, bf16).
JOBS: dict[str, dict[str, Any]] = {
    "tiny": {"overrides": {}, "runtime": {}},
    "throughput_7b": {"overrides": {"experiment": "throughput_7b"},
                      "runtime": {"device": "cuda", "bf16_supported": True}},
    "qlora_7b": {"overrides": {"experiment": "qlora_7b"}, "runtime": {"device": "cuda", "bf16_supported": True}},
}


def job_for(name: str, framework: str, **extra: Any) -> dict[str, Any]:
    from tests.helpers.jobs import make_job

    spec = JOBS[name]
    job = make_job({**spec["overrides"], "framework": framework, **extra}, runtime=spec["runtime"])
    job["model"]["path"] = "/models/" + job["model"]["name"]  # machine-independent
    return job


def native(framework: str, job: dict[str, Any]) -> dict[str, Any]:
    from harness.frameworks import registry

    return json.loads(json.dumps(registry.adapter(framework).native_args(job), default=str))


def hashes(job: dict[str, Any]) -> dict[str, str]:
    from harness.config.job import job_hash, point_hash

    spec = {k: v for k, v in job.items() if k != "runtime"}
    return {"job_hash": job_hash(spec), "point_hash": point_hash(spec)}


def capture() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fw in FRAMEWORKS:
        for name in JOBS:
            job = job_for(name, fw)
            out[f"{fw}/{name}"] = {"native_args": native(fw, job), **hashes(job), "job_keys": sorted(job)}
    return out


if __name__ == "__main__":
    GOLDEN.write_text(json.dumps(capture(), indent=1, sort_keys=True) + "\n")
    print(GOLDEN)
