"""Why the repeats of one framework differ: each repeat's tokens/s beside its GPU clock and the two parts
of its step time.

Every repeat of a sweep point trains on the same batches and is timed over the same steps (the timing
window is fixed after the warm-up), so a difference between repeats is the machine's or the framework's,
not the data's. Each timed step's time splits into a fixed part (launches, Python, the optimizer: the
same whatever the batch holds) and a part per padded token (the GPU's arithmetic), by the robust line
the warm-up check fits (:func:`harness.stats.steady_line`). The SM clock per step comes from
NVML (``gpu_clocks``). Then:

- the clocks differ about as much as the speed: the GPU's power management set the spread;
- same clocks, the fixed part differs: the host side (launch and Python work per step) set it;
- same clocks, the per-token part differs: the GPU work itself differed (another kernel choice).
"""
from __future__ import annotations

from typing import Any

from harness.stats import relative_spread as _spread, steady_line
from harness.records import Result
from harness.report.tables import run_label

# Below this, a part "moved as much as the speed": half the spread of tokens/s, so it explains most of it.
EXPLAINS = 0.5
# The repeat spread the GPU suites aim for (issue 13): below it the cause is noted, not a finding.
SMALL = 0.01
# One step's excess must be at least this share of the window to be named a stall (0.2%: 0.06 s of a 28 s window).
STALL_SHARE = 0.002
# The host work between steps must differ this many times more than tokens/s to be named as the cause.
HOST_SPEED_FACTOR = 3.0


def _timed_steps(run: Result) -> list[dict[str, Any]]:
    if run.train is None:
        return []
    start = int(run.train.warmup_steps or 0)
    return [s for s in run.train.log or [] if s.get("step", 0) > start and s.get("time_s")]


def repeat_row(run: Result) -> dict[str, Any]:
    """One repeat: tokens/s, mean SM clock and power-capped share of the timed window, and its step line."""
    steps = _timed_steps(run)
    line = steady_line([float(s.get("padded_tokens") or s["tokens"]) for s in steps],
                       [float(s["time_s"]) for s in steps]) if len(steps) >= 2 else None
    timed = run.gpu_clocks.timed if run.gpu_clocks is not None else None
    mallocs = [s.get("cuda_mallocs") for s in steps]
    gc_s = [s.get("gc_s") for s in steps]
    gen2 = [s.get("gc_gen2") for s in steps]
    return {"repeat": run.repeat or 0, "tokens_per_s": run.train.tokens_per_s if run.train else None,
            "sm_mhz": timed.sm_mhz_mean if timed else None, "power_capped": timed.power_capped_share if timed else None,
            "temp_mean_c": timed.temperature_c_mean if timed else None,
            "fixed_s": line[0] if line else None, "per_token_us": line[1] * 1e6 if line else None,
            # recorded from session 5 on: the allocator's trips to the driver in the timed steps
            "cuda_mallocs": sum(mallocs) if steps and None not in mallocs else None,
            # recorded from session 6 on (host_pauses.py): time in Python's collector, full collections
            "gc_s": sum(gc_s) if steps and None not in gc_s else None,
            "gc_gen2": sum(gen2) if steps and None not in gen2 else None,
            "timed_s": sum(float(s["time_s"]) for s in steps),
            # the Trainer's work between two steps (fetching and collating the next batch): host Python only,
            # the same batches in every repeat, so it times the host's own speed in that process
            "host_work_s": sum(float(s["time_s"]) - float(s["compute_s"]) for s in steps)
            if steps and all(s.get("compute_s") is not None for s in steps) else None}


def _temperatures(rows: list[dict[str, Any]]) -> str:
    """The GPU's mean temperature over each repeat's timed window, fastest first, where NVML gave one."""
    if any(r.get("temp_mean_c") is None for r in rows):
        return ""
    by_speed = sorted(rows, key=lambda r: -(r["tokens_per_s"] or 0))
    return " (GPU at " + ", ".join(f"{r['temp_mean_c']:.0f}" for r in by_speed) + " °C on average, fastest repeat first)"


def _cause(tps: float | None, clock: float | None, fixed: float | None, per_token: float | None,
           fixed_share: float | None, temperatures: str = "") -> str:
    if not tps:
        return "no spread"
    if clock is not None and clock >= EXPLAINS * tps:
        return f"the GPU clock moved {clock:.1%}: the spread is the GPU's power management{temperatures}"
    same = f"same clocks ({clock:.1%})" if clock is not None else "no clock readings"
    # a part's own spread, weighted by its share of the step time, against the speed's spread
    fixed_effect = fixed * fixed_share if fixed is not None and fixed_share is not None else None
    token_effect = per_token * (1 - fixed_share) if per_token is not None and fixed_share is not None else None
    if fixed_effect is not None and token_effect is not None:
        if fixed_effect >= token_effect:
            return (f"{same}; the fixed part of a step (launches, Python) moved {fixed:.1%}: the spread is on "
                    "the host side")
        return f"{same}; the per-token part moved {per_token:.1%}: the GPU work itself differed"
    return same


