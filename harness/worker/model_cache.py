"""Random-weight models: built once from ``config.json`` with a fixed seed, then shared by every framework.

Offline there are no weights, so ``model.weights=random`` builds the architecture with a seeded
initialisation and saves it (safetensors plus the tokenizer files) to a cache folder keyed by the
config's content and the seed. The first worker that needs it builds it under a file lock; every
framework then loads the very same files through its normal ``from_pretrained`` path.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from harness.hub import REPO_ROOT

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "generation_config.json")


def cache_root() -> Path:
    return Path(os.environ.get("HARNESS_CACHE", REPO_ROOT / ".cache")).expanduser() / "models"


def cache_key(source: Path, seed: int) -> str:
    digest = hashlib.sha256((source / "config.json").read_bytes())
    digest.update(f"seed={seed}".encode())
    return f"{source.name}-seed{seed}-{digest.hexdigest()[:12]}"


def random_weights_model(source: Path, seed: int) -> Path:
    """Folder with a seeded random-init model of ``source``'s architecture (built on first use)."""
    target = cache_root() / cache_key(source, seed)
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "config.json").exists():
            _build(source, seed, target)
    return target


def _build(source: Path, seed: int, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source)
    torch.manual_seed(seed)
    # Initialising on the GPU takes seconds where the CPU takes minutes for 7B; either is seeded.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # Saved in bf16 when the architecture is published that way (what a real checkpoint holds);
    # each framework then loads it in the precision the job asks for.
    dtype = getattr(config, "torch_dtype", None) or getattr(config, "dtype", None) or torch.float32
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        for name in TOKENIZER_FILES:
            if (source / name).exists() and not (staging / name).exists():
                shutil.copy2(source / name, staging / name)
        os.replace(staging, target)  # atomic: a half-written cache never looks ready
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        # The builder is the worker that trains next: give the init's GPU memory back, so the run's
        # memory figures hold its training only.
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()


def main(argv: list[str] | None = None) -> int:
    """``python -m harness.worker.model_cache HUB_ID [--seed N]``: build the random-weight model ahead of a sweep,
    so that no measured run pays for (or holds the memory of) the build."""
    import argparse

    from harness.hub import resolve_model

    parser = argparse.ArgumentParser(prog="python -m harness.worker.model_cache", description=main.__doc__)
    parser.add_argument("hub_id", nargs="+")
    parser.add_argument("--seed", type=int, default=0, help="model.init_seed of the jobs (default 0)")
    args = parser.parse_args(argv)
    for hub_id in args.hub_id:
        source = Path(resolve_model(hub_id))
        if not (source / "config.json").exists():
            parser.exit(2, f"error: model_cache: no config.json for {hub_id!r} at {source}\n")
        print(random_weights_model(source, args.seed), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
