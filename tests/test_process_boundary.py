"""The boundary the folders show: the parent process (``python -m harness ...``) never imports torch or the
training stack; only the worker child (``python -m harness.worker RUN_DIR``, harness/worker/) does.

Every module outside harness/worker/ is imported in a fresh interpreter (new modules are found by walking the
package, so a new folder is covered without editing this test); the first one that pulls in torch is named.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
HARNESS = REPO_ROOT / "harness"
# The training stack: importing any of these in the parent would load torch (or be as heavy).
TRAINING_STACK = ("torch", "transformers", "peft", "trl", "accelerate", "unsloth", "llamafactory", "bitsandbytes")

IMPORT_ALL_OUTSIDE_WORKER = f"""
import importlib, pkgutil, sys
import harness
stack = {TRAINING_STACK!r}
names = sorted(m.name for m in pkgutil.walk_packages(harness.__path__, "harness.")
               if not (m.name == "harness.worker" or m.name.startswith("harness.worker.")))
for name in names:
    importlib.import_module(name)
    loaded = [m for m in stack if m in sys.modules]
    if loaded:
        print("IMPORTS", name, *loaded)
        break
print("MODULES", len(names))
"""


def test_no_module_outside_the_worker_imports_the_training_stack():
    out = subprocess.run([sys.executable, "-c", IMPORT_ALL_OUTSIDE_WORKER], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "IMPORTS" not in out, out
    outside = [p for p in HARNESS.rglob("*.py")
               if p.relative_to(HARNESS).parts[0] != "worker" and p != HARNESS / "__init__.py"]
    assert f"MODULES {len(outside)}" in out, out  # every module was imported (none skipped by the walk)


def test_the_parent_command_imports_no_torch():
    """``python -m harness`` with its commands' modules loaded: still no torch."""
    code = ("import sys, importlib, harness.__main__ as m\n"
            "for entry, _ in m.COMMANDS.values(): importlib.import_module(entry.split(':')[0])\n"
            f"print([s for s in {TRAINING_STACK!r} if s in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_only_the_worker_imports_torch_at_module_level_and_nothing_outside_imports_the_worker():
    """A module-level ``import torch`` outside harness/worker/ would load torch in the parent; and no module
    outside harness/worker/ imports harness.worker (not even inside a function), so the folder is the child's
    code and nothing else."""
    top_level_torch, imports_worker = [], []
    for path in sorted(HARNESS.rglob("*.py")):
        rel = path.relative_to(REPO_ROOT)
        in_worker = rel.parts[1] == "worker"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(rel))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                modules = [node.module]
            else:
                continue
            for module in modules:
                root = module.split(".")[0]
                if not in_worker and root in TRAINING_STACK and node in tree.body:
                    top_level_torch.append(f"{rel}:{node.lineno} {module}")
                if not in_worker and (module == "harness.worker" or module.startswith("harness.worker.")):
                    imports_worker.append(f"{rel}:{node.lineno} {module}")
    assert top_level_torch == [], top_level_torch
    assert imports_worker == [], imports_worker


def test_the_worker_entry_is_the_package():
    """``python -m harness.worker RUN_DIR`` (spawned by harness/launch/child.py, also under torchrun) runs
    harness/worker/__main__.py; without a run directory it exits 2 with its usage line."""
    out = subprocess.run([sys.executable, "-m", "harness.worker"], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2 and "usage: python -m harness.worker RUN_DIR" in out.stderr, out.stderr