def spread_section(runs: list[Result]) -> list[dict[str, Any]]:
    """Per framework with two or more ok repeats: its repeats and the one-line cause of their spread."""
    groups: dict[str, list[Result]] = {}
    for run in runs:
        if run.ok and run.train is not None and run.train.tokens_per_s:
            groups.setdefault(run_label(run), []).append(run)
    out = []
    for label, group in sorted(groups.items()):
        if len(group) < 2:
            continue
        rows = [repeat_row(r) for r in sorted(group, key=lambda r: r.repeat or 0)]
        tps = _spread([r["tokens_per_s"] for r in rows])
        clock = _spread([r["sm_mhz"] for r in rows]) if all(r["sm_mhz"] for r in rows) else None
        fixed = _spread([r["fixed_s"] for r in rows]) if all(r["fixed_s"] is not None for r in rows) else None
        per_token = _spread([r["per_token_us"] for r in rows]) if all(r["per_token_us"] for r in rows) else None
        share = _fixed_share(group[0], rows[0])
        starts = [int(r.train.warmup_steps or 0) for r in group]
        if len(set(starts)) > 1:  # results recorded while the settle rule still moved the window
            cause = (f"timed over different steps (after steps {', '.join(map(str, starts))}): different batches, "
                     "so not comparable (recorded before the timing window was fixed)")
        else:
            cause = (_gc_cause(rows) or _one_step_cause(group) or _host_speed_cause(rows, tps, clock)
                     or _cause(tps, clock, fixed, per_token, share, _temperatures(rows)))
            if tps is not None and tps <= SMALL:
                cause = f"within {SMALL:.0%}; {cause}"
        out.append({"label": label, "repeats": rows, "spread": tps, "clock_spread": clock, "cause": cause})
    return out


def _host_speed_cause(rows: list[dict[str, Any]], tps: float | None, clock: float | None) -> str | None:
    """The host's own speed, when the same host work between steps differed far more than tokens/s did and the
    slower the host, the slower the repeat (session 6: trl, 12 repeats, r = 0.97): the step waits on the host."""
    if not tps or len(rows) < 3 or any(r["host_work_s"] is None for r in rows):
        return None
    if clock is not None and clock >= EXPLAINS * tps:
        return None  # the GPU clock explains it (see _cause)
    host = _spread([r["host_work_s"] for r in rows])
    by_host = [r["repeat"] for r in sorted(rows, key=lambda r: r["host_work_s"])]
    by_speed = [r["repeat"] for r in sorted(rows, key=lambda r: -r["tokens_per_s"])]
    if host is None or host < HOST_SPEED_FACTOR * tps or by_host != by_speed:
        return None
    return (f"the host's speed: the same host work between steps took {host:.0%} longer in the slowest repeat, "
            "in the order of the speed, at equal clocks (the step waits on the host)")


def _gc_cause(rows: list[dict[str, Any]]) -> str | None:
    """The collector, when the difference of its time between repeats is most of the difference of their timed
    windows (same steps, same batches: so it is what made the slowest repeat slow)."""
    if any(r["gc_s"] is None for r in rows):
        return None
    slow, fast = max(rows, key=lambda r: r["timed_s"]), min(rows, key=lambda r: r["timed_s"])
    window, collector = slow["timed_s"] - fast["timed_s"], slow["gc_s"] - fast["gc_s"]
    if window <= 0 or collector < EXPLAINS * window:
        return None
    return (f"Python's garbage collector: {collector:.2f} s of the slowest repeat's {window:.2f} s more "
            f"({slow['gc_gen2']} full collections against {fast['gc_gen2']}), a host pause the GPU waited out")


def _one_step_cause(group: list[Result]) -> str | None:
    """One step, when the slowest repeat lost most of its time against the fastest in a single step of the same
    batch (session 9: unsloth's step 45, 0.39 s of 0.56 s): a one-off stall, not a slower process. Says how far
    apart the repeats are without it, each repeat's step timed as the fastest repeat's."""
    if len(group) < 2 or any(r.train is None or not r.train.timed_tokens for r in group):
        return None
    logs = [{int(s["step"]): s for s in _timed_steps(r)} for r in group]
    times = [{n: float(s["time_s"]) for n, s in log.items()} for log in logs]
    if len({frozenset(t) for t in times}) != 1 or not times[0]:
        return None  # not timed over the same steps
    windows = [sum(t.values()) for t in times]
    slow, fast = windows.index(max(windows)), windows.index(min(windows))
    lost = windows[slow] - windows[fast]
    if lost <= 0:
        return None
    step = max(times[slow], key=lambda n: times[slow][n] - times[fast][n])
    excess = times[slow][step] - times[fast][step]
    if excess < EXPLAINS * lost or excess < STALL_SHARE * windows[slow]:
        return None  # most of the difference, and more than a few milliseconds' noise in one step
    best = min(t[step] for t in times)
    logged = logs[slow][step]
    compiled = (f"; torch.compile compiled {logged['compiles']} graph(s) in it ({logged['compile_s']:.2f} s)"
                if logged.get("compiles") else "; no compilation in it" if logged.get("compiles") == 0 else "")
    without = _spread([r.train.timed_tokens / (w - t[step] + best) for r, w, t in zip(group, windows, times)])
    return (f"one step: step {step} took {excess:.2f} s longer in r{group[slow].repeat or 0} than in "
            f"r{group[fast].repeat or 0} ({times[slow][step]:.2f} vs {times[fast][step]:.2f} s, the same batch), "
            f"{f'{excess / lost:.0%} of' if excess <= 1.005 * lost else 'more than all of'} the {lost:.2f} s the slowest "
            f"repeat lost{compiled}; without it the "
            f"repeats are {without:.1%} apart")


def _fixed_share(run: Result, row: dict[str, Any]) -> float | None:
    """The fixed part's share of the timed window's time (steps x fixed / window time)."""
    steps = _timed_steps(run)
    total = sum(float(s["time_s"]) for s in steps)
    if row["fixed_s"] is None or not total:
        return None
    return min(1.0, max(0.0, row["fixed_s"] * len(steps) / total))
