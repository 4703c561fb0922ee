"""report, audit and compare given no results read the checkout's own runs, never the committed result sets
(folders holding ARCHIVE.md): a new user's first `audit` after the Quick start pooled the committed
results/cpu/default (the same point and job hashes, recorded by an older harness with fewer audit fields) with
the new runs and called the point NOT FAIR."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli.args import ARCHIVE_MARK, default_result_paths
from tests.cli import REPO_ROOT, harness


def test_every_committed_result_set_is_marked():
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    tops = {Path(p).parts[1] for p in tracked if len(Path(p).parts) > 2}
    assert tops, "no committed results found"
    assert sorted(t for t in tops if not (REPO_ROOT / "results" / t / ARCHIVE_MARK).is_file()) == []


def test_the_default_leaves_the_marked_folders_and_config_dumps_out(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    for name in ("h200", "default", "throughput_7b", ".hydra"):
        (tmp_path / "results" / name).mkdir(parents=True)
    (tmp_path / "results" / "h200" / ARCHIVE_MARK).write_text("committed")
    read, left_out = default_result_paths()
    assert read == [Path("results/default"), Path("results/throughput_7b")] and left_out == [Path("results/h200")]
    monkeypatch.setenv("HARNESS_RESULTS_DIR", str(tmp_path / "results"))
    assert default_result_paths() == ([tmp_path / "results"], [])  # an explicit folder is read as it is


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HARNESS_RESULTS_DIR", "HARNESS_REPORTS_DIR")}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO_ROOT)}, timeout=300)


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """One real run of the fake framework into a results folder of its own."""
    out = tmp_path_factory.mktemp("own") / "default"
    proc = harness("run", "framework=fake", "train.max_steps=2", "train.measure_warmup_steps=1",
                   f"results_dir={out.parent}", "report=false", timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_audit_without_arguments_reads_the_checkouts_own_runs_only(tmp_path, own_run):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(own_run, results / "default")
    archive = results / "h200"
    shutil.copytree(own_run, archive / "default")
    next((archive / "default").rglob("result.json")).write_text("{ truncated")  # read, it would be named skipped
    (archive / ARCHIVE_MARK).write_text("committed")
    proc = _cli(["audit"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == ["note: reading results/default (committed result sets left out: "
                                        "results/h200; name one to read it)"]
    named = _cli(["audit", "results/h200"], tmp_path)  # named, it is read
    assert "skipped:" in named.stderr


def test_a_fresh_clone_is_told_in_one_line_and_exits_2(tmp_path):
    (tmp_path / "results" / "h200").mkdir(parents=True)
    (tmp_path / "results" / "h200" / ARCHIVE_MARK).write_text("committed")
    for command in (["audit"], ["report"], ["compare"]):
        proc = _cli(command, tmp_path)
        assert proc.returncode == 2 and proc.stderr.splitlines() == [
            "error: no results of this checkout's own under results/ yet (committed result sets: results/h200; "
            "name one to read it)"], (command, proc.stderr)


def test_files_at_the_top_of_results_are_not_read_and_an_empty_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_RESULTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "sweep.log").write_text("a sweep's log, not a result")
    (tmp_path / "results" / ".sweep.lock").write_text("")
    assert default_result_paths() == ([Path("results")], [])  # nothing yet: the commands name results/
    (tmp_path / "results" / "default").mkdir()
    assert default_result_paths() == ([Path("results/default")], [])
