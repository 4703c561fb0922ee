"""The checkout itself: what the Quick start writes is never committed (a fresh clone would then skip
its runs as already done, and show someone else's figures as the user's)."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.cli import REPO_ROOT


@pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_quick_start_output_is_not_committed():
    tracked = subprocess.run(["git", "ls-files", "results/default", "results/history"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    assert tracked == [], tracked
    ignored = subprocess.run(["git", "check-ignore", "results/default/x/result.json", "results/history/m.jsonl"],
                             cwd=REPO_ROOT, capture_output=True, text=True).stdout.split()
    assert len(ignored) == 2


@pytest.mark.skipif(shutil.which("git") is None or not (REPO_ROOT / ".git").exists(), reason="not a git checkout")
def test_the_reports_index_is_rebuilt_not_committed():
    """Every report rebuilds reports/index.html: tracked, the Quick start changed a committed file."""
    tracked = subprocess.run(["git", "ls-files", "reports/index.html"], cwd=REPO_ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    ignored = subprocess.run(["git", "check-ignore", "reports/index.html"], cwd=REPO_ROOT, capture_output=True,
                             text=True).stdout.split()
    assert tracked == [] and ignored == ["reports/index.html"]


def test_report_index_alone_lists_the_reports_of_a_folder(tmp_path):
    from tests.cli import harness

    (tmp_path / "a.html").write_text('<script type="application/json" id="harness-meta">{"title": "A", "runs": 2}'
                                     "</script>")
    proc = harness("report", "--index", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"index: {tmp_path / 'index.html'}", proc.stderr
    assert "a.html" in (tmp_path / "index.html").read_text()


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_outputs_the_harness_writes_do_not_make_the_checkout_dirty(tmp_path, monkeypatch):
    """What the harness writes into a checkout (results, baselines; reports/index.html in checkouts from before it
    was ignored) never marks the next runs as made from uncommitted code; a changed source file still does."""
    from harness.results import machine

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for name in ("harness/x.py", "reports/index.html", "results/h/result.json", "benchmarks/baselines/m/s.json"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "x")
    monkeypatch.setattr(machine, "REPO_ROOT", tmp_path)
    monkeypatch.delenv("HARNESS_SOURCE_COMMIT", raising=False)
    for name in ("reports/index.html", "results/h/result.json", "benchmarks/baselines/m/s.json"):
        (tmp_path / name).write_text("b\n")
    assert machine.git_commit()["dirty"] is False
    (tmp_path / "harness/x.py").write_text("b\n")
    assert machine.git_commit()["dirty"] is True
