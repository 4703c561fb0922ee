"""Run the harness CLI exactly as a user does, in a subprocess, and read back what it wrote."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def harness(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def results(results_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(Path(results_dir).rglob("result.json"))
            if ".hydra" not in p.parts]


def by_fault(results_dir: Path) -> dict[str, dict[str, Any]]:
    return {r["job"]["framework"]["fault"]: r for r in results(results_dir)}
