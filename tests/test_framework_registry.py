"""The framework registry (harness/frameworks/registry.py): one place lists the frameworks, and adding one
is its adapter module, its conf/framework/NAME.yaml, its pinned envs/NAME-VERSION.txt and its tests.

Two claims are checked here: no other file of the tree names a framework in its code or config (a scan),
and a fourth framework added exactly that way, to a copy of the checkout, runs a sweep end to end
through the real CLI, runner and worker. That fourth framework ("toy") is test-only: it trains the
embedded tiny model with plain ``transformers.Trainer`` + peft and stands for no real library.
"""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from harness.frameworks import registry
from harness.frameworks.adapter import Adapter, Trained
from tests.cli import REPO_ROOT

# ---- the scan ------------------------------------------------------------------------------------------
# Where naming a framework is expected: prose (documentation, docstrings, comments), committed data, and
# tests (a framework's tests, and tests that compare frameworks, are about those frameworks).
DOCUMENTATION_AND_DATA = ("tests/", "docs/", "results/", "reports/", "benchmarks/baselines/")
# A framework's own files: the documented ones (its adapter a module or a package), plus its optional
# bare-script overhead benchmark. They may name anything, other frameworks included (unsloth trains through
# trl's SFTTrainer, LLaMA-Factory has a use_unsloth argument): what they say is that framework's knowledge.
OWN_FILES = ("harness/frameworks/{name}.py", "conf/framework/{name}.yaml", "benchmarks/bare_{name}.py")
OWN_PACKAGE = "harness/frameworks/{name}/"
# Files that may name frameworks though they are none's own; each must still name one (so this list
# cannot go stale). The GPU session script is the record of the committed H200 results: which framework
# ran in which call of which session (its defaults read the registry).
PENDING = {
    "benchmarks/h200_session.sh": "the recorded GPU sessions' commands (FW defaults come from the registry)",
}


def _pattern(names: list[str]) -> re.Pattern[str]:
    # "llamafactory" also matches LLaMA-Factory and llama_factory: any one separator between letters.
    spelled = ("[-_ ]?".join(map(re.escape, name)) for name in names)
    return re.compile(r"(?<![A-Za-z0-9])(" + "|".join(spelled) + r")(?![A-Za-z0-9])", re.IGNORECASE)


