"""Security: no remote code unless asked for, no shell anywhere, user strings escaped in reports.

(c) HTML in a model or dataset name is covered by tests/report/test_report.py
(``test_user_strings_are_escaped``: an ``<img onerror>`` model name and a ``<b>`` dataset name).
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.helpers.jobs import make_job

REPO_ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ("trl", "unsloth", "llamafactory")
SCANNED = ("harness", "benchmarks")


def _trust_values(tree) -> list:
    """Every value stored under a ``trust_remote_code`` key, however deep in the native args."""
    found = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "trust_remote_code":
                found.append(value)
            found.extend(_trust_values(value))
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            found.extend(_trust_values(value))
    return found


@pytest.fixture(scope="module")
def jobs():
    return {"default": make_job(), "opted_in": make_job(model__trust_remote_code=True)}


@pytest.mark.parametrize("name", ADAPTERS)
def test_trust_remote_code_is_off_unless_the_job_asks(jobs, name):
    native_args = importlib.import_module(f"harness.frameworks.{name}").native_args
    default = _trust_values(native_args(jobs["default"]))
    assert default, f"{name} native_args never sets trust_remote_code explicitly"
    assert all(v is False for v in default), f"{name}: {default}"
    opted_in = _trust_values(native_args(jobs["opted_in"]))
    assert opted_in and all(v is True for v in opted_in), f"{name}: {opted_in}"


def test_trust_remote_code_defaults_to_false_in_the_job(jobs):
    assert jobs["default"]["model"]["trust_remote_code"] is False


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


FORBIDDEN_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}


def _shell_uses(path: Path) -> list[str]:
    """Calls that run a shell: shell=True (or any non-False value), os.system/popen, getoutput; aliases
    (``import subprocess as sp``, ``from os import system as run``) are followed, comments never count."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname or a.name: a.name for a in node.names if a.name in ("os", "subprocess")})
        elif isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess"):
            aliases.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    where = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        head, _, rest = name.partition(".")
        name = aliases.get(head, head) + (f".{rest}" if rest else "")
        if name in FORBIDDEN_CALLS:
            found.append(f"{where}:{node.lineno}: {name}()")
        for kw in node.keywords:
            if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                found.append(f"{where}:{node.lineno}: {name or 'call'}(shell=...)")
    return found


def _sources() -> list[Path]:
    return sorted(p for d in SCANNED for p in (REPO_ROOT / d).rglob("*.py")
                  if "__pycache__" not in p.parts and ".venv" not in p.parts)


def test_sources_are_found():
    names = {p.relative_to(REPO_ROOT).as_posix() for p in _sources()}
    assert "harness/launch/child.py" in names and any(n.startswith("benchmarks/") for n in names)


def test_no_shell_anywhere():
    found = [use for path in _sources() for use in _shell_uses(path)]
    assert not found, "shell use:\n" + "\n".join(found)


def test_scanner_finds_shell_uses_and_ignores_comments(tmp_path):
    sample = tmp_path / "probe.py"
    sample.write_text("import os, subprocess as sp\nfrom os import system as run_it\n"
                      "# os.system('comment only')\n"
                      "sp.run('ls', shell=True)\nos.popen('ls')\nsp.getoutput('ls')\n"
                      "run_it('x')\nsp.run(['ls'], shell=False)\n'os.system(1)'\n")
    found = [f.split(": ", 1)[1] for f in _shell_uses(sample)]
    assert found == ["subprocess.run(shell=...)", "os.popen()", "subprocess.getoutput()", "os.system()"]
