"""The HTML report: self-contained, one row per run, every user string escaped, corrupt files skipped,
empty input refused with one line; plus the headline sentences and table marks on known numbers.

Records come from the real harness on CPU with the test-double framework (``framework=fake``: one
run that trains and one with ``framework.fault=exception``). When that run cannot produce a
successful record (another module mid-edit), hand-made records in the same layout are used instead
and a warning says so. A hostile record (``<script>`` reason, ``<img onerror>`` model name) is
always added.
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from harness.records import Result

REPO_ROOT = Path(__file__).resolve().parents[2]
XSS_REASON = "<script>alert(1)</script>"
XSS_MODEL = "<img src=x onerror=alert(1)>"
XSS_LOG = "line one\n</pre><script>alert(2)</script>\nlast & line"
POINT = "p0int0000001"


# ---- hand-made records (same layout as harness/results/assemble.py) -----------------------------------------------
def make_record(framework: str, version: str, repeat: int, *, status: str = "ok", tps: float = 1000.0,
                mem: float | None = 4 * 2**30, loss: float = 2.5, run_dir: Path | None = None,
                lora_alpha: int = 32, point_hash: str = POINT, t0: float = 1_790_000_000.0) -> Result:
    ok = status == "ok"
    log = [{"step": s, "tokens": 2048, "supervised_tokens": 900, "samples": 8, "time_s": 2048 / tps,
            "loss": 3.0 - 0.1 * s + 0.01 * repeat, "grad_norm": 1.0, "lr": 2e-4} for s in range(1, 9)] if ok else []
    audit = {"trainable_params": 1_000_000, "lora_r": 16, "lora_alpha": lora_alpha, "lr": 2e-4, "seed": 42,
             "optimizer": "AdamW", "loss_type": "nll" if framework == "trl" else "dft",
             "first_batch_hash": "abc123", "notes": []} if ok else None
    phases = {"spawned": t0, "process_start": t0 + 0.1, "imports_done": t0 + 2, "model_loaded": t0 + 5,
              "data_ready": t0 + 6, "train_start": t0 + 7, "train_end": t0 + 7 + 8 * 2048 / tps,
              "eval_end": t0 + 9 + 8 * 2048 / tps, "result_written": t0 + 10 + 8 * 2048 / tps}
    dur = {"imports": 1.9, "model_load": 3.0, "data": 1.0, "train": 8 * 2048 / tps, "eval": 2.0,
           "total": 10 + 8 * 2048 / tps} if ok else {"imports": 1.9, "model_load": 3.0, "total": 5.0}
    run_dir = run_dir or Path(f"/nonexistent/{framework}/r{repeat}")
    return Result.from_dict({
        "schema": 1, "run_id": f"20260101T000000-{framework[:3]}{repeat}{status[:2]}", "run_dir": str(run_dir),
        "job_hash": f"{framework}{version}", "point_hash": point_hash, "suite": "unit", "repeat": repeat,
        "status": status, "reason": "" if ok else "RuntimeError: injected", "log_tail": "" if ok else "Traceback\nboom",
        "framework": {"name": framework, "version": version,
                      "packages": {"torch": "2.13.0", "transformers": "5.17.0", framework: version}},
        "job": {"framework": {"name": framework, "version": version},
                "model": {"name": "tiny", "hub_id": "harness/assets/tiny", "weights": "random"},
                "dataset": {"name": "tiny_medical"}, "suite": "unit", "fairness": "strict",
                "train": {"max_steps": 8, "batch_size": 8, "grad_accum": 1, "max_length": 1024, "seed": 42}},
        "env": {"hostname": "box", "machine_id": "1xnvidia-h200-driver570", "gpu_count": 1, "gpu_name": "NVIDIA H200",
                "driver": "570.1", "cuda": "12.8", "python": "3.11.7", "git": {"commit": "deadbeef", "dirty": False}},
        "wall_time_s": dur["total"] + 0.5,
        "train": {"steps": 8, "tokens": 8 * 2048, "supervised_tokens": 8 * 900, "samples": 64,
                  "tokens_per_s": tps if ok else None, "supervised_tokens_per_s": tps * 0.44 if ok else None,
                  "samples_per_s": tps / 256 if ok else None,
                  "step_time_s": {"median": 2048 / tps if ok else None}, "log": log},
        "eval": {"loss": loss, "framework_loss": loss, "curve": [{"step": 4, "tokens": 4 * 2048, "loss": loss + 0.2}]}
        if ok else None,
        "audit": audit, "phases": phases, "durations": dur,
        "memory": {"nvml_peak_bytes": mem if ok else None, "torch_max_allocated_bytes": mem * 0.7 if ok and mem else None,
                   "torch_max_reserved_bytes": mem * 0.8 if ok and mem else None, "timeline": "memory_timeline.csv"},
        "energy": {"joules_per_1k_tokens": 50.0 if ok else None},
        "mfu": {"mfu": 0.31 if ok else None},
        "checks": [{"name": "loss_fell", "passed": True, "detail": "3.0 -> 2.2"},
                   {"name": "tokens_match_framework", "passed": False, "detail": "ours 16384, framework 16400"},
                   {"name": "nvml_peak_ge_torch_reserved", "passed": None, "detail": "no GPU memory readings"}] if ok else [],
    })


def write_result(root: Path, record: Result) -> Path:
    run_dir = root / record.suite / str(record.point_hash) / record.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    record.run_dir = str(run_dir)
    (run_dir / "result.json").write_text(json.dumps(record.to_dict()), encoding="utf-8")
    return run_dir


def write_timeline(run_dir: Path, record: Result, peak: float) -> None:
    t0 = record.phases["spawned"]
    lines = ["t,device,used_bytes,util,power_w,process_bytes"]
    for i in range(60):
        used = 0.5 * 2**30 + (peak * min(1.0, i / 20) if 10 < i < 55 else 0)
        lines.append(f"{t0 + i * 0.25:.3f},0,{int(used)},{50 if 10 < i < 55 else 0},300.0,{int(used * 0.9)}")
    (run_dir / "memory_timeline.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def handmade_results(root: Path) -> list[Result]:
    """trl x2 repeats, unsloth x2, llamafactory failed: a full comparison with a timeline per ok run."""
    records = [make_record("trl", "1.16.0", 0, tps=1000, mem=4 * 2**30, loss=2.50),
               make_record("trl", "1.16.0", 1, tps=1040, mem=4.1 * 2**30, loss=2.501),
               make_record("unsloth", "2026.10.9", 0, tps=1900, mem=2.4 * 2**30, loss=2.505),
               make_record("unsloth", "2026.10.9", 1, tps=1950, mem=2.45 * 2**30, loss=2.506),
               make_record("llamafactory", "0.9.5", 0, status="oom")]
    for r in records:
        run_dir = write_result(root, r)
        if r.ok:
            write_timeline(run_dir, r, r.memory.nvml_peak_bytes)
    return records


def hostile_record(template: Result) -> Result:
    r = copy.deepcopy(template.to_dict())
    r.update({"status": "failed", "reason": XSS_REASON, "log_tail": XSS_LOG, "repeat": 7,
              "run_id": "20260101T000000-xss<b>"})
    r["job"]["model"]["name"] = XSS_MODEL
    r["job"]["dataset"]["name"] = "<b>bold-dataset</b>"
    return Result.from_dict(r)


def run_harness(results: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness", "run", "framework=fake", "framework.python=current",
           "train.max_steps=4", f"results_dir={results}", "report=false", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env)


def build_results(root: Path) -> tuple[Path, str, list[Result]]:
    """A results folder with >= 1 ok run, >= 1 failed run and one hostile record; returns
    (folder, 'harness' or 'handmade', the records written)."""
    from harness.results.load import load_records

    real = root / "real"
    ok_run = run_harness(real)
    bad_run = run_harness(real, "framework.fault=exception")
    records = load_records([real], warn=lambda m: None)
    if any(r.ok for r in records) and any(r.status == "failed" for r in records):
        write_result(real, hostile_record(next(r for r in records if r.status == "failed")))
        return real, "harness", load_records([real], warn=lambda m: None)
    tail = (ok_run.stdout + ok_run.stderr).strip().splitlines()[-3:] + (bad_run.stdout + bad_run.stderr).strip().splitlines()[-1:]
    warnings.warn("the real harness run (framework=fake) did not produce an ok and a failed record; "
                  "using hand-made records. Its output ended with: " + " | ".join(tail))
    made = root / "handmade"
    records = handmade_results(made)
    write_result(made, hostile_record(records[-1]))
    return made, "handmade", load_records([made], warn=lambda m: None)


@pytest.fixture(scope="module")
def rendered(results_tree, tmp_path_factory, capsys_module=None):
    from harness.cli.report import main

    folder, source, records = results_tree
    out = tmp_path_factory.mktemp("reports")
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main([str(folder), "--out", str(out)])
    assert rc == 0, stderr.getvalue()
    match = re.search(r"report: (\S+\.html)", stdout.getvalue())
    assert match, stdout.getvalue()
    path = Path(match.group(1))
    return {"path": path, "html": path.read_text(encoding="utf-8"), "records": records, "source": source, "out": out}


# ---- the rendered page ---------------------------------------------------------------------------------
def test_report_is_one_self_contained_file(rendered):
    html = rendered["html"]
    assert rendered["path"].parent == rendered["out"]
    # nothing fetched from the network or another file: no http(s)/protocol-relative src or href at all
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"https?://", html)
    assert "<link" not in html.lower()
    imgs = re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", html)
    assert len(imgs) >= 3 and all(src.startswith("data:image/svg+xml;base64,") for src in imgs)
    # CPU runs: no memory peak, no GPU samples; a line says so where an empty box was drawn
    assert 'data-not-drawn="tradeoff"' in html and 'data-not-drawn="memory"' in html
    for section in ("Headlines", "Environment", "Speed", "Memory", "Quality and energy", "Wall time by phase",
                    "Tokens/s per training step", "Memory against speed", "Loss curves", "GPU memory over time",
                    "Definitions", "rows as CSV",
                    "Fairness audit", "Cross-checks per run", "Runs that did not succeed", "Reproduce"):
        assert section in html, section


def test_one_table_row_per_run(rendered):
    ids = re.findall(r'<tr data-run="([^"]*)"', rendered["html"])
    assert len(ids) == len(rendered["records"])
    import html as htmllib
    assert sorted(htmllib.unescape(i) for i in ids) == sorted(r.run_id for r in rendered["records"])


def test_user_strings_are_escaped(rendered):
    html = rendered["html"]
    assert XSS_REASON not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS_MODEL not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script>alert(2)" not in html and "&lt;/pre&gt;&lt;script&gt;alert(2)" in html
    assert "<b>bold-dataset</b>" not in html and "xss<b>" not in html
    # the only script elements are inert JSON: the summary the index reads and the reproduce arguments
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="application/json" id="harness-meta">',
                                                    '<script type="application/json" id="harness-reproduce">']
    # inert: HTML-escaped in the page, \u003c-escaped inside the JSON script elements
    assert "onerror=" not in re.sub(r"(&lt;|\\u003c)img src=x onerror=alert\(1\)(&gt;|\\u003e)", "", html)


def test_index_lists_the_report(rendered):
    index = (rendered["out"] / "index.html").read_text(encoding="utf-8")
    assert f'href="{rendered["path"].name}"' in index
    assert XSS_REASON not in index


def test_failed_run_shows_status_reason_and_log(rendered):
    html = rendered["html"]
    assert "data-failed=" in html and "<pre>" in html
    assert "&amp; line" in html  # the log tail, escaped, inside <pre>


def test_corrupt_result_file_is_named_and_skipped(results_tree, tmp_path, capsys):
    import shutil

    from harness.cli.report import main

    folder = tmp_path / "res"
    shutil.copytree(results_tree[0], folder)
    bad = folder / "broken" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"status": "ok", "train": {', encoding="utf-8")
    rc = main([str(folder), "--out", str(tmp_path / "out"), "--name", "with-corrupt"])
    captured = capsys.readouterr()
    assert rc == 0
    assert str(bad) in captured.err and "skipped" in captured.err
    assert (tmp_path / "out" / "with-corrupt.html").is_file()


def test_empty_folder_exits_2_with_one_line(tmp_path, capsys):
    from harness.cli.report import main

    (tmp_path / "empty").mkdir()
    rc = main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and "no result files" in captured.err
    assert not (tmp_path / "out").exists()


def test_cli_through_python_m_harness(results_tree, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness", "report", str(results_tree[0]), "--out", str(out),
                           "--name", "cli"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"report: {out / 'cli.html'}"
    assert (out / "index.html").is_file()


def test_report_and_audit_default_to_where_run_writes(results_tree, tmp_path):
    """run writes to $HARNESS_RESULTS_DIR / $HARNESS_REPORTS_DIR when set; report and audit with no folder read
    and write the same places (they used results/ and reports/ of the current folder: the checkout)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HARNESS_RESULTS_DIR": str(results_tree[0]),
           "HARNESS_REPORTS_DIR": str(out)}
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "--name", "defaults"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"report: {out / 'defaults.html'}" and (out / "defaults.html").is_file()
    audit = subprocess.run([sys.executable, "-m", "harness", "audit"], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300, env=env)
    assert "no such results" not in audit.stderr and "point " in audit.stdout, audit.stderr


