"""The one list of frameworks: every ``conf/framework/NAME.yaml``, and the adapter its ``adapter:`` names.

A framework is registered by its Hydra config file alone, so the names Hydra accepts for ``framework=``
and the names the harness knows are the same list by construction. ``adapter: module:Class`` is a lazy
reference (as lm-evaluation-harness registers models): nothing is imported until a framework is used,
and only its own module. Pinned versions are the ``envs/NAME-VERSION.txt`` files.

Adding a framework: ``harness/frameworks/NAME.py`` (an :class:`~harness.frameworks.adapter.Adapter`
subclass), ``conf/framework/NAME.yaml``, ``envs/NAME-VERSION.txt``, and its silent-defaults tests.
No other file names it (tests/test_framework_registry.py checks).
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path

from harness.frameworks.adapter import Adapter
from harness.hub import REPO_ROOT

FRAMEWORK_CONF_DIR = REPO_ROOT / "conf" / "framework"


class UnknownFramework(LookupError):
    """A framework name no ``conf/framework/*.yaml`` registers, or an entry that does not load."""


@dataclass(frozen=True)
class Entry:
    """One registered framework, as its config file declares it."""
    name: str
    default_version: str
    adapter_ref: str  # "module:Class"
    config_file: Path


def names() -> list[str]:
    """Every registered framework, sorted."""
    return sorted(p.stem for p in FRAMEWORK_CONF_DIR.glob("*.yaml"))


def available() -> str:
    """The registered frameworks for a user's eyes: the real ones, then the fault-injecting test double(s)
    apart, so that nobody picks a test double for a benchmark."""
    real, doubles = [], []
    for name in names():
        try:
            (doubles if adapter(name).faults else real).append(name)
        except UnknownFramework:  # a broken entry still exists as a name; its own error says what is wrong
            real.append(name)
    return ", ".join(real) + (f" (test double: {', '.join(doubles)})" if doubles else "")


def _unknown(name: str) -> UnknownFramework:
    return UnknownFramework(f"Unknown framework {name!r}. Available: {available()}")


@functools.lru_cache(maxsize=None)
def entry(name: str) -> Entry:
    from omegaconf import OmegaConf

    path = FRAMEWORK_CONF_DIR / f"{name}.yaml"
    if not name or "/" in name or not path.is_file():
        raise _unknown(name)
    conf = OmegaConf.load(path)
    if conf.get("name") != name:
        raise UnknownFramework(f"{path}: name: {conf.get('name')!r} must be the file's name, {name!r}")
    ref = conf.get("adapter")
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise UnknownFramework(f"{path}: adapter: expected 'module:Class', got {ref!r}")
    return Entry(name=name, default_version=str(conf.get("version")), adapter_ref=ref, config_file=path)


@functools.lru_cache(maxsize=None)
def adapter(name: str) -> Adapter:
    """The adapter of framework ``name`` (its module imported on first use). Raises UnknownFramework."""
    ref = entry(name).adapter_ref
    module_name, _, attr = ref.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UnknownFramework(f"{entry(name).config_file}: adapter: cannot load {ref!r} ({err})") from None
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise UnknownFramework(f"{entry(name).config_file}: adapter: {ref!r} is not an Adapter subclass")
    return cls()


def compared() -> list[str]:
    """The frameworks a plain ``-m`` compares, in their ``compare_rank`` order."""
    ranked = [(adapter(n).compare_rank, n) for n in names()]
    return [n for rank, n in sorted((r, n) for r, n in ranked if r is not None)]


def reference() -> str | None:
    """The framework reports compare the others against: the first of :func:`compared`."""
    return next(iter(compared()), None)


def order(name: str) -> tuple[int, str]:
    """Sort key: compared frameworks in their order, then every other name alphabetically."""
    ranks = compared()
    return (ranks.index(name), "") if name in ranks else (len(ranks), name)


def pinned_versions(name: str) -> list[str]:
    """The versions pinned for ``name`` (``envs/NAME-VERSION.txt``), sorted."""
    from harness.launch.venvs import REQUIREMENTS_DIR

    return sorted(p.stem[len(name) + 1:] for p in REQUIREMENTS_DIR.glob(f"{name}-*.txt"))


def buildable() -> list[str]:
    """Registered frameworks with at least one pinned environment, in comparison order."""
    return sorted((n for n in names() if pinned_versions(n)), key=order)
