"""The framework-environment probes of the audit tests: one interpreter per framework for the whole session
(tests/helpers/framework_env.py), started by the first test that reads one of its probes, on whichever xdist
worker asks first (the other reads its outcomes: tests/helpers/once_per_run.py)."""
from __future__ import annotations

import pytest

from tests.helpers.framework_env import AXOLOTL, LLAMAFACTORY, PROBES, SWIFT, TRL


@pytest.fixture(scope="session")
def lf_probes(tmp_path_factory):
    return PROBES[LLAMAFACTORY].run_once(tmp_path_factory)


@pytest.fixture(scope="session")
def trl_probes(tmp_path_factory):
    return PROBES[TRL].run_once(tmp_path_factory)


@pytest.fixture(scope="session")
def swift_probes(tmp_path_factory):
    return PROBES[SWIFT].run_once(tmp_path_factory)


@pytest.fixture(scope="session")
def axolotl_probes(tmp_path_factory):
    # Each probe loads a model and builds a trainer (or a 4-bit model): more than a minute on a loaded machine.
    return PROBES[AXOLOTL].run_once(tmp_path_factory, timeout_per_probe=200)
