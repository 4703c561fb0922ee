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
