"""The recipe a run trained with (``result.recipe``; absent in identical runs, whose results are those of
runs from before recipes existed). docs/recipes.md, harness/frameworks/recipes.py.

``features``: one mapping per feature of the framework's ``recommended:`` block, with its ``status`` here:
``active`` (applied, and the live objects show it), ``not seen`` (applied, but no effect found on the live
objects: the report shows it red), ``unavailable`` (a package that is not importable, a device it does not
run on: ``reason``), ``not used`` (listed by the yaml with its reason), ``off`` (a packing feature under
``recipe.packing=off``) or ``not for this mode`` (LoRA vs QLoRA); ``evidence`` says what was read.
``budget``: the supervised-token budget when a feature packs (harness/data/budget.py). The parent adds the
hashes of the identical twin, the run this one is checked against.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.records.base import OMIT_NONE, Record


@dataclass
class RecipeResult(Record):
    name: str | None = None
    packing: str | None = None
    features: list[dict[str, Any]] = field(default_factory=list)
    always_on: list[dict[str, Any]] = field(default_factory=list)
    budget: dict[str, Any] | None = field(default=None, metadata=OMIT_NONE)
    identical_job_hash: str | None = None
    identical_point_hash: str | None = None

    def active(self) -> list[str]:
        return [str(f.get("id")) for f in self.features if f.get("status") == "active"]