def _python_code_text(source: str) -> list[tuple[int, str]]:
    """Identifiers and string literals of a Python file, docstrings left out (comments are not in the AST)."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant) and isinstance(node.body[0].value.value, str)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            found.append((line, node.value))
        elif isinstance(node, ast.Name):
            found.append((line, node.id))
        elif isinstance(node, ast.Attribute):
            found.append((line, node.attr))
        elif isinstance(node, ast.alias):
            found.append((line, f"{node.name} {node.asname or ''}"))
        elif isinstance(node, ast.ImportFrom):
            found.append((line, node.module or ""))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((line, node.name))
        elif isinstance(node, ast.arg):
            found.append((line, node.arg))
        elif isinstance(node, ast.keyword) and node.arg:
            found.append((line, node.arg))
    return found


def _yaml_text(source: str) -> list[tuple[int, str]]:
    def walk(value):
        if isinstance(value, dict):
            for key, item in value.items():
                yield str(key)
                yield from walk(item)
        elif isinstance(value, list):
            for item in value:
                yield from walk(item)
        elif value is not None:
            yield str(value)

    return [(0, text) for text in walk(yaml.safe_load(source))]


def _shell_text(source: str) -> list[tuple[int, str]]:
    return [(n, line.split("#", 1)[0]) for n, line in enumerate(source.splitlines(), 1)]


READERS = {".py": _python_code_text, ".yaml": _yaml_text, ".yml": _yaml_text, ".sh": _shell_text}


def framework_mentions(root: Path, files: list[str], names: list[str]) -> dict[str, list[str]]:
    """``{file: ["line: text", ...]}`` for code and config that name one of ``names``, outside the
    places where that is expected (see DOCUMENTATION_AND_DATA and OWN_FILES)."""
    pattern = _pattern(names)
    own = {template.format(name=name) for name in names for template in OWN_FILES}
    own_packages = tuple(OWN_PACKAGE.format(name=name) for name in names)
    found: dict[str, list[str]] = {}
    for file in files:
        reader = READERS.get(Path(file).suffix)
        if (reader is None or file in own or file.startswith(own_packages) or file.startswith(DOCUMENTATION_AND_DATA)
                or not (root / file).is_file()):
            continue
        for line, text in reader((root / file).read_text(encoding="utf-8")):
            found.setdefault(file, []).extend(f"{line}: {match.group(0)!r} in {text[:80]!r}"
                                              for match in pattern.finditer(text))
    return {file: lines for file, lines in found.items() if lines}


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_no_file_but_a_frameworks_own_names_it():
    """Adding a framework touches only its own files: nothing else in harness/, conf/ or benchmarks/
    names one in code or config (docstrings and comments may, as prose)."""
    found = framework_mentions(REPO_ROOT, _tracked_files(), registry.names())
    stale = [file for file in PENDING if file not in found]
    assert not stale, f"no longer names a framework, remove from PENDING: {stale}"
    offending = {file: lines for file, lines in found.items() if file not in PENDING}
    assert not offending, "framework names outside their own files:\n" + json.dumps(offending, indent=1)


def test_the_scan_finds_a_framework_named_in_code(tmp_path):
    """The scan itself can fail: a name in a string or an identifier is found, in a comment or docstring not."""
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "x.py").write_text(textwrap.dedent('''\
        """Docstrings may say trl."""
        # comments may say LLaMA-Factory
        CHOICES = ("unsloth",)
        from harness.frameworks.trl import native_args
        llama_factory_args = 1
    '''))
    (tmp_path / "conf.yaml").write_text("# trl\nsweep: a,Unsloth\n")
    (tmp_path / "harness" / "trl.py").write_text("NAME = 'trl'\n")  # not its own file: wrong folder
    (tmp_path / "harness" / "frameworks").mkdir()
    (tmp_path / "harness" / "frameworks" / "unsloth.py").write_text("BASE = 'trl'\n")  # its own file
    (tmp_path / "harness" / "frameworks" / "trl").mkdir()
    (tmp_path / "harness" / "frameworks" / "trl" / "parts.py").write_text("NAME = 'trl'\n")  # its own package
    found = framework_mentions(tmp_path, ["harness/x.py", "conf.yaml", "harness/trl.py", "harness/frameworks/unsloth.py",
                                          "harness/frameworks/trl/parts.py"], ["trl", "unsloth", "llamafactory"])
    assert sorted(found) == ["conf.yaml", "harness/trl.py", "harness/x.py"]
    assert sorted({entry.split(":")[0] for entry in found["harness/x.py"]}) == ["3", "4", "5"]


# ---- the registry's contract ---------------------------------------------------------------------------
def test_every_registered_framework_loads_its_declared_adapter():
    assert registry.names() == sorted(p.stem for p in (REPO_ROOT / "conf" / "framework").glob("*.yaml"))
    for name in registry.names():
        adapter = registry.adapter(name)
        assert isinstance(adapter, Adapter)
        assert adapter.packages and isinstance(adapter.install_hint, str) and isinstance(adapter.truncation, str)
        assert adapter.distribution is None or adapter.distribution in adapter.packages
    compared = registry.compared()
    ranks = [registry.adapter(n).compare_rank for n in compared]
    assert compared and ranks == sorted(ranks) and registry.reference() == compared[0]
    assert registry.buildable() == [n for n in sorted(registry.names(), key=registry.order)
                                    if registry.pinned_versions(n)]


def test_unknown_framework_names_the_available_ones():
    with pytest.raises(registry.UnknownFramework) as err:
        registry.adapter("bogus")
    assert str(err.value) == f"Unknown framework 'bogus'. Available: {registry.available()}"


def test_a_missing_hook_or_declaration_is_refused_when_instantiated():
    hooks = {"native_args": lambda self, job: {}, "train": lambda self, job, callbacks: Trained()}
    declarations = {"packages": ("x",), "distribution": None, "install_hint": "", "truncation": "none"}
    assert type("Complete", (Adapter,), {**hooks, **declarations})().checkpointing_kind(["f"]) == "hf"
    with pytest.raises(TypeError, match="train"):
        type("NoTrain", (Adapter,), {"native_args": hooks["native_args"], **declarations})()
    with pytest.raises(TypeError, match="does not declare truncation"):
        type("NoTruncation", (Adapter,), {**hooks, **{k: v for k, v in declarations.items() if k != "truncation"}})()


def test_a_name_override_outside_the_registry_is_bad_input(tmp_path):
    run = subprocess.run([sys.executable, "-m", "harness", "run", "framework.name=bogus", f"results_dir={tmp_path}"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: framework.name: Unknown framework 'bogus'. Available: {registry.available()}"]


# ---- a fourth framework, added the documented way, runs end to end --------------------------------------
TOY_ADAPTER = '''\
"""Test-only framework (tests/test_framework_registry.py): plain transformers.Trainer + peft."""
from __future__ import annotations

from typing import Any

from harness.data.dataset import read_split
from harness.frameworks.adapter import Adapter, Job, Trained
from harness.frameworks.base import PAD_TO_MULTIPLE_OF, training_arguments
from harness.frameworks.sft_common import lora_config_args
from harness.data.tokenize import tokenize_record


class ToyAdapter(Adapter):
    packages = ("transformers", "peft", "torch")
    distribution = None
    install_hint = "pip install transformers peft"
    truncation = "toy: tokens beyond max_length are dropped"
    compare_rank = 99  # after every real framework in a plain -m

    def native_args(self, job: Job) -> dict[str, Any]:
        return {"training_arguments": training_arguments(job), "lora_config": lora_config_args(job)}

    def train(self, job: Job, callbacks: list[Any]) -> Trained:
        from peft import LoraConfig, get_peft_model
        from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                                  TrainingArguments)

        args = self.native_args(job)
        tokenizer = AutoTokenizer.from_pretrained(job["model"]["path"])
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(job["model"]["path"]),
                               LoraConfig(**args["lora_config"]))
        rows = [tokenize_record(tokenizer, r, job["train"]["max_length"])
                for r in read_split(job["runtime"]["data_dir"], "train")]
        trainer = Trainer(model=model, args=TrainingArguments(**args["training_arguments"]),
                          train_dataset=[{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows],
                          data_collator=DataCollatorForSeq2Seq(tokenizer, pad_to_multiple_of=PAD_TO_MULTIPLE_OF),
                          processing_class=tokenizer, callbacks=callbacks)
        trainer.train()
        return Trained(model=trainer.model, tokenizer=tokenizer)
'''
TOY_CONFIG = '''\
# @package framework
name: toy
version: "0.1"
python: env
adapter: harness.frameworks.toy:ToyAdapter
'''
TOY_PINS = "# the toy framework needs nothing beyond the base interpreter\n"


@pytest.fixture(scope="module")
def checkout_with_toy(tmp_path_factory) -> Path:
    """A copy of the checkout's code and config with the three files of a new framework added."""
    root = tmp_path_factory.mktemp("checkout")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("harness", "conf", "envs"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=ignore)
    (root / "harness" / "frameworks" / "toy.py").write_text(TOY_ADAPTER)
    (root / "conf" / "framework" / "toy.yaml").write_text(TOY_CONFIG)
    (root / "envs" / "toy-0.1.txt").write_text(TOY_PINS)
    return root


