"""The report's reproduce command recreates the jobs it reports: composed through ``python -m harness plan``
(the real CLI, a subprocess) it gives the point and job hashes of the runs it came from.

For a CPU results folder made here by the real runner (framework=fake with non-default settings and two
repeats) the hashes and run folders must match exactly. For the committed H200 results
(qlora_7b, throughput_7b, scaling_7b) every recorded setting must be planned identically; their dataset
digest predates today's data preparation (fields are whitespace-stripped since commit 07823ea), so the
point hash is compared with the recorded digest put back, and the report must say that it differs.
Needs the offline Hub mirror for the medical dataset (HARNESS_TEST_HUB_MIRROR, default /work/shared/hub).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config.job import point_hash
from harness.report.render import render_report
from harness.results.load import load_records

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR = Path(os.environ.get("HARNESS_TEST_HUB_MIRROR", "/work/shared/hub"))
REPRO_RE = re.compile(r'<script type="application/json" id="harness-reproduce">(.*?)</script>', re.S)


def harness(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})})


def report_commands(html: str) -> list[list[str]]:
    match = REPRO_RE.search(html)
    assert match, "the report embeds no reproduce command"
    return json.loads(match.group(1))


def plan(argv: list[str], env: dict | None = None) -> list[dict]:
    done = harness("plan", *argv, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_cpu_report_command_plans_the_same_runs(tmp_path):
    results = tmp_path / "results"
    ran = harness("run", "framework=fake", "train.max_steps=3", "train.lr=0.001", "train.lora.r=4", "repeats=2",
                  f"results_dir={results}", "report=false")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    records = load_records([results])
    assert len(records) == 2
    html = render_report(records, tmp_path / "reports", name="cpu").read_text(encoding="utf-8")
    commands = report_commands(html)
    assert commands == [["framework=fake", "train.lora.r=4", "train.lr=0.001", "train.max_steps=3", "repeats=2"]]
    planned = plan(commands[0], env={"HARNESS_RESULTS_DIR": str(results)})
    assert [p["point_hash"] for p in planned] == [records[0].point_hash]
    assert [p["job_hash"] for p in planned] == [records[0].job_hash]
    assert sorted(planned[0]["run_dirs"]) == sorted(str(Path(r.run_dir).resolve()) for r in records)
    assert "the command plans the same 1 sweep point hash" in html


def test_a_users_own_data_file_is_reproduced_without_a_note(tmp_path):
    data = tmp_path / "mydata60.jsonl"
    rows = [{"instruction": f"question {i}", "input": "", "output": f"answer {i}"} for i in range(60)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    results = tmp_path / "results"
    ran = harness("run", "framework=fake", "train.max_steps=2", f"dataset.path={data}", "dataset.num_eval=8",
                  f"results_dir={results}", "report=false")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    records = load_records([results])
    html = render_report(records, tmp_path / "reports", name="own").read_text(encoding="utf-8")
    (command,) = report_commands(html)
    assert f"dataset.path={data}" in command
    assert "is not a config option any more" not in html  # its name is the file's stem, never a config option
    planned = plan(command, env={"HARNESS_RESULTS_DIR": str(results)})
    assert [p["job_hash"] for p in planned] == [records[0].job_hash]


def test_plan_refuses_bad_input_with_one_line():
    done = harness("plan", "framework=fake", "train.lr=fast")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and "train.lr" in done.stderr


@pytest.mark.parametrize("args, culprit", [
    (("+train.foo=1",), "train.foo: unknown key"),
    (("framework=trl", "framework.version=9.9"), "framework.version=9.9"),
    (("framework=fake,fake", "-m"), "the same job twice"),
])
def test_plan_refuses_what_run_refuses(args, culprit):
    """plan and run's preflight share their checks: a command plan accepts is one run accepts."""
    for command in ("plan", "run"):
        done = harness(command, "report=false", *args)
        assert done.returncode == 2 and done.stdout == "", (command, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and culprit in done.stderr, (command, done.stderr)


@pytest.mark.skipif(not (MIRROR / "datasets").is_dir(), reason=f"no offline Hub mirror at {MIRROR}")
@pytest.mark.parametrize("folder", ["h200/qlora_7b", "h200/throughput_7b", "h200/scaling_7b",
                                    "h200-session2/throughput_7b"])
def test_committed_h200_report_command_plans_the_recorded_jobs(folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_HUB_MIRROR", str(MIRROR))
    suite = folder.split("/")[-1]
    records = load_records([REPO_ROOT / "results" / folder])
    html = render_report(records, tmp_path, name=suite).read_text(encoding="utf-8")
    commands = report_commands(html)
    if suite == "qlora_7b":
        assert all("experiment=qlora_7b" in c for c in commands)  # the preset that sets train.quantization=4bit
    if suite == "throughput_7b":
        assert all("repeats=3" in c for c in commands)
    if suite == "scaling_7b":
        assert all("launcher=torchrun" in c for c in commands)
    planned = [p for argv in commands for p in plan(argv, env={"HARNESS_HUB_MIRROR": str(MIRROR)})]
    by_job = {p["job_hash"]: p for p in planned}
    recorded_points = {r.point_hash for r in records}
    for r in records:
        # the recorded dataset digest put back: every setting of the command is then the recorded one
        matches = []
        for p in planned:
            job = json.loads(json.dumps(p["job"]))
            job["dataset"]["digest"] = r.job.dataset.digest
            if point_hash(job) == r.point_hash and p["framework"] == r.framework.name:
                matches.append(p)
        assert len(matches) == 1, f"{suite}: no planned job recreates {r.run_dir}"
        recorded_job = r.job.to_dict()
        planned_job = json.loads(json.dumps(matches[0]["job"]))
        for job in (recorded_job, planned_job):
            job["model"] = {k: v for k, v in job["model"].items() if k != "path"}
            job["dataset"] = {k: v for k, v in job["dataset"].items() if k != "digest"}
        # Fields added to the config after a run (dataset.format, train.settle_factor...) are not in its
        # record; at their defaults they leave the point hash alone (checked above). Every recorded one matches.
        for section, values in recorded_job.items():
            if isinstance(values, dict):
                assert {k: planned_job[section].get(k) for k in values} == values, (folder, section)
            else:
                assert planned_job[section] == values, (folder, section)
        assert matches[0]["repeats"] == 1 + max(x.repeat for x in records if x.job_hash == r.job_hash)
    planned_points = {p["point_hash"] for p in by_job.values()}
    if folder.startswith("h200-session2") or suite == "scaling_7b":
        # made before data preparation stripped whitespace: today's digest differs, and the report says so
        assert recorded_points.isdisjoint(planned_points)
        assert "only the dataset digest differs" in html
    else:  # session 3: the command recreates the very point hashes
        assert recorded_points <= planned_points
        assert 'class="verify verified"' in html


def test_fields_added_since_keep_the_hashes_of_committed_results():
    # results/cpu is the Quick start sweep of session 1: today's default plans its very point and job hashes
    # (new fields at their defaults, train.settle_factor=null and the dataset format fields, stay out of the
    # hash), so resume and baselines still find those results.
    records = load_records([REPO_ROOT / "results" / "cpu"])
    planned = plan(["framework=trl,llamafactory,unsloth", "-m"], env={})
    assert {r.point_hash for r in records} == {p["point_hash"] for p in planned}
    assert {r.job_hash for r in records} == {p["job_hash"] for p in planned}