# ---- numbers on hand-made records ------------------------------------------------------------------------
def _ok_point():
    return [make_record("trl", "1.16.0", 0, tps=1000, mem=4 * 2**30, loss=2.500),
            make_record("unsloth", "2026.10.9", 0, tps=1900, mem=2.4 * 2**30, loss=2.505)]


def test_headline_ratios():
    from harness.report.headline import headline

    h = headline(_ok_point())
    # the hand-made records fail tokens_match_framework: stated in words, and the point is not called fair
    assert h["kind"] == "checks_failed"
    assert h["text"].startswith("unsloth-2026.10.9: 1.90x trl-1.16.0's tokens/s at 0.60x its peak memory; "
                                "eval loss within 0.01. Cross-check failed in trl r0, unsloth r0: our count of tokens")
    assert h["fair"] is None  # no audit given
    passing = _ok_point()
    for r in passing:
        r.checks = [c for c in r.checks if c.name != "tokens_match_framework"]
    h = headline(passing, {"valid": True})
    assert h["kind"] == "compared" and h["fair"] is True and "Cross-check" not in h["text"]
    explained = _ok_point()
    for r in explained:
        r.checks[1].explanation = "counts padding of the last batch"
    h = headline(explained, {"valid": True})
    assert h["fair"] is True and "explained: counts padding of the last batch" in h["text"]
    assert any(d.startswith("Single run for trl, unsloth") for d in h["disclosures"])
    assert any(d.startswith("Random weights") for d in h["disclosures"])