def _in_copy(root: Path, *args: str, env_root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root), "HARNESS_ENV_ROOT": str(env_root)}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=900)


def test_the_copy_adds_nothing_but_the_toys_files(checkout_with_toy):
    """The fourth framework's files are the only difference, and they name no other framework."""
    added = sorted(str(p.relative_to(checkout_with_toy)) for p in checkout_with_toy.rglob("*toy*"))
    assert added == ["conf/framework/toy.yaml", "envs/toy-0.1.txt", "harness/frameworks/toy.py"]
    files = [str(p.relative_to(checkout_with_toy)) for p in checkout_with_toy.rglob("*") if p.is_file()]
    found = framework_mentions(checkout_with_toy, files, ["toy"])
    assert not found, found


def test_a_fourth_framework_registered_the_documented_way_runs_a_sweep(checkout_with_toy, tmp_path):
    env_root, results, reports = tmp_path / "envs", tmp_path / "results", tmp_path / "reports"
    # The registry lists it everywhere the frameworks are listed: Hydra's group, a plain -m, env list.
    plan = _in_copy(checkout_with_toy, "plan", "-m", env_root=env_root)
    assert plan.returncode == 0, plan.stderr
    planned = [line.split()[1] for line in plan.stdout.splitlines() if re.match(r"\[\d+\] ", line)]
    assert planned == registry.compared() + ["toy"]
    listed = _in_copy(checkout_with_toy, "env", "list", env_root=env_root)
    assert listed.returncode == 0 and re.search(r"^toy\s+0\.1\s+missing", listed.stdout, re.M), listed.stdout

    run = _in_copy(checkout_with_toy, "run", "framework=toy", "train.max_steps=2", "train.measure_warmup_steps=0",
                   f"results_dir={results}", f"reports_dir={reports}", "-m", env_root=env_root)
    assert run.returncode == 0, f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    [result_file] = list(results.rglob("result.json"))
    result = json.loads(result_file.read_text())
    assert result["status"] == "ok", result.get("reason")
    assert (result["framework"]["name"], result["framework"]["version"]) == ("toy", "0.1")
    assert "adapter" not in result["job"]["framework"]  # how it runs is not part of the job (nor its hash)
    assert result["audit"]["truncation_strategy"] == "toy: tokens beyond max_length are dropped"
    assert result["train"]["steps"] == 2 and result["eval"]["loss"] > 0
    assert (env_root / "toy-0.1").is_dir()  # it ran under its own pinned environment, built on first use
    assert list(reports.rglob("*.html")), "the end-of-sweep report was not written"


def test_the_list_users_see_puts_the_fault_injecting_test_double_apart():
    real, _, doubles = registry.available().partition(" (test double: ")
    assert doubles and all(registry.adapter(n).faults for n in doubles.rstrip(")").split(", "))
    assert real and not any(registry.adapter(n).faults for n in real.split(", "))
