"""Atomic writes leave no temp file and give the file the mode open() would: the process umask applied to
0666 (mkstemp's 0600 made result.json, job.json and reports unreadable to a team sharing a results dir)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from tests.cli import REPO_ROOT


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_an_atomic_write_has_the_mode_open_would_give(tmp_path, umask, mode):
    target = tmp_path / "result.json"
    script = (f"import os; os.umask({umask:#o})\n"
              "import sys; from harness.atomic import atomic_write_json\n"
              "atomic_write_json(sys.argv[1], {'status': 'ok'})\n")
    subprocess.run([sys.executable, "-c", script, str(target)], cwd=REPO_ROOT, check=True,
                   env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
