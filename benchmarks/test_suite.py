"""The standard suite per framework, through the real CLI, checked against this machine's committed baseline.

    pytest benchmarks/                                    # on the GPU machine: suite seed_0.5b, 3 frameworks
    pytest benchmarks/ --benchmark-json=bench.json        # pytest-benchmark's record, extra_info included
    HARNESS_BENCH_ALLOW_CPU=1 pytest benchmarks/          # anywhere: suite tiny_cpu or cpu_smoke (first found)

Each test runs ``python -m harness run experiment=SUITE framework=FW results_dir=RESULTS report=false force=true``
in a subprocess (the wall time is pytest-benchmark's one round), stores the headline figures in
``benchmark.extra_info`` and fails on a regression against ``benchmarks/baselines/<machine_id>/<suite>.json``
(harness/regression's checks and noise rule), or when a run did not succeed (``unavailable``, e.g. unsloth
without CUDA, is a skip). Without a baseline for this machine it passes with a warning naming the accept
command.

Environment: HARNESS_BENCH_SUITE (experiment name; ``none`` runs the default config), HARNESS_BENCH_FRAMEWORKS
(comma list, default: the frameworks a plain -m compares), HARNESS_BENCH_ALLOW_CPU=1 (do not mark ``gpu``),
HARNESS_BENCH_RESULTS (default results/bench), HARNESS_BENCH_OVERRIDES (extra Hydra overrides, shell-quoted),
HARNESS_BENCH_CHECKS (default harness.regression.thresholds.DEFAULT_CHECKS), HARNESS_BENCH_ACCEPT=1 (write the results as
the baseline instead of checking), HARNESS_BENCH_TIMEOUT (seconds per framework, default 7200),
HARNESS_BASELINES_DIR (default benchmarks/baselines).
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from harness.regression.baselines import (BASELINES_DIR, BASELINES_ENV, accept, baseline_path, load_baseline,
                                         require_same_machine)
from harness.regression.thresholds import DEFAULT_CHECKS, parse_checks
from harness.regression.verdicts import compare
from harness.regression.grouping import machine_of, metric_values, ok_records
from harness.frameworks import registry
from harness.stats import summarize
from harness.records import Result
from harness.results.load import find_result_files, load_records

REPO_ROOT = Path(__file__).resolve().parents[1]
ALLOW_CPU = os.environ.get("HARNESS_BENCH_ALLOW_CPU") == "1"
# Default: the frameworks a plain -m compares (harness/frameworks/registry.py).
FRAMEWORKS = [f.strip() for f in (os.environ.get("HARNESS_BENCH_FRAMEWORKS") or ",".join(registry.compared())).split(",")
              if f.strip()]
RESULTS_DIR = Path(os.environ.get("HARNESS_BENCH_RESULTS") or REPO_ROOT / "results" / "bench")
OVERRIDES = shlex.split(os.environ.get("HARNESS_BENCH_OVERRIDES", ""))
CHECKS = os.environ.get("HARNESS_BENCH_CHECKS") or DEFAULT_CHECKS
TIMEOUT_S = int(os.environ.get("HARNESS_BENCH_TIMEOUT", "7200"))
ACCEPT = os.environ.get("HARNESS_BENCH_ACCEPT") == "1"
CPU_SUITES = ("tiny_cpu", "cpu_smoke")  # with HARNESS_BENCH_ALLOW_CPU=1, the first that exists
EXTRA_INFO = ("tokens_per_s", "supervised_tokens_per_s", "peak_mem", "torch_peak_reserved", "eval_loss", "step_time_s")

pytestmark = [pytest.mark.bench, pytest.mark.timeout(TIMEOUT_S + 300)] + ([] if ALLOW_CPU else [pytest.mark.gpu])


def suite_name() -> str | None:
    """The experiment to run; None runs the default config (tiny model) without an experiment."""
    chosen = os.environ.get("HARNESS_BENCH_SUITE")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "none") else chosen.strip()
    if not ALLOW_CPU:
        return "seed_0.5b"
    for candidate in CPU_SUITES:
        if (REPO_ROOT / "conf" / "experiment" / f"{candidate}.yaml").is_file():
            return candidate
    return None


def baselines_root() -> Path:
    return Path(os.environ.get(BASELINES_ENV) or REPO_ROOT / BASELINES_DIR)


def harness_command(framework: str, suite: str | None) -> list[str]:
    experiment = [f"experiment={suite}"] if suite else []
    return [sys.executable, "-m", "harness", "run", *experiment, f"framework={framework}",
            f"results_dir={RESULTS_DIR}", "report=false", "force=true", *OVERRIDES]


def records_since(started: float, framework: str) -> list[Result]:
    """Results this test's run wrote (result.json files modified since it began) for ``framework``."""
    fresh = [p for p in find_result_files([RESULTS_DIR]) if p.stat().st_mtime >= started - 1]
    return [r for r in load_records(fresh) if r.framework.name == framework]


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join((text or "").splitlines()[-lines:])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_suite(benchmark, framework: str) -> None:
    suite = suite_name()
    if suite and not (REPO_ROOT / "conf" / "experiment" / f"{suite}.yaml").is_file():
        pytest.fail(f"conf/experiment/{suite}.yaml does not exist (HARNESS_BENCH_SUITE chooses another)")
    command = harness_command(framework, suite)

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT_S)

    started = time.time()
    proc = benchmark.pedantic(run, rounds=1, iterations=1)
    records = records_since(started, framework)
    output = _tail(proc.stdout + "\n" + proc.stderr)
    if not records:
        pytest.fail(f"{shlex.join(command)} wrote no result (exit {proc.returncode}):\n{output}")

    statuses = sorted({str(r.status) for r in records})
    benchmark.extra_info.update({
        "status": statuses[0] if len(statuses) == 1 else ",".join(statuses),
        "suite": records[0].suite, "framework": framework,
        "version": records[0].framework.version,
        "machine_id": records[0].env.machine_id,
        "repeats": len(records), "exit_code": proc.returncode, "command": shlex.join(command),
    })
    ok = ok_records(records)
    for metric in EXTRA_INFO:
        benchmark.extra_info[metric] = summarize(metric_values(ok, metric))["median"]

    not_ok = [r for r in records if not r.ok]
    unavailable = [r for r in not_ok if r.status == "unavailable"]
    if unavailable and len(unavailable) == len(records):
        pytest.skip(f"{framework} unavailable here: {unavailable[0].reason}")
    if not_ok:
        first = not_ok[0]
        pytest.fail(f"{framework}: {len(not_ok)}/{len(records)} run(s) did not succeed: {first.status}: "
                    f"{first.reason}\n{_tail(first.log_tail or '')}\n{first.run_dir}")

    machine = machine_of(ok)
    suite_of_results = str(ok[0].suite)
    path = baseline_path(machine, suite_of_results, baselines_root())
    if ACCEPT:
        accept(ok, path, suite=suite_of_results, command="HARNESS_BENCH_ACCEPT=1 pytest benchmarks/")
        benchmark.extra_info["baseline"] = f"accepted into {path}"
        return
    accept_hint = f"python -m harness compare {RESULTS_DIR} --suite {suite_of_results} --accept"
    if not path.is_file():
        warnings.warn(f"no baseline for machine {machine}, suite {suite_of_results} at {path}: nothing checked "
                      f"(accept these results with: {accept_hint})")
        benchmark.extra_info["baseline"] = "none"
        return
    baseline = load_baseline(path)
    require_same_machine(machine, baseline, path)
    result = compare(ok, baseline, parse_checks(CHECKS))
    benchmark.extra_info["baseline"] = str(path)
    benchmark.extra_info["verdicts"] = {row.metric: row.verdict for row in result.rows}
    if not result.rows:
        warnings.warn(f"the baseline {path} has no entry for {framework} at this point: nothing checked "
                      f"(add it with: {accept_hint})")
        return
    if result.regressions:
        pytest.fail(f"{framework}: regression against {path}:\n{result.table()}\n"
                    f"(if intended, accept with: {accept_hint})")
