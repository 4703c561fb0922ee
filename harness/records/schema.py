"""The result schema's version and the one place that upgrades older results to it.

A result is upgraded on load (never rewritten on disk): ``MIGRATIONS[n]`` turns a schema-``n`` object into
a schema-``n+1`` one. Schema 1 is every result written so far; fields added within it since (``host``,
``memory.nvml_peak_scope``, ``eval.logits_rms``, ...) are absent from older files and read as None, and
readers say "not recorded". A result from a newer harness is refused by name rather than half-read.
"""
from __future__ import annotations

from typing import Any, Callable

from harness.records.base import RecordError

SCHEMA_VERSION = 1

Migration = Callable[[dict[str, Any]], dict[str, Any]]
MIGRATIONS: dict[int, Migration] = {}


def upgrade(data: dict[str, Any], migrations: dict[int, Migration] | None = None,
            current: int = SCHEMA_VERSION) -> dict[str, Any]:
    """``data`` at the current schema. A result without ``schema`` is schema 1 (the first layout)."""
    migrations = MIGRATIONS if migrations is None else migrations
    version = data.get("schema", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise RecordError(f"'schema' is {version!r}, expected a positive integer")
    if version > current:
        raise RecordError(f"'schema' is {version}: written by a newer harness (this one reads up to {current})")
    while version < current:
        if version not in migrations:
            raise RecordError(f"no migration from schema {version}")
        data = migrations[version](data)
        version += 1
        data["schema"] = version
    return data
