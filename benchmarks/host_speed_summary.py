"""Per repeat: tokens/s beside the host's own speed, to tell a host-side repeat spread from a GPU-side one.

    python benchmarks/host_speed_summary.py RESULTS_DIR

"host work" is the timed steps' time outside ``on_step_begin``..``on_step_end``: the Trainer fetching and
collating the next batch, pure Python on the host, the same batches in every repeat. When it differs between
repeats by far more than tokens/s does, the processes ran at different host speeds; a framework whose step
waits on the host (a fixed part of its step, syncs inside the step) inherits part of that.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.results.load import load_records  # noqa: E402


def main(root: str) -> None:
    for run in sorted(load_records([Path(root)]), key=lambda r: (r.framework.name, r.repeat or 0)):
        if not run.ok or run.train is None:
            continue
        start = int(run.train.warmup_steps or 0)
        timed = [s for s in run.train.log or [] if s.get("step", 0) > start]
        host = sum(float(s["time_s"]) - float(s.get("compute_s") or s["time_s"]) for s in timed)
        gc_s = sum(float(s.get("gc_s") or 0.0) for s in timed)
        print(f"{run.framework.name} r{run.repeat or 0}: {run.train.tokens_per_s:,.0f} tok/s, "
              f"host work {host:.3f} s, gc {gc_s:.3f} s over {len(timed)} timed steps")


if __name__ == "__main__":
    main(sys.argv[1])