def test_headline_within_noise_and_reference_choice():
    from harness.report.headline import headline

    runs = [make_record("trl", "1", 0, tps=1000), make_record("trl", "1", 1, tps=1100),
            make_record("unsloth", "2", 0, tps=1050), make_record("unsloth", "2", 1, tps=1080)]
    h = headline(runs)
    assert "tokens/s within noise of trl-1's" in h["text"]
    h = headline(runs, reference="unsloth")
    assert h["text"].startswith("trl-1:") and "unsloth-2's" in h["text"]


def test_headline_unfair_first_and_single_framework():
    from harness.audit.fairness import audit_sweep
    from harness.report.headline import headline

    runs = [make_record("trl", "1", 0), make_record("unsloth", "2", 0, lora_alpha=16)]
    audit = audit_sweep(runs, "strict")[0]
    assert not audit["valid"]
    assert headline(runs, audit)["text"].startswith("NOT A FAIR COMPARISON: lora_alpha differs")
    single = [make_record("trl", "1", 0), make_record("unsloth", "2", 0, status="failed")]
    text = headline(single)["text"]
    assert text.startswith("Only trl-1 succeeded") and "unsloth-2 (failed)" in text


def test_a_point_with_fewer_than_two_successes_is_not_called_fair(tmp_path):
    """An interrupted sweep's only run, or one framework left: the audit compared nothing, so the headline
    and the point say "nothing compared", never "fair · strict audit passed"."""
    from harness.audit.fairness import audit_sweep
    from harness.report.headline import headline
    from harness.report.render import render_report

    none_ok = [make_record("trl", "1.16.0", 0, status="interrupted")]
    single = [make_record("trl", "1.16.0", 0), make_record("unsloth", "2026.10.9", 0, status="failed")]
    pair = _ok_point()
    for r in single + pair:  # make_record's runs carry an unexplained failed cross-check: not this test's subject
        r.checks = [c for c in r.checks if c.passed is not False]
    for runs, fair in ((none_ok, None), (single, None), (pair, True)):
        assert headline(runs, audit_sweep(runs, "strict")[0])["fair"] is fair
    path = render_report(none_ok, tmp_path / "out", name="interrupted")
    page = path.read_text(encoding="utf-8")
    assert "strict audit passed" not in page and 'class="badge ok">fair<' not in page
    assert "nothing compared" in page


