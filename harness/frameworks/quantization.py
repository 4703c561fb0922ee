"""QLoRA's 4-bit base weights, identical for all three frameworks: bitsandbytes NF4, double quant, bf16 compute."""
from __future__ import annotations

from typing import Any

from harness.frameworks.base import Job


def bnb_config_args(job: Job) -> dict[str, Any] | None:
    if job["train"]["quantization"] != "4bit":
        return None
    return {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bfloat16",
    }
