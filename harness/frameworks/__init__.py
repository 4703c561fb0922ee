"""Framework adapters: the contract is ``adapter.Adapter``, the list is ``registry`` (conf/framework/*.yaml).

``load_adapter(name)`` is the registry's lookup; adapter modules are imported lazily, only the one used.
"""
from __future__ import annotations

from harness.frameworks.adapter import Adapter
from harness.frameworks.registry import adapter as load_adapter

__all__ = ["Adapter", "load_adapter"]
