"""Every committed result under results/ still loads, round-trips, renders, audits and compares.

The results were written by earlier versions of the harness (each session changed what a result holds);
reading them through today's typed records (harness/records) must lose nothing and change no verdict.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.atomic import read_json
from harness.results.load import find_result_files, load_records, parse_result

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = REPO_ROOT / "results"
FILES = find_result_files([RESULTS])
FOLDERS = sorted(p for p in RESULTS.iterdir() if p.is_dir() and find_result_files([p]))


def test_there_are_committed_results_to_check():
    assert len(FILES) >= 50 and len(FOLDERS) >= 5


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(RESULTS)) for p in FILES])
def test_a_committed_result_round_trips_exactly(path):
    # Unknown keys are kept and absent keys stay absent: what is written back is the file, key order included.
    raw = read_json(path)
    assert json.dumps(parse_result(raw).to_dict()) == json.dumps(raw)


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_every_result_of_a_folder_loads_and_is_judged_by_todays_checks(folder):
    from harness.results.cross_checks import run_checks

    warnings: list[str] = []
    records = load_records([folder], warn=warnings.append)
    assert not warnings and len(records) == len(find_result_files([folder]))
    for record in records:
        raw = read_json(Path(record.source))
        assert record.source and record.status == raw["status"] and record.framework.name == raw["framework"]["name"]
        if record.ok and raw.get("checks"):
            assert [c.to_dict() for c in record.checks] == [c.to_dict() for c in run_checks(record)]
            # the verdict written at run time is kept wherever today's rules judge differently
            at_run = [(c["name"], c["passed"]) for c in raw["checks"]]
            if [(c.name, c.passed) for c in record.checks] != at_run:
                assert [c.to_dict() for c in record.checks_at_run] == raw["checks"]
            else:
                assert record.checks_at_run is None


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_every_folder_renders_and_audits(folder, tmp_path):
    from harness.audit.fairness import audit_sweep
    from harness.report.render import render_report

    records = load_records([folder])
    audits = audit_sweep(records, "strict")
    assert {a["point_hash"] for a in audits} == {r.point_hash for r in records}
    html = render_report(records, tmp_path, name=folder.name).read_text(encoding="utf-8")
    for record in records:  # a profiled run is listed in its point's "Why they differ" section, never in its tables
        attribute = "data-profiled-run" if record.profiled else "data-run"
        assert f'{attribute}="{record.run_id}"' in html


def test_committed_results_compare_with_the_committed_baseline_as_before():
    """The verdicts of the committed seed_0.5b baseline against the results it was accepted from (no
    regression) and against the regression sample (trl's throughput 16% down), as before the typed records."""
    from harness.regression.thresholds import DEFAULT_CHECKS, parse_checks
    from harness.regression.baselines import baseline_path, load_baseline
    from harness.regression.verdicts import compare

    baselines = REPO_ROOT / "benchmarks" / "baselines"
    (path,) = list(baselines.glob("*/seed_0.5b.json"))
    baseline = load_baseline(baseline_path(path.parent.name, "seed_0.5b", baselines))
    checks = parse_checks(DEFAULT_CHECKS)
    same = compare(load_records([RESULTS / "h200" / "seed_0.5b"]), baseline, checks)
    assert same.exit_code == 0 and len(same.rows) == 18 and not same.regressions
    worse = compare(load_records([RESULTS / "h200-regression" / "seed_0.5b"]), baseline, checks)
    assert worse.exit_code == 1
    assert sorted((r.framework, r.metric) for r in worse.regressions) == [
        ("trl", "step_time_s"), ("trl", "supervised_tokens_per_s"), ("trl", "tokens_per_s")]
