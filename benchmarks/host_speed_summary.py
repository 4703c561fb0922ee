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

from harness.report.repeat_spread import repeat_row  # noqa: E402
from harness.results.load import load_records  # noqa: E402


def main(root: str) -> None:
    for run in sorted(load_records([Path(root)]), key=lambda r: (r.framework.name, r.repeat or 0)):
        if not run.ok or run.train is None:
            continue
        row = repeat_row(run)  # the report's own reading of the timed steps (harness/report/repeat_spread.py)
        host = "-" if row["host_work_s"] is None else f"{row['host_work_s']:.3f} s"
        gc_s = "-" if row["gc_s"] is None else f"{row['gc_s']:.3f} s"
        print(f"{run.framework.name} r{run.repeat or 0}: {run.train.tokens_per_s:,.0f} tok/s, "
              f"host work {host}, gc {gc_s} over {run.train.timed_steps} timed steps")

if __name__ == "__main__":
    main(sys.argv[1])
