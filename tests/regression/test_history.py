"""The append-only history survives concurrent sweeps: 8 processes x 50 appends, no torn or lost line."""
from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from harness.records import Result
from harness.results.history import append_history, history_path, read_all, read_history

PROCESSES = 8
LINES = 50
MACHINE = "1xnvidia-h200-driver570.00"


def _record(writer: int, index: int) -> Result:
    return Result.from_dict({
        "run_id": f"w{writer}-{index}", "suite": "concurrency", "point_hash": "p", "job_hash": "j", "repeat": index,
        "status": "ok", "reason": f"{writer}:{index}:" + "x" * 9000,  # well over PIPE_BUF: a torn write would show
        "framework": {"name": "trl", "version": "1.16.0", "packages": {"torch": "2.13.0"}},
        "job": {"model": {"name": "tiny"}, "dataset": {"name": "tiny_medical"}},
        "env": {"machine_id": MACHINE, "git": {"commit": "abc", "dirty": False}},
        "train": {"tokens_per_s": 1000.0 + index}, "phases": {"result_written": 1.8e9},
    })


def _append_many(results_dir: str, writer: int, start) -> None:
    start.wait()  # all writers begin together
    for index in range(LINES):
        append_history(_record(writer, index), Path(results_dir))


def test_concurrent_appends_never_corrupt_the_file(tmp_path):
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), w, start)) for w in range(PROCESSES)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    path = history_path(tmp_path, MACHINE)
    raw = path.read_text(encoding="utf-8").splitlines()
    assert len(raw) == PROCESSES * LINES
    entries = [json.loads(line) for line in raw]  # every line parses on its own
    assert sorted(e["run_id"] for e in entries) == sorted(f"w{w}-{i}" for w in range(PROCESSES) for i in range(LINES))
    for entry in entries:
        writer, index = entry["reason"].split(":")[:2]
        assert entry["run_id"] == f"w{writer}-{index}" and len(entry["reason"]) == len(f"{writer}:{index}:") + 9000
        assert entry["machine_id"] == MACHINE and entry["git_commit"] == "abc"
    # each writer's own lines keep their order
    for writer in range(PROCESSES):
        mine = [e["repeat"] for e in entries if e["run_id"].startswith(f"w{writer}-")]
        assert mine == list(range(LINES))
    assert len(read_history(path)) == PROCESSES * LINES


def test_read_all_reads_every_machine_and_skips_torn_lines(tmp_path):
    append_history(_record(0, 0), tmp_path)
    other = _record(1, 0)
    other.env.machine_id = "cpu-x86-64-2cores"
    append_history(other, tmp_path)
    with open(history_path(tmp_path, MACHINE), "a", encoding="utf-8") as handle:
        handle.write('{"run_id": "torn')
    warnings: list[str] = []
    entries = read_all(tmp_path, warn=warnings.append)
    assert {e["machine_id"] for e in entries} == {MACHINE, "cpu-x86-64-2cores"}
    assert len(entries) == 2 and len(warnings) == 1 and MACHINE in warnings[0]
    assert read_all(tmp_path / "nothing-here") == []


def test_torn_last_line_does_not_swallow_the_next_record(tmp_path):
    """A crash mid-append leaves a line without its newline; the next append starts on a fresh line, so
    only the torn line is lost, and the reader names it (file and line) instead of failing."""
    append_history(_record(0, 0), tmp_path)
    path = history_path(tmp_path, MACHINE)
    torn = json.dumps({"run_id": "torn", "reason": "é" * 10}, ensure_ascii=False).encode()
    with open(path, "ab") as handle:
        handle.write(torn[: torn.index("é".encode()) + 1])  # cut inside a two-byte character, no newline
    append_history(_record(0, 1), tmp_path)
    warnings: list[str] = []
    entries = read_history(path, warn=warnings.append)
    assert [e["run_id"] for e in entries] == ["w0-0", "w0-1"]
    assert warnings == [f"skipped: {path}:2: corrupt history line (torn by a crash mid-append?)"]
    assert path.read_bytes().endswith(b"\n")


def test_history_line_that_is_not_an_object_is_skipped(tmp_path):
    append_history(_record(0, 0), tmp_path)
    path = history_path(tmp_path, MACHINE)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("[1, 2]\n")
    append_history(_record(0, 1), tmp_path)
    warnings: list[str] = []
    assert [e["run_id"] for e in read_history(path, warn=warnings.append)] == ["w0-0", "w0-1"]
    assert len(warnings) == 1 and f"{path}:2" in warnings[0] and "not a history entry" in warnings[0]
