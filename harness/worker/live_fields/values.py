"""Small helpers of the live-field readers: JSON-safe values, attribute paths that never raise, hashes."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    """Make ``value`` JSON-serialisable (dtypes, enums, tuples, tensors, sets...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    enum_value = getattr(value, "value", None)
    if enum_value is not None and type(value).__module__ != "builtins" and isinstance(enum_value, (str, int)):
        return enum_value
    if type(value).__name__ == "dtype":
        return str(value).replace("torch.", "")
    if hasattr(value, "tolist") and callable(value.tolist):
        try:
            return jsonable(value.tolist())
        except Exception:  # noqa: BLE001
            pass
    return str(value)


def attr_path(obj: Any, *names: str, default: Any = None) -> Any:
    """``obj.a.b.c`` or ``default`` if any link is missing (never raises)."""
    for name in names:
        try:
            obj = getattr(obj, name)
        except Exception:  # noqa: BLE001
            return default
        if obj is None:
            return default
    return obj


def sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, separators=(",", ":")).encode()).hexdigest()


def file_sha256(path: Path) -> str | None:
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    except OSError:
        return None


def dtype_name(dtype: Any) -> str | None:
    return None if dtype is None else str(dtype).replace("torch.", "")
