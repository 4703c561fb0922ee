"""Shared fixtures. Tests run from the repository root; `gpu` tests are deselected by default
(pyproject addopts) and run on the GPU machine with `pytest -m gpu`."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Random-weight models are cached per test session, never in the developer's checkout."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "harness-cache"))
    monkeypatch.delenv("HARNESS_HUB_MIRROR", raising=False)
    # A test that forgets results_dir= or reports_dir= must not write into the checkout.
    scratch = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(scratch / "default-results"))
    monkeypatch.setenv("HARNESS_REPORTS_DIR", str(scratch / "default-reports"))
