"""The live-object audit of one run (harness/worker/live_fields/): ~100 fields read from the trainer.

Every field is compared across frameworks by the fairness audit, so the record keeps them all (as
``extra``: :meth:`Audit.fields` lists them); the few that other code reads are declared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.records.base import Record


@dataclass
class Audit(Record):
    trainable_params: int | None = None
    base_dtype: str | None = None
    lora_B_norm: float | None = None  # noqa: N815  (the audit's field name)
    notes: list[str] | None = None

    def fields(self) -> dict[str, Any]:
        """Every audited field by name, in recorded order."""
        return self.to_dict()
