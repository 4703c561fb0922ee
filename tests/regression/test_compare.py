"""``python -m harness compare`` on recorded result files (CPU, no training): thresholds, noise, machines,
--accept, corrupt files and check syntax."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.records import Result
from harness.regression.thresholds import DEFAULT_CHECKS, CompareError, Check, parse_checks
from harness.regression.baselines import baseline_path, build_baseline, load_baseline
from harness.regression.verdicts import compare
from harness.cli.compare import main
from harness.results.load import METRICS, flatten

REPO_ROOT = Path(__file__).resolve().parents[2]
MACHINE = "1xnvidia-h200-driver570.00"
OTHER_MACHINE = "cpu-x86-64-2cores"
SUITE = "seed_test"
POINT = "a1b2c3d4e5f6"


def make_record(*, tokens_per_s: float = 1000.0, peak_mem: int | None = 8 * 2**30, eval_loss: float = 1.5,
                machine_id: str = MACHINE, repeat: int = 0, framework: str = "trl", version: str = "1.16.0",
                suite: str = SUITE, point_hash: str = POINT, status: str = "ok", finished: float = 1.8e9,
                commit: str = "0123456789abcdef0123456789abcdef01234567") -> dict[str, Any]:
    """A schema-complete result record (as harness.results.assemble.build_record writes it) with chosen figures."""
    job_hash = f"{framework[:3]}{version.replace('.', '')}"[:12].ljust(12, "0")
    run_dir = f"/results/{suite}/tiny-tiny_medical-{point_hash}/{framework}-{version}-{job_hash}/r{repeat}"
    tokens = 40_000
    ok = status == "ok"
    return {
        "schema": 1,
        "run_id": f"20270115T1200{repeat:02d}-{framework[:3]}{repeat:03d}",
        "run_dir": run_dir, "suite": suite, "job_hash": job_hash, "point_hash": point_hash, "repeat": repeat,
        "status": status, "reason": "" if ok else "injected failure", "log_tail": "",
        "framework": {"name": framework, "version": version,
                      "packages": {"torch": "2.13.0", "transformers": "5.17.0", "peft": "0.21.0", framework: version}},
        "job": {"framework": {"name": framework, "version": version},
                "model": {"name": "tiny", "hub_id": "harness/assets/tiny", "weights": "random"},
                "dataset": {"name": "tiny_medical", "digest": "c6ce82cd05e77eb9"},
                "train": {"max_steps": 60, "batch_size": 8, "max_length": 1024, "seed": 42},
                "suite": suite, "fairness": "strict"},
        "runtime": {"run_dir": run_dir, "repeat": repeat, "world_size": 1, "device": "cuda"},
        "env": {"hostname": "bench-1", "machine_id": machine_id, "gpu_count": 1, "gpu_name": "NVIDIA H200",
                "driver": "570.00", "python": "3.11.7", "platform": "Linux", "cpu_count": 16,
                "git": {"commit": commit, "dirty": False}, "cuda_visible_devices": None},
        "wall_time_s": 120.0 + repeat,
        "train": {"steps": 60, "timed_steps": 50, "tokens": tokens, "supervised_tokens": tokens // 2, "samples": 480,
                  "tokens_per_s": tokens_per_s if ok else None,
                  "supervised_tokens_per_s": tokens_per_s / 2 if ok else None,
                  "samples_per_s": tokens_per_s / 100 if ok else None,
                  "step_time_s": {"median": 320.0 / tokens_per_s if ok else None, "mean": None, "min": None,
                                  "max": None, "p10": None, "p90": None},
                  "log": []},
        "eval": {"loss": eval_loss, "tokens": 5000, "records": 32, "framework_loss": eval_loss, "curve": []}
        if ok else None,
        "audit": {"trainable_params": 1000},
        "phases": {"process_start": finished - 100, "result_written": finished + repeat},
        "durations": {"imports": 3.0, "model_load": 5.0, "data": 1.0, "train": 90.0, "eval": 5.0, "total": 110.0,
                      "parent_total": 120.0},
        "memory": {"torch_max_allocated_bytes": peak_mem, "torch_max_reserved_bytes": peak_mem,
                   "nvml_available": True, "nvml_peak_bytes": peak_mem, "nvml_baseline_bytes": 500 * 2**20,
                   "nvml_process_peak_bytes": peak_mem, "nvml_samples": 1000, "nvml_interval_s": 0.01,
                   "timeline": "memory_timeline.csv"},
        "gpu_activity": {"mean_util_pct": 90.0, "max_power_w": 600.0},
        "energy": {"train_joules": 9000.0, "method": "counter", "joules_per_1k_tokens": 225.0},
        "mfu": {"flops_per_token": 3e9, "formula": "6N", "achieved_flops_per_s": 3e12, "peak_flops_per_s": 9.9e14,
                "mfu": 0.003} if ok else None,
        "checks": [],
    }


def write_results(root: Path, values: list[dict[str, Any]], **common: Any) -> Path:
    """One result.json per entry of ``values`` (the repeat index is the position), laid out as the runner does."""
    for repeat, overrides in enumerate(values):
        record = make_record(repeat=repeat, **{**common, **overrides})
        path = root / Path(record["run_dir"]).relative_to("/results") / "result.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    return root


def tps(*values: float) -> list[dict[str, Any]]:
    return [{"tokens_per_s": v} for v in values]


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "baseline_results", tmp_path / "current_results", tmp_path / "baselines"


def accept(results: Path, baselines: Path, *extra: str) -> int:
    return main([str(results), "--baselines-dir", str(baselines), "--accept", *extra])


def run_compare(results: Path, baselines: Path, *extra: str) -> int:
    return main([str(results), "--baselines-dir", str(baselines), *extra])


# -------------------------------------------------------------------------------------------- behaviour

def test_accept_writes_baseline_then_same_results_pass(dirs, capsys):
    base, _, baselines = dirs
    write_results(base, tps(1000, 1010, 990))
    assert accept(base, baselines) == 0
    path = baseline_path(MACHINE, SUITE, baselines)
    assert path.is_file()
    assert not list(path.parent.glob("*.tmp")), "accept writes atomically (no temp file left behind)"
    baseline = load_baseline(path)
    assert baseline["machine_id"] == MACHINE and baseline["suite"] == SUITE
    (entry,) = baseline["entries"]
    assert entry["point_hash"] == POINT and entry["framework"] == "trl" and entry["version"] == "1.16.0"
    assert entry["metrics"]["tokens_per_s"] == [1000, 1010, 990]
    assert entry["commit"] and entry["job_hash"] and entry["date"] and entry["packages"]["trl"] == "1.16.0"
    capsys.readouterr()
    assert run_compare(base, baselines) == 0
    out = capsys.readouterr().out
    assert "REGRESSION" not in out and "tokens_per_s" in out and "verdict" in out


def test_twenty_percent_slower_fails(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(1000, 1010, 990))
    write_results(cur, tps(800, 805, 795))
    accept(base, baselines)
    capsys.readouterr()
    assert run_compare(cur, baselines) == 1
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if " tokens_per_s " in l)
    assert "REGRESSION" in line and "-20.0%" in line and "-5%" in line


def test_single_runs_threshold_alone_decides(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(1000))
    write_results(cur, tps(940))  # -6%: no repeats, so no noise estimate: the threshold decides
    accept(base, baselines)
    assert run_compare(cur, baselines, "--check", "tokens_per_s:-5%") == 1
    write_results(cur, tps(960))  # -4%
    assert run_compare(cur, baselines, "--check", "tokens_per_s:-5%") == 0


def test_within_noise_passes(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(100, 104, 96))
    write_results(cur, tps(101, 97, 99))
    accept(base, baselines)
    capsys.readouterr()
    # the medians differ by -1%, beyond a 0.5% threshold, but the repeats wander by 8: noise, not a regression
    assert run_compare(cur, baselines, "--check", "tokens_per_s:-0.5%") == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if " tokens_per_s " in l)
    assert "noise" in line and "REGRESSION" not in line
    assert run_compare(cur, baselines) == 0  # and within the default -5% anyway


def test_beyond_threshold_and_outside_noise_fails_even_with_repeats(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(100, 101, 99))
    write_results(cur, tps(90, 91, 89))
    accept(base, baselines)
    assert run_compare(cur, baselines, "--check", "tokens_per_s:-5%") == 1


def test_improvement_is_reported_not_failed(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(1000, 1001, 999))
    write_results(cur, tps(1500, 1501, 1499))
    accept(base, baselines)
    capsys.readouterr()
    assert run_compare(cur, baselines, "--check", "tokens_per_s:-5% step_time_s:+5%") == 0
    out = capsys.readouterr().out
    assert all("improved" in l for l in out.splitlines() if " tokens_per_s " in l or " step_time_s " in l)


def test_memory_growth_fails_and_shrink_passes(dirs, capsys):
    base, cur, baselines = dirs
    gib = 2**30
    write_results(base, [{"peak_mem": 8 * gib}])
    accept(base, baselines)
    write_results(cur, [{"peak_mem": int(8.8 * gib)}])  # +10%
    assert run_compare(cur, baselines, "--check", "peak_mem:+5%") == 1
    write_results(cur, [{"peak_mem": 6 * gib}])
    assert run_compare(cur, baselines, "--check", "peak_mem:+5%") == 0


def test_absolute_check_for_eval_loss(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, [{"eval_loss": 1.50}])
    accept(base, baselines)
    write_results(cur, [{"eval_loss": 1.53}])  # +0.03 > 0.02, although only +2%
    capsys.readouterr()
    assert run_compare(cur, baselines, "--check", "eval_loss:+0.02") == 1
    line = next(l for l in capsys.readouterr().out.splitlines() if " eval_loss " in l)
    assert "REGRESSION" in line and "+0.03" in line and "+0.02" in line
    write_results(cur, [{"eval_loss": 1.515}])
    assert run_compare(cur, baselines, "--check", "eval_loss:+0.02") == 0
    write_results(cur, [{"eval_loss": 1.40}])  # lower loss is better
    assert run_compare(cur, baselines, "--check", "eval_loss:+0.02") == 0


def test_cross_machine_comparison_is_refused(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(1000))
    accept(base, baselines)
    write_results(cur, tps(1000), machine_id=OTHER_MACHINE)
    capsys.readouterr()
    code = main([str(cur), "--baseline", str(baseline_path(MACHINE, SUITE, baselines))])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and MACHINE in err and OTHER_MACHINE in err


def test_missing_baseline_hints_accept(dirs, capsys):
    _, cur, baselines = dirs
    write_results(cur, tps(1000))
    assert run_compare(cur, baselines) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--accept" in err and MACHINE in err


def test_corrupt_result_is_named_and_skipped(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(1000, 1010, 990))
    accept(base, baselines)
    write_results(cur, tps(1000, 1005, 995))
    corrupt = cur / SUITE / "broken" / "r0" / "result.json"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_text('{"status": "ok", "train": {"tokens_per')  # truncated mid-write
    capsys.readouterr()
    assert run_compare(cur, baselines) == 0
    captured = capsys.readouterr()
    assert str(corrupt) in captured.err and "skipped" in captured.err


def test_failed_runs_are_not_compared(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(1000))
    accept(base, baselines)
    write_results(cur, [{"tokens_per_s": 1000}, {"tokens_per_s": 10, "status": "failed"}])
    assert run_compare(cur, baselines) == 0


@pytest.mark.parametrize("check, named", [
    ("tokens_per_s=5%", "tokens_per_s=5%"),
    ("tokens_per_s:-5%%", "tokens_per_s:-5%%"),
    ("tokens_per_s:fast", "tokens_per_s:fast"),
    ("tokens_per_sec:-5%", "tokens_per_sec"),            # unknown metric
    ("tokens_per_s:+5%", "tokens_per_s:+5%"),             # sign contradicts higher_is_better
    ("eval_loss:-0.02", "eval_loss:-0.02"),
    ("eval_loss:+0.02 eval_loss:+0.1", "eval_loss:+0.1"),  # twice
])
def test_bad_check_exits_2_naming_it(dirs, capsys, check, named):
    base, _, baselines = dirs
    write_results(base, tps(1000))
    accept(base, baselines)
    capsys.readouterr()
    assert run_compare(base, baselines, "--check", check) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err


def test_parse_checks_directions_come_from_metric_data():
    checks = {c.metric: c for c in parse_checks("tokens_per_s:-5% peak_mem:+5% eval_loss:+0.02 mfu:3%")}
    assert checks["tokens_per_s"].relative and checks["tokens_per_s"].amount == 5
    assert not checks["eval_loss"].relative and checks["eval_loss"].amount == 0.02
    assert checks["mfu"].threshold == "-3%"  # unsigned: direction from METRICS
    for check in checks.values():
        assert check.higher_is_better == METRICS[check.metric].higher_is_better
    assert checks["tokens_per_s"].worsening(100, 80) == pytest.approx(20)
    assert checks["peak_mem"].worsening(100, 80) == pytest.approx(-20)
    defaults = parse_checks(DEFAULT_CHECKS)
    assert {"tokens_per_s", "peak_mem", "eval_loss"} <= {c.metric for c in defaults}


def test_bisecting_versions_each_compared_with_the_baseline(dirs, capsys):
    base, cur, baselines = dirs
    write_results(base, tps(1000, 1002, 998), version="1.15.0")
    accept(base, baselines)
    write_results(cur, tps(1000, 1001, 999), version="1.15.0")
    write_results(cur, tps(700, 701, 699), version="1.16.0")
    capsys.readouterr()
    assert run_compare(cur, baselines) == 1
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith(SUITE) and " tokens_per_s " in l]
    assert len(lines) == 2
    assert any("1.15.0 -> 1.16.0" in l and "REGRESSION" in l for l in lines)
    assert any("1.15.0 -> 1.16.0" not in l and " ok" in l for l in lines)
    # accepting results that mix versions of one framework at one point is refused
    assert accept(cur, baselines) == 2


def test_accept_merges_frameworks_and_replaces_their_own_entries(dirs):
    base, _, baselines = dirs
    write_results(base / "a", tps(1000), framework="trl")
    write_results(base / "b", tps(2000), framework="unsloth", version="2026.10.9")
    assert accept(base / "a", baselines) == 0
    assert accept(base / "b", baselines) == 0
    path = baseline_path(MACHINE, SUITE, baselines)
    assert [e["framework"] for e in load_baseline(path)["entries"]] == ["trl", "unsloth"]
    write_results(base / "c", tps(1100), framework="trl")
    assert accept(base / "c", baselines) == 0
    entries = {e["framework"]: e for e in load_baseline(path)["entries"]}
    assert entries["trl"]["metrics"]["tokens_per_s"] == [1100] and entries["unsloth"]["metrics"]["tokens_per_s"] == [2000]


def test_api_compare_without_cli():
    records = [Result.from_dict(make_record(tokens_per_s=v, repeat=i)) for i, v in enumerate((1000, 1010, 990))]
    baseline = build_baseline(records, suite=SUITE)
    worse = [Result.from_dict(make_record(tokens_per_s=v, repeat=i)) for i, v in enumerate((700, 705, 695))]
    result = compare(worse, baseline, parse_checks(DEFAULT_CHECKS))
    assert result.exit_code == 1
    assert {r.metric for r in result.regressions} >= {"tokens_per_s", "supervised_tokens_per_s", "step_time_s"}
    assert flatten(worse[0])["tokens_per_s"] == 700
    with pytest.raises(CompareError):
        build_baseline([Result.from_dict(make_record(status="failed"))], suite=SUITE)
    assert isinstance(parse_checks("eval_loss:+0.02")[0], Check)


def test_cli_dispatch_through_python_m_harness(dirs):
    base, cur, baselines = dirs
    write_results(base, tps(1000, 1010, 990))
    write_results(cur, tps(800, 805, 795))
    assert accept(base, baselines) == 0
    proc = subprocess.run([sys.executable, "-m", "harness", "compare", str(cur), "--baselines-dir", str(baselines)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "REGRESSION" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "harness", "compare", str(cur), "--check", "bogus"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "bogus" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_baseline_framework_without_current_result_fails_naming_it(dirs, capsys):
    """A framework in the baseline that has no current ok result (it failed, or was left out) exits 1 naming
    it: a comparison that silently shrinks to the frameworks that still run is no check."""
    base, cur, baselines = dirs
    write_results(base / "a", tps(1000), framework="trl")
    write_results(base / "b", tps(2000), framework="unsloth", version="2026.10.9")
    assert accept(base, baselines) == 0
    write_results(cur / "a", tps(1000), framework="trl")
    write_results(cur / "b", [{"status": "failed"}], framework="unsloth", version="2026.10.9")
    capsys.readouterr()
    assert main([str(cur), "--baselines-dir", str(baselines)]) == 1
    captured = capsys.readouterr()
    assert "MISSING: baseline unsloth 2026.10.9" in captured.out
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("error:") and "unsloth" in line and "trl" not in line
    assert main([str(cur), "--baselines-dir", str(baselines), "--allow-missing"]) == 0
    assert "note: baseline unsloth" in capsys.readouterr().out


def test_results_of_several_machines_name_a_folder_per_machine(tmp_path, capsys):
    write_results(tmp_path / "all" / "gpu", tps(1000))
    write_results(tmp_path / "all" / "laptop", tps(900), machine_id=OTHER_MACHINE)
    capsys.readouterr()
    code = main([str(tmp_path / "all"), "--baselines-dir", str(tmp_path / "baselines")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "gpu (" + MACHINE + ")" in err and "laptop (" + OTHER_MACHINE + ")" in err


def test_a_check_of_what_was_not_measured_says_so(dirs, capsys):
    """A CPU machine has no NVML peak: checking peak_mem alone is an error naming it, not 'no result matches';
    beside a measured check it is a note naming what was not checked."""
    base, cur, baselines = dirs
    write_results(base, [{"peak_mem": None}])
    write_results(cur, [{"peak_mem": None}])
    accept(base, baselines)
    capsys.readouterr()
    assert run_compare(cur, baselines, "--check", "peak_mem:+5%") == 2
    err = capsys.readouterr().err
    assert "peak_mem" in err and "measured neither" in err and "matches" not in err, err
    assert run_compare(cur, baselines, "--check", "tokens_per_s:-5% peak_mem:+5%") == 0
    out = capsys.readouterr().out
    assert "not checked: peak_mem" in out and " tokens_per_s " in out, out