def test_table_marks_best_and_ratios():
    from harness.report.tables import comparison_table

    table = comparison_table(_ok_point() + [make_record("trl", "1.16.0", 1, tps=1100, mem=4 * 2**30)])
    rows = {r["label"]: r for r in table["rows"]}
    assert table["reference"] == "trl-1.16.0"
    trl, uns = rows["trl-1.16.0"]["cells"], rows["unsloth-2026.10.9"]["cells"]
    assert trl["tokens_per_s"]["median"] == 1050 and trl["tokens_per_s"]["spread"]
    assert uns["tokens_per_s"]["best"] and not trl["tokens_per_s"]["best"]
    assert uns["peak_mem"]["best"]  # lower is better
    assert not trl["eval_loss"]["best"] and not uns["eval_loss"]["best"]  # 2.500 vs 2.505: within 0.01
    close = comparison_table([make_record("trl", "1", 0, tps=1000), make_record("unsloth", "2", 0, tps=1010)])
    assert not any(r["cells"]["tokens_per_s"]["best"] for r in close["rows"])  # 1% apart: not marked
    assert [t["group"] for t in table["tables"]] == ["speed", "memory", "quality", "time"]
    assert uns["tokens_per_s"]["ratio_text"] == "1.81x"
    assert {c["key"] for c in table["columns"]} >= {"tokens_per_s", "t_imports", "t_total", "eval_loss",
                                                     "energy_per_1k_tokens", "mfu", "torch_peak_allocated"}


