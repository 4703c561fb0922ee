"""One cross-check's verdict as recorded in a result (the rules are in ``harness/results/cross_checks.py``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.records.base import OMIT_NONE, Record


@dataclass
class Check(Record):
    name: str | None = None
    passed: bool | None = None  # None: the check does not apply to this run
    detail: str | None = None
    explanation: str | None = field(default=None, metadata=OMIT_NONE)  # why a failure is not a fault
    explained: bool | None = field(default=None, metadata=OMIT_NONE)  # an older result's flag for the same
