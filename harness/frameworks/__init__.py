"""Framework adapters, looked up by name and imported lazily (only the selected one is loaded).

Each adapter module provides (see ``base.Adapter``):
  PACKAGES: distributions whose versions are recorded with each result
  import_framework(job) (optional): imports that must come first in the process (unsloth)
  INSTALL_HINT: what to do when the framework cannot be imported
  native_args(job) -> dict: pure; the framework's own arguments for the job (no heavy imports)
  train(job, callbacks) -> Trained: real training through the framework's public API
"""
from __future__ import annotations

import importlib
from types import ModuleType

ADAPTERS = {
    "trl": "harness.frameworks.trl",
    "unsloth": "harness.frameworks.unsloth",
    "llamafactory": "harness.frameworks.llamafactory",
    "fake": "harness.frameworks.fake",
}


def load_adapter(name: str) -> ModuleType:
    if name not in ADAPTERS:
        raise KeyError(f"framework.name: unknown framework {name!r} (known: {', '.join(ADAPTERS)})")
    return importlib.import_module(ADAPTERS[name])
