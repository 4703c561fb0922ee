"""Resume: a rerun of a sweep skips runs already recorded ok, and runs recorded 'unavailable' on this
machine (unsloth without CUDA), instead of retrying them and adding another history line each time."""
from __future__ import annotations

import json
from pathlib import Path

from tests.cli import harness, results

UNAVAILABLE = ("framework=fake", "framework.fault=unavailable", "train.max_steps=1", "report=false")


def history_lines(results_dir: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in (results_dir / "history").glob("*.jsonl"))


def test_resume_skips_unavailable_runs_unless_forced(tmp_path):
    first = harness("run", *UNAVAILABLE, f"results_dir={tmp_path}", timeout=120)
    assert first.returncode == 0, first.stderr
    assert [r["status"] for r in results(tmp_path)] == ["unavailable"] and history_lines(tmp_path) == 1

    again = harness("run", *UNAVAILABLE, f"results_dir={tmp_path}", timeout=120)
    assert again.returncode == 0, again.stderr
    assert "skipped: unavailable on this machine" in again.stdout and "force=true" in again.stdout
    assert "sweep: 1 runs" in again.stdout  # the skipped run is still the sweep's (summary, report)
    assert history_lines(tmp_path) == 1  # no second line for the same unavailable run

    forced = harness("run", *UNAVAILABLE, f"results_dir={tmp_path}", "force=true", timeout=120)
    assert forced.returncode == 0 and "skipped" not in forced.stdout
    assert history_lines(tmp_path) == 2


def test_unavailable_result_from_another_machine_is_retried(tmp_path):
    assert harness("run", *UNAVAILABLE, f"results_dir={tmp_path}", timeout=120).returncode == 0
    (path,) = [p for p in tmp_path.rglob("result.json") if ".hydra" not in p.parts]
    record = json.loads(path.read_text())
    record["env"]["machine_id"] = "1xnvidia-h200-driver570.00"  # copied here from a GPU node
    path.write_text(json.dumps(record))
    again = harness("run", *UNAVAILABLE, f"results_dir={tmp_path}", timeout=120)
    assert again.returncode == 0 and "skipped" not in again.stdout, again.stdout
    assert history_lines(tmp_path) == 2
