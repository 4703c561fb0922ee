"""tests/helpers/once_per_run.py: one computation per test run under xdist, none cached without it."""
from __future__ import annotations

from types import SimpleNamespace

from tests.helpers.once_per_run import once_per_run


def _factory(base):
    return SimpleNamespace(getbasetemp=lambda: base / "popen-gw0")


def test_the_second_worker_reads_what_the_first_computed(tmp_path, monkeypatch):
    calls = []

    def produce():
        calls.append(1)
        return {"n": len(calls)}

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    assert once_per_run(_factory(tmp_path), "x", produce) == {"n": 1}
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert once_per_run(_factory(tmp_path), "x", produce) == {"n": 1} and len(calls) == 1
    assert once_per_run(_factory(tmp_path), "y", produce) == {"n": 2}  # another name, another value


def test_without_xdist_nothing_is_cached_in_the_folder_earlier_runs_share(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    values = iter(({"n": 1}, {"n": 2}))
    assert once_per_run(_factory(tmp_path), "x", lambda: next(values)) == {"n": 1}
    assert once_per_run(_factory(tmp_path), "x", lambda: next(values)) == {"n": 2}
    assert not list(tmp_path.iterdir())
