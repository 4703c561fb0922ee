"""The offline Hub mirror in tests: the session's environment never has it (tests/conftest.py), a test that
needs it asks for the ``hub_mirror`` fixture and passes it to the harness subprocess. Run with
HARNESS_HUB_MIRROR exported (``HARNESS_HUB_MIRROR=/work/shared/hub pytest tests/test_hub_mirror.py``) the
first test runs; without it, it is skipped, never failed."""
from __future__ import annotations

import json
import os

from harness.hub import MIRROR_ENV
from tests.cli import harness
from tests.helpers.hub_mirror import exported_mirror, mirror_env

QWEN = "Qwen/Qwen2.5-0.5B-Instruct"


def test_the_fixture_hands_the_exported_mirror_to_the_harness(hub_mirror, tmp_path):
    # what the GPU tests do with it: a Hub model resolves in the mirror, config.json read from there (preflight)
    assert hub_mirror == exported_mirror() and MIRROR_ENV not in os.environ
    proc = harness("plan", "framework=trl", "model=qwen2.5-0.5b", f"results_dir={tmp_path}", "--json",
                   env=mirror_env(hub_mirror), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (planned,) = json.loads(proc.stdout)
    assert planned["job"]["model"]["path"] == str((hub_mirror / QWEN).resolve())


def test_a_test_without_the_fixture_sees_no_mirror(tmp_path):
    assert MIRROR_ENV not in os.environ
    proc = harness("plan", "framework=trl", "model=qwen2.5-0.5b", f"results_dir={tmp_path}", "--json",
                   env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    assert proc.returncode == 2 and f"set {MIRROR_ENV}" in proc.stderr, proc.stderr[-2000:]
