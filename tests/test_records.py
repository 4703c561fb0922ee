"""The typed records: what a misspelt field does, what unknown and absent keys become, schema upgrades."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.records import JobFile, RecordError, Result, Runtime, WorkerResult, runtime_of
from harness.records.memory import Energy
from harness.records.schema import SCHEMA_VERSION, upgrade
from harness.results.load import parse_result

REPO_ROOT = Path(__file__).resolve().parents[1]
MINIMAL = {"schema": 1, "status": "ok", "framework": {"name": "trl", "version": "1.16.0"}}


def test_a_misspelt_field_fails_where_it_is_written():
    # the energy.method bug: writer and reader spelt the key differently, and every result said null
    with pytest.raises(TypeError):
        Energy(train_joules=1.0, metod="counter")  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        _ = Result.from_dict(MINIMAL).energy.metod  # type: ignore[attr-defined]


def test_unknown_keys_are_kept_in_place_and_written_back():
    data = {**MINIMAL, "from_the_future": {"x": 1}, "energy": {"train_joules": 2.0, "gauge": "pdu", "method": None}}
    record = Result.from_dict(data)
    assert record.extra == {"from_the_future": {"x": 1}} and record.energy.extra == {"gauge": "pdu"}
    assert json.dumps(record.to_dict()) == json.dumps(data)  # content and key order


def test_absent_stays_absent_null_stays_null_and_assigning_makes_present():
    record = Result.from_dict({**MINIMAL, "runtime": {"run_dir": "/r", "gpu_name": None}})
    assert "device" not in record.runtime.to_dict() and record.runtime.to_dict()["gpu_name"] is None
    assert not record.runtime.has("device") and record.runtime.has("gpu_name")
    record.runtime.device = "cpu"
    assert record.runtime.to_dict() == {"run_dir": "/r", "gpu_name": None, "device": "cpu"}
    assert "host" not in record.to_dict() and record.host is None  # a result from before host sampling


def test_a_section_that_is_not_an_object_is_named():
    with pytest.raises(RecordError, match=r"'train.step_time_s' is list, expected an object"):
        Result.from_dict({**MINIMAL, "train": {"step_time_s": [1, 2]}})
    with pytest.raises(RecordError, match=r"'checks' must be a list of objects"):
        parse_result({**MINIMAL, "checks": ["passed"]})
    with pytest.raises(RecordError, match=r"'status' is 'fine'"):
        parse_result({**MINIMAL, "status": "fine"})


def test_schema_upgrades_run_in_order_and_a_newer_schema_is_refused():
    def to_2(d):
        return {**d, "energy": {"method": (d.get("energy") or {}).get("source")}}

    def to_3(d):
        return {**d, "upgraded": True}

    old = {"schema": 1, "energy": {"source": "counter"}}
    assert upgrade(old, {1: to_2, 2: to_3}, current=3) == {"schema": 3, "energy": {"method": "counter"},
                                                            "upgraded": True}
    assert upgrade({"status": "ok"}) == {"status": "ok"}  # no schema field: the first layout
    with pytest.raises(RecordError, match="written by a newer harness"):
        upgrade({"schema": SCHEMA_VERSION + 1})
    with pytest.raises(RecordError, match="no migration from schema 1"):
        upgrade({"schema": 1}, {}, current=2)


def test_runtime_has_one_rule_the_workers_copy_else_the_parents():
    parent = Runtime.for_run(run_dir="/r", data_dir="/r/data", repeat=0, world_size=1)
    worker = WorkerResult.from_dict({"status": "ok", "runtime": {**parent.to_dict(), "device": "cpu"}})
    assert runtime_of(worker, parent).to_dict() == {**parent.to_dict(), "device": "cpu"}
    assert runtime_of(None, parent).to_dict() == parent.to_dict()
    assert runtime_of(WorkerResult.from_dict({"status": "crashed"}), parent).to_dict() == parent.to_dict()


def test_job_file_keeps_the_runtime_apart_from_the_hashed_job():
    from harness.config.job import job_hash

    data = {"framework": {"name": "fake", "version": "0"}, "model": {"name": "tiny", "hub_id": "h", "path": "/p"},
            "dataset": {"name": "d"}, "train": {"lr": 1e-3}, "suite": "s",
            "runtime": {"run_dir": "/r", "repeat": 0}}
    job = JobFile.from_dict(data)
    assert job.to_dict() == data and "runtime" not in job.spec.to_dict()
    assert job_hash(job.spec.to_dict()) == job_hash({k: v for k, v in data.items() if k != "runtime"})


def test_run_file_names_are_spelt_only_in_run_files():
    # Each file of a run directory is named once (harness/records/run_files.py); the adapters' framework_output and
    # the bare scripts' bare_output are outside the records' reach (their own modules, edited elsewhere).
    names = ('"result.json"', '"worker_result.json"', '"job.json"', '"worker.log"', '"memory_timeline.csv"')
    found = subprocess.run(["git", "grep", "-n", "-F", *sum((["-e", n] for n in names), []), "--", "harness"],
                           cwd=REPO_ROOT, capture_output=True, text=True, check=False).stdout.splitlines()
    assert [line for line in found if not line.startswith("harness/records/run_files.py:")] == [], found


def test_the_worker_module_imports_no_parent_only_dependency():
    # harness.records is imported by the worker, in the framework's own interpreter: standard library only.
    code = ("import sys, harness.records, harness.records.run_files; "
            "print(sorted(m for m in ('omegaconf', 'hydra', 'pandas', 'jinja2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
