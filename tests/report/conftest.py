"""The report tests' results folder, built once per session for test_report.py and test_browser.py: two runs of
the real harness (``framework=fake``: one that trains, one with an injected exception) and a hostile record
(``test_report.build_results``). Tests only read it; one that changes it works on its own copy."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def results_tree(tmp_path_factory):
    from tests.report.test_report import build_results

    return build_results(tmp_path_factory.mktemp("results"))
