"""A real job dict for tests: the Hydra config composed from ``conf/``, converted like ``harness.launch.repeats`` does.

``make_job(**overrides)``: keyword overrides use ``__`` for dots (``train__lora__alpha=24``) or a
dict of dotted keys via ``overrides={"train.lora.alpha": 24}``; values are written as Hydra override
strings (lists as ``[a,b]``).
"""
from __future__ import annotations

import json
from typing import Any


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value)


def make_job(overrides: dict[str, Any] | None = None, *, runtime: dict[str, Any] | None = None,
             **kw: Any) -> dict[str, Any]:
    from harness.config.job import job_from_config
    from harness.config.preflight import compose_job  # composed as a run composes it (once per override list)

    items = dict(overrides or {})
    items.update({k.replace("__", "."): v for k, v in kw.items()})
    cfg = compose_job([f"{k}={_value(v)}" for k, v in items.items()])
    job = job_from_config(cfg, data_digest="test")
    job["runtime"] = {"device": "cpu", "run_dir": "/tmp/x", "data_dir": "/tmp/x/data", "world_size": 1}
    job["runtime"].update(runtime or {})
    return json.loads(json.dumps(job))  # plain JSON types, as the worker reads job.json
