"""Harness overhead: the same job under the harness and as a bare script, interleaved, per framework.

    python benchmarks/overhead.py [--framework trl|unsloth|llamafactory] [--rounds 3] [--experiment throughput_7b]
                                  [--out results/overhead] [OVERRIDES...]

Default job: ``experiment=throughput_7b`` (the GPU-bound job). Each round runs the harness (worker, callbacks,
10 ms NVML sampler in the parent) and then the framework's bare script (``benchmarks/bare_<framework>.py``: the
adapter's native arguments, no callbacks, no sampler, no harness process) on the very same job.json. Both sides
are measured the same way: tokens the Trainer saw / wall time of ``trainer.train()``. Writes
``OUT/<framework>/overhead-<framework>.json`` with every round and the medians; exits 1 if the medians
differ by more than 1%.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.atomic import atomic_write_json  # noqa: E402
from harness.envs import python_for  # noqa: E402
from harness.environment import environment  # noqa: E402
from harness.results import load_results  # noqa: E402

TOLERANCE = 0.01


FRAMEWORKS = ("trl", "unsloth", "llamafactory")


def harness_round(out: Path, framework: str, experiment: str, overrides: list[str]) -> dict:
    run = subprocess.run([sys.executable, "-m", "harness", "run", f"experiment={experiment}", f"framework={framework}",
                          f"results_dir={out}", "report=false", "force=true", "keep_outputs=true", *overrides], cwd=REPO)
    if run.returncode:  # the harness has printed its one-line error (bad experiment or override: exit 2)
        raise SystemExit(run.returncode)
    (record,) = [r for r in load_results([out]) if r["status"] == "ok"]
    train = record["train"]
    return {"tokens": train["framework_tokens_seen"], "train_call_s": train["train_call_s"],
            "tokens_per_s": train["framework_tokens_seen"] / train["train_call_s"],
            "harness_timed_tokens_per_s": train["tokens_per_s"], "framework_version": record["framework"]["version"],
            "job": str(Path(record["_source"]).parent / "job.json")}


def bare_round(job_json: str) -> dict:
    fw = json.loads(Path(job_json).read_text())["framework"]  # the very version the harness round ran
    out = subprocess.run([python_for(fw["name"], fw["version"], use_current=False),
                          str(REPO / "benchmarks" / f"bare_{fw['name']}.py"), job_json],
                         cwd=REPO, check=True, capture_output=True, text=True,
                         env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", choices=FRAMEWORKS, default="trl")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--experiment", default="throughput_7b")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "overhead")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    rounds = []
    out = args.out / args.framework
    for k in range(args.rounds):
        h = harness_round(out / f"harness-r{k}", args.framework, args.experiment, args.overrides)
        b = bare_round(h["job"])
        rounds.append({"round": k, "harness": h, "bare": b})
        print(f"round {k}: harness {h['tokens_per_s']:.0f} tok/s, bare {b['tokens_per_s']:.0f} tok/s", flush=True)
    med_h = statistics.median(r["harness"]["tokens_per_s"] for r in rounds)
    med_b = statistics.median(r["bare"]["tokens_per_s"] for r in rounds)
    diff = med_h / med_b - 1
    summary = {"framework": args.framework, "framework_version": rounds[0]["harness"]["framework_version"],
               "rounds": rounds, "median_harness_tokens_per_s": med_h, "median_bare_tokens_per_s": med_b,
               "relative_difference": diff, "tolerance": TOLERANCE, "passed": abs(diff) <= TOLERANCE,
               "env": environment(), "experiment": args.experiment, "overrides": args.overrides}
    atomic_write_json(out / f"overhead-{args.framework}.json", summary)
    print(f"{args.framework}: median harness {med_h:.0f} tok/s, bare {med_b:.0f} tok/s, difference {diff:+.2%} "
          f"({'within' if summary['passed'] else 'OUTSIDE'} {TOLERANCE:.0%})")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
