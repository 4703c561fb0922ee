"""The base of every typed record: a dataclass that reads and writes one JSON object.

Why not plain dicts: a misspelt key in a dict reads as ``None`` and fails silently (``energy.method`` was
null in every result of a whole session because writer and reader named it differently); a misspelt
field of a dataclass is an ``AttributeError`` or ``TypeError`` where it is written.

Three rules make a record round-trip a JSON object exactly (content and key order), so that results of
earlier harness versions load, and new results are written as they were before the records existed:

- a key the record does not know is KEPT (``extra``), in place, and written back by :meth:`Record.to_dict`;
  readers cannot reach it by attribute: to read a field, declare it;
- a field absent from the source stays absent when written back (a missing key and ``null`` are
  different facts: ``runtime.gpu_name`` null is a CPU run, absent is a run whose worker never started);
  assigning a field makes it present; fields with ``metadata={"omit_none": True}`` are written only
  when set to something other than None;
- keys come out in the source's order, then fields set later in declaration order.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

R = TypeVar("R", bound="Record")

OMIT_NONE = {"omit_none": True}
# A section older readers took null for "nothing recorded" (``(record.get("memory") or {})``): read as an
# empty section (and written back absent). Any other null where an object belongs is refused by name.
NULL_AS_EMPTY = {"null_as_empty": True}
TRANSIENT = {"transient": True}  # in memory only, never written (where a record was read from)


class RecordError(ValueError):
    """A JSON value that cannot be the record it should be: names the field."""


@dataclass
class Record:
    # Bookkeeping of the round trip, first so that subclasses' fields may all have defaults.
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, metadata=TRANSIENT)
    _absent: set[str] = field(default_factory=set, repr=False, compare=False, metadata=TRANSIENT)
    _order: tuple[str, ...] = field(default=(), repr=False, compare=False, metadata=TRANSIENT)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _field_names(type(self)):
            absent = self.__dict__.get("_absent")
            if absent is not None:
                absent.discard(name)
        object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls: type[R], data: Any, where: str = "") -> R:
        """The record of one JSON object; nested records are built from their objects."""
        if not isinstance(data, dict):
            raise RecordError(f"'{where or cls.__name__}' is {type(data).__name__}, expected an object")
        kinds = _field_kinds(cls)
        lenient = _null_as_empty(cls)
        present = {name for name in kinds if name in data and not (data[name] is None and name in lenient)}
        kwargs = {name: _build(kinds[name], data[name], f"{where}.{name}" if where else name) for name in present}
        record = cls(**kwargs)
        object.__setattr__(record, "extra", {k: v for k, v in data.items() if k not in kinds})
        object.__setattr__(record, "_absent", set(kinds) - present)
        object.__setattr__(record, "_order", tuple(data))
        return record

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: known fields and kept unknown keys, in the source's order."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.metadata.get("transient") or f.name in self._absent:
                continue
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = _dump(value)
        out.update(self.extra)
        rank = {key: i for i, key in enumerate(self._order)}
        declared = {name: len(rank) + i for i, name in enumerate(out)}
        return dict(sorted(out.items(), key=lambda kv: rank.get(kv[0], declared[kv[0]])))

    def has(self, name: str) -> bool:
        """Whether the field was recorded at all (``None`` included), as opposed to absent."""
        return name not in self._absent


@lru_cache(maxsize=None)
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if not f.metadata.get("transient"))


@lru_cache(maxsize=None)
def _null_as_empty(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls) if f.metadata.get("null_as_empty"))


@lru_cache(maxsize=None)
def _field_kinds(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if not f.metadata.get("transient")}


def _not_optional(kind: Any) -> Any:
    """``X`` of ``X | None``; any other annotation as it is."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        return inner[0] if len(inner) == 1 else kind
    return kind


def _record_type(kind: Any) -> type[Record] | None:
    kind = _not_optional(kind)
    return kind if isinstance(kind, type) and issubclass(kind, Record) else None


def _optional(kind: Any) -> bool:
    return (isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union) \
        and type(None) in typing.get_args(kind)


def _build(kind: Any, value: Any, where: str) -> Any:
    optional, kind = _optional(kind), _not_optional(kind)
    record = _record_type(kind)
    if record is not None and (value is not None or not optional):
        return record.from_dict(value, where)
    if typing.get_origin(kind) is list and value is not None:
        item = _record_type(typing.get_args(kind)[0])
        if item is not None:
            if not isinstance(value, list):
                raise RecordError(f"'{where}' is {type(value).__name__}, expected a list")
            return [item.from_dict(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    return value
