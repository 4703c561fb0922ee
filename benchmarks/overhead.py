"""Harness overhead: the same job under the harness and as a bare script, interleaved, per framework.

    python benchmarks/overhead.py [--framework NAME[,NAME...]] [--rounds 3] [--round K ...]
                                  [--experiment throughput_7b] [--out results/h200] [OVERRIDES...]

Default job: ``experiment=throughput_7b`` (the GPU-bound job). Round k runs, for each framework in turn,
the harness (worker, callbacks, 10 ms NVML sampler in the parent) as repeat k of the suite (``repeats=k+1``
into ``OUT``: the resume runs only repeat k, so after 3 rounds ``OUT/<suite>`` is an ordinary 3-repeat
result of the suite, its repeats interleaved with the bare runs and with the other frameworks) and then
the framework's bare script (``benchmarks/bare_<framework>.py``: the adapter's native arguments, no
callbacks, no sampler, no harness process) on the very same job.json. Both sides are measured the same
way over the same window: the timed steps' tokens over their wall time (the bare scripts time it with a
torch optimizer hook, no Trainer callback), and, beside it, tokens the Trainer saw / wall time of
``trainer.train()`` (which holds the warm-up: unsloth's compilation varies by 20 s between runs).

Each round is kept as ``OUT/overhead/<framework>/round-<k>.json`` (a round already there is skipped, so a
session can spread rounds over several calls); after every round ``overhead-<framework>.json`` is rewritten
from all rounds present, with the medians, their difference and the spread of the harness's own timed
tokens/s over the repeats. Exits 1 if a framework with all its rounds differs by more than 1%.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.atomic import atomic_write_json  # noqa: E402
from harness.launch.venvs import python_for  # noqa: E402
from harness.results.machine import environment  # noqa: E402
from harness.frameworks import registry  # noqa: E402
from harness.stats import relative_spread as _spread  # noqa: E402
from harness.records import run_files  # noqa: E402
from harness.results.load import load_records  # noqa: E402

TOLERANCE = 0.01


def bare_round(job_json: str) -> dict:
    fw = json.loads(Path(job_json).read_text())["framework"]  # the very version the harness round ran
    out = subprocess.run([python_for(fw["name"], fw["version"], use_current=False),
                          str(REPO / "benchmarks" / f"bare_{fw['name']}.py"), job_json],
                         cwd=REPO, check=True, capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _round_path(out: Path, framework: str, k: int) -> Path:
    return out / "overhead" / framework / f"round-{k}.json"


def harness_round(out: Path, framework: str, k: int, experiment: str, overrides: list[str]) -> dict:
    """Repeat k of the suite under the harness (earlier repeats already there are skipped by the resume)."""
    run = subprocess.run([sys.executable, "-m", "harness", "run", f"experiment={experiment}", f"framework={framework}",
                          f"results_dir={out}", f"repeats={k + 1}", "report=false", "keep_outputs=true", *overrides],
                         cwd=REPO)
    if run.returncode:  # the harness has printed its one-line error (bad experiment or override: exit 2)
        raise SystemExit(run.returncode)
    mine = [r for r in load_records([out]) if r.ok and r.framework.name == framework and r.repeat == k]
    if len(mine) != 1 or mine[0].train is None:
        raise SystemExit(f"error: expected one ok result of {framework} repeat {k} under {out}, found {len(mine)}")
    record, train = mine[0], mine[0].train
    return {"tokens": train.framework_tokens_seen, "train_call_s": train.train_call_s,
            "tokens_per_s": train.framework_tokens_seen / train.train_call_s,
            "harness_timed_tokens_per_s": train.tokens_per_s, "timed_tokens": train.timed_tokens,
            "timed_steps": [train.warmup_steps + 1, train.steps], "framework_version": record.framework.version,
            "sm_mhz_timed_mean": record.gpu_clocks.timed.sm_mhz_mean if record.gpu_clocks else None,
            "job": str(Path(record.source).parent / run_files.JOB)}


def bare_timed(harness: dict, bare: dict) -> float | None:
    """The bare run's tokens/s over the harness's timed window: the same steps hold the same batches (same
    data order and seed; tokens_match_framework and the equal whole-run token counts say so), so the
    harness's token count of those steps over the bare run's wall time of them (OptimizerStepClock)."""
    if not bare.get("window_s") or bare.get("window_steps") != harness.get("timed_steps") \
            or bare.get("tokens") != harness.get("tokens"):
        return None
    return harness["timed_tokens"] / bare["window_s"]


def summarize(out: Path, framework: str, planned: int, experiment: str, overrides: list[str]) -> dict:
    """overhead-<framework>.json from every round file present. The verdict compares the timed window
    (steady state: what the harness reports as tokens/s) where every round's bare run timed it, else the
    whole train() call (rounds recorded before the bare scripts timed the window)."""
    rounds = [json.loads(p.read_text()) for p in sorted((out / "overhead" / framework).glob("round-*.json"))]
    for r in rounds:
        r["bare"]["timed_tokens_per_s"] = bare_timed(r["harness"], r["bare"])
    med_h = statistics.median(r["harness"]["tokens_per_s"] for r in rounds)
    med_b = statistics.median(r["bare"]["tokens_per_s"] for r in rounds)
    timed_h = [r["harness"]["harness_timed_tokens_per_s"] for r in rounds]
    timed_b = [r["bare"]["timed_tokens_per_s"] for r in rounds]
    window = all(v is not None for v in timed_b)
    med_th = statistics.median(timed_h)
    med_tb = statistics.median(timed_b) if window else None
    diff_call = med_h / med_b - 1
    diff_timed = med_th / med_tb - 1 if window else None
    diff = diff_timed if window else diff_call
    complete = len(rounds) >= planned
    summary = {"framework": framework, "framework_version": rounds[0]["harness"]["framework_version"],
               "rounds": rounds, "rounds_planned": planned, "complete": complete,
               "measure": "timed_window" if window else "train_call",
               "median_harness_timed_tokens_per_s": med_th, "median_bare_timed_tokens_per_s": med_tb,
               "timed_relative_difference": diff_timed,
               "median_harness_tokens_per_s": med_h, "median_bare_tokens_per_s": med_b,
               "train_call_relative_difference": diff_call,
               "relative_difference": diff, "tolerance": TOLERANCE,
               "passed": (abs(diff) <= TOLERANCE) if complete else None,
               "harness_timed_tokens_per_s": timed_h, "harness_timed_spread": _spread(timed_h),
               "env": environment(), "experiment": experiment, "overrides": overrides}
    atomic_write_json(out / "overhead" / framework / f"overhead-{framework}.json", summary)
    state = ("within" if summary["passed"] else "OUTSIDE") if complete else f"{len(rounds)}/{planned} rounds so far,"
    h, b = (med_th, med_tb) if window else (med_h, med_b)
    print(f"{framework}: median harness {h:.0f} tok/s, bare {b:.0f} tok/s ({summary['measure']}), difference "
          f"{diff:+.2%} ({state} {TOLERANCE:.0%})", flush=True)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", default=",".join(registry.compared()),
                        help="one framework or a comma list, interleaved per round (default: every compared one)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds in all (the summary's median is over these)")
    parser.add_argument("--round", type=int, action="append", dest="only",
                        help="run only this round (repeatable); default: every round not yet on disk")
    parser.add_argument("--experiment", default="throughput_7b")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "overhead")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    frameworks = [f for f in args.framework.split(",") if f]
    unknown = [f for f in frameworks if f not in registry.names()]
    if unknown or not frameworks:
        print(f"error: --framework {args.framework}: Unknown framework {unknown[0] if unknown else ''!r}. "
              f"Available: {', '.join(registry.names())}", file=sys.stderr)
        return 2
    ks = sorted(set(args.only)) if args.only else list(range(args.rounds))
    bad = [k for k in ks if not 0 <= k < args.rounds]
    if bad:
        print(f"error: --round {bad[0]}: rounds are 0..{args.rounds - 1} (--rounds {args.rounds})", file=sys.stderr)
        return 2
    for k in ks:
        for framework in frameworks:
            path = _round_path(args.out, framework, k)
            if path.is_file():
                print(f"round {k} of {framework}: already measured ({path})", flush=True)
                continue
            h = harness_round(args.out, framework, k, args.experiment, args.overrides)
            b = bare_round(h["job"])
            for leftover in ("framework_output", "bare_output", "data"):  # large, and not results
                shutil.rmtree(Path(h["job"]).parent / leftover, ignore_errors=True)
            atomic_write_json(path, {"round": k, "harness": h, "bare": b})
            print(f"round {k} of {framework}: harness {h['tokens_per_s']:.0f} tok/s, bare {b['tokens_per_s']:.0f} tok/s",
                  flush=True)
            summarize(args.out, framework, args.rounds, args.experiment, args.overrides)
    failed = []
    for framework in frameworks:
        if (args.out / "overhead" / framework).is_dir() and any((args.out / "overhead" / framework).glob("round-*.json")):
            summary = summarize(args.out, framework, args.rounds, args.experiment, args.overrides)
            if summary["passed"] is False:
                failed.append(framework)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