def test_unfair_audit_rows_red_and_grey(tmp_path):
    from harness.report.render import render_report

    made = tmp_path / "res"
    records = [make_record("trl", "1", 0, run_dir=made), make_record("unsloth", "2", 0, lora_alpha=16, run_dir=made)]
    path = render_report(records, tmp_path / "reports", command="python -m harness run x=<y>", name="unfair")
    html = path.read_text(encoding="utf-8")
    assert path.name == "unfair.html"
    assert re.search(r'<tr class="mismatch" data-field="lora_alpha">', html)
    assert re.search(r'<tr class="info" data-field="loss_type">', html)
    assert "NOT A FAIR COMPARISON: lora_alpha differs" in html
    assert "python -m harness run x=&lt;y&gt;" in html
    assert 'data-not-drawn="memory"' in html  # no GPU samples: a line, not an empty box


def test_memory_timeline_figure_without_samples(tmp_path):
    from harness.report import memory_figure

    (tmp_path / "memory_timeline.csv").write_text("t,device,used_bytes,util,power_w,process_bytes\n")
    rec = make_record("trl", "1", 0, run_dir=tmp_path)
    assert memory_figure.read_timeline(tmp_path / "memory_timeline.csv") == []
    assert memory_figure.memory_timelines([rec]) is None  # the report says "Not drawn" in a line instead
    write_timeline(tmp_path, rec, 2**30)
    assert memory_figure.memory_timelines([rec]).startswith("data:image/svg+xml;base64,")
    assert len(memory_figure.read_timeline(tmp_path / "memory_timeline.csv")) == 60


