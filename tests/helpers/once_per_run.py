"""A session fixture's value computed once per test run, not once per pytest-xdist worker.

Under ``-n 2`` each worker is a pytest session of its own, so a session fixture that two workers need runs twice
(the audit's framework-environment probes: an interpreter that loads a model and builds trainers, a minute or
more on a loaded 2-core machine). The first worker to ask computes the value under a file lock in the folder the
workers of one run share (the parent of each worker's base temp, unique to the run) and writes it as JSON; the
others read it. Without xdist the value is simply computed (the parent of the base temp is then shared by
earlier runs, so nothing is cached there).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable

from filelock import FileLock


def once_per_run(tmp_path_factory: Any, name: str, produce: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``produce()`` (a JSON-able dict), computed by the first worker of this run that asks for ``name``."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return produce()
    shared = tmp_path_factory.getbasetemp().parent
    path = shared / f"once-{name}.json"
    with FileLock(str(path) + ".lock"):
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        value = produce()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(value, default=str), encoding="utf-8")
        tmp.replace(path)
        return value
