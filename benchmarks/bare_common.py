"""What every bare script does before building its framework's trainer: read the harness's job.json and
fill in the runtime facts the worker would (device, bf16 support, the random-weights model's folder)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load_job(job_path: str) -> dict[str, Any]:
    import torch

    from harness.model_cache import random_weights_model

    job = json.loads(Path(job_path).read_text())
    job["runtime"]["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    job["runtime"]["bf16_supported"] = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if job["model"]["weights"] == "random":
        job["model"]["path"] = str(random_weights_model(Path(job["model"]["path"]), job["model"]["init_seed"]))
    return job