def test_timeline_written_gzipped_and_older_names_still_found(tmp_path):
    # The sampler writes memory_timeline.csv.gz; results written before it name memory_timeline.csv, and
    # their committed CSVs were gzipped afterwards: the reader finds the compressed file under the old name.
    from harness.report import memory_figure
    from harness.records import run_files
    from harness.sampling.timeline import write_timeline_csv

    rows = [{"t": 1.0 + i, "device": 0, "used_bytes": 2**30 + i, "util": 50, "power_w": 300.0, "process_bytes": None}
            for i in range(5)]
    write_timeline_csv(tmp_path / run_files.MEMORY_TIMELINE, rows)
    assert (tmp_path / run_files.MEMORY_TIMELINE).read_bytes()[:2] == b"\x1f\x8b"  # gzip magic
    older = make_record("trl", "1", 0, run_dir=tmp_path)
    older.memory.timeline = "memory_timeline.csv"
    path = memory_figure.timeline_path(older)
    assert path == tmp_path / run_files.MEMORY_TIMELINE
    assert [r["used_bytes"] for r in memory_figure.read_timeline(path)] == [2**30 + i for i in range(5)]
    (tmp_path / "memory_timeline.csv").write_text("t,device,used_bytes,util,power_w,process_bytes\n9,0,7,,,\n")
    assert memory_figure.read_timeline(memory_figure.timeline_path(older)) == [{"t": 9.0, "device": 0, "used_bytes": 7.0}]


def test_trend_page_and_index(tmp_path, capsys, monkeypatch):
    import json as jsonlib

    from harness.results.history import append_history
    from harness.cli.report import main

    results = tmp_path / "results"
    runs = [("trl", "1.15", 1000, POINT), ("trl", "1.16", 900, POINT), ("unsloth", "2026.10.9", 1900, POINT),
            ("trl", "1.16", 940, POINT), ("unsloth", "2026.10.9", 1850, POINT), ("trl", "1.16", 3000, "otherpoint01")]
    for i, (fw, v, tps, point) in enumerate(runs):
        append_history(make_record(fw, v, 0, tps=tps, t0=1_790_000_000.0 + 3600 * i, point_hash=point), results)
    baselines = tmp_path / "baselines"
    machine = "1xnvidia-h200-driver570"
    (baselines / machine).mkdir(parents=True)
    (baselines / machine / "unit.json").write_text(jsonlib.dumps({"schema": 1, "machine_id": machine, "suite": "unit",
        "entries": [{"point_hash": POINT, "framework": "trl", "version": "1.15", "metrics": {"tokens_per_s": [1000.0]}}]}))
    monkeypatch.setenv("HARNESS_BASELINES_DIR", str(baselines))
    assert main([str(results), "--out", str(tmp_path / "reports"), "--trend"]) == 0
    out = capsys.readouterr().out
    path = Path(out.strip().split("trend: ")[1])
    html = path.read_text(encoding="utf-8")
    # two sweep points never share a chart; each framework's runs are numbered in order
    assert html.count('<img class="fig"') == 2 and machine in html
    assert html.count(f'data-point="{POINT}"') == 1 and 'data-point="otherpoint01"' in html
    # 900 and 940 tok/s are more than 5% below trl's baseline of 1000: marked as regressions, 1.15's run is not
    assert re.findall(r'<tr class="mismatch" data-trend-run="([^"]+)"', html) == ["trl-2", "trl-3"]
    index = (tmp_path / "reports" / "index.html").read_text(encoding="utf-8")
    assert 'href="trend.html"' in index


