"""Per repeat: tokens/s beside the host's own speed, to tell a host-side repeat spread from a GPU-side one.

    python benchmarks/host_speed_summary.py RESULTS_DIR

"host work" is the timed steps' time outside ``on_step_begin``..``on_step_end``: the Trainer fetching and
collating the next batch, pure Python on the host, the same batches in every repeat. When it differs between
repeats by far more than tokens/s does, the processes ran at different host speeds; a framework whose step
waits on the host (a fixed part of its step, syncs inside the step) inherits part of that.

"per new length" is a least-squares fit of each timed step's time to a fixed part, its padded tokens and
whether its padded length is one the run has not seen before (step log ``max_seq_len``): the cost of a step
that brings a new shape. On the H200 that is where cuDNN builds an attention plan on the host (docs/explain.md,
section 3); a fit, not a measurement of the builds themselves (the time profile measures those).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from harness.records import Result  # noqa: E402
from harness.report.repeat_spread import repeat_row  # noqa: E402
from harness.results.load import load_records  # noqa: E402


def new_length_fit(run: Result) -> tuple[float, float, int] | None:
    """(the fit's fixed seconds a step, the extra seconds of a step with a new padded length, how many timed steps
    had one), or None where the step log lacks the shapes or the timed steps cannot separate the two."""
    assert run.train is not None
    seen: set[int] = set()
    rows, times = [], []
    for step in run.train.log:
        length = step.get("max_seq_len")
        if length is None or step.get("padded_tokens") is None:
            return None
        new = length not in seen
        seen.add(length)
        if step["step"] > (run.train.warmup_steps or 0):
            rows.append([1.0, step["padded_tokens"] / 1e4, 1.0 if new else 0.0])
            times.append(step["time_s"])
    design = np.array(rows)
    if len(rows) < 4 or not 0 < design[:, 2].sum() < len(rows):
        return None
    fixed, _, per_new = np.linalg.lstsq(design, np.array(times), rcond=None)[0]
    return float(fixed), float(per_new), int(design[:, 2].sum())


def main(root: str) -> int:
    if not Path(root).is_dir():
        print(f"error: {root}: not a results folder", file=sys.stderr)
        return 2
    for run in sorted(load_records([Path(root)]), key=lambda r: (r.framework.name, r.repeat or 0)):
        if not run.ok or run.train is None:
            continue
        row = repeat_row(run)  # the report's own reading of the timed steps (harness/report/repeat_spread.py)
        host = "-" if row["host_work_s"] is None else f"{row['host_work_s']:.3f} s"
        gc_s = "-" if row["gc_s"] is None else f"{row['gc_s']:.3f} s"
        fit = new_length_fit(run)
        new = "-" if fit is None else f"{fit[1]:.3f} s in {fit[2]} steps"
        print(f"{run.framework.name} r{run.repeat or 0}: {run.train.tokens_per_s:,.0f} tok/s, "
              f"host work {host}, gc {gc_s} over {run.train.timed_steps} timed steps, per new length {new}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python benchmarks/host_speed_summary.py RESULTS_DIR", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(main(sys.argv[1]))