def test_host_activity_that_differs_between_runs_names_each_run():
    """Four runs each on a busy CPU gave four unnamed sentences joined by commas; each is now its run's line."""
    from harness.report.sections import environment_section

    def busy(record: Result, cores: float) -> Result:
        data = record.to_dict()
        data["host"] = {"cpu_count": 2, "cpu_shared": True, "other_busy_cores_mean": cores, "other_busy_cores_max": 1.9,
                        "disclosure": {"shared": True, "because": [f"other processes kept {cores} of 2 CPU cores busy"]}}
        return Result.from_dict(data)

    records = [busy(make_record("trl", "1.16.0", 0), 1.3), busy(make_record("unsloth", "2026.10.9", 0), 1.5)]
    (row,) = [r for r in environment_section(records)["rows"] if r["name"] == "host activity"]
    assert row["varies"] and len(row["lines"]) == 2
    assert row["lines"][0].startswith("trl-1.16.0: ") and "1.3 of 2" in row["lines"][0]
    assert row["lines"][1].startswith("unsloth-2026.10.9: ") and "1.5 of 2" in row["lines"][1]
    (same,) = [r for r in environment_section(records[:1])["rows"] if r["name"] == "host activity"]
    assert "lines" not in same and not same["value"].startswith("trl")


def test_coinciding_loss_curves_are_named_and_different_ones_are_not(tmp_path):
    from harness.report.figures import coinciding_losses
    from harness.report.render import render_report

    same = [make_record("trl", "1", 0), make_record("unsloth", "2", 0), make_record("llamafactory", "3", 0)]
    assert coinciding_losses(same) == ["llamafactory-3", "trl-1", "unsloth-2"]
    apart = [make_record("trl", "1", 0), make_record("unsloth", "2", 0)]
    for step in apart[1].train.log:
        step["loss"] += 0.5
    assert coinciding_losses(apart) == []
    html = render_report(same, tmp_path / "out", name="same").read_text(encoding="utf-8")
    assert "The train losses of llamafactory-3, trl-1, unsloth-2 agree at every logged" in html


def test_imports_to_first_step_is_derived_for_results_written_before_it_and_shown():
    """The span to compare across frameworks' start-up (LLaMA-Factory loads its data inside its model-loading call,
    trl tokenizes in its trainer's set-up): derived from the phase marks of a session-6 record that predates it."""
    from harness.results.load import load_records

    root = REPO_ROOT / "results/h200/session6/throughput_7b"
    records = [r for r in load_records([root]) if r.ok]
    assert records and all("to_first_step" in r.durations for r in records)
    for r in records:
        assert r.durations["to_first_step"] == round(r.phases["train_start"] - r.phases["imports_done"], 4)
    lf = next(r for r in records if r.framework.name == "llamafactory")
    trl = next(r for r in records if r.framework.name == "trl")
    # LLaMA-Factory's "model load" is twice trl's, its start-up as a whole is not
    assert lf.durations["model_load"] > 1.5 * trl.durations["model_load"]
    assert lf.durations["to_first_step"] < 1.3 * trl.durations["to_first_step"]
