"""The report's repeat-spread table (harness/report/repeat_spread.py) on hand-built repeats whose cause is known."""
from __future__ import annotations

import pytest

from harness.records import Result
from harness.report.repeat_spread import spread_section


def _run(repeat: int, fixed: float, per_token: float, mhz: float | None, warmup: int = 2) -> dict:
    widths = [1000, 3000, 2000, 4000, 1500, 2500, 3500, 1200, 2800, 3900]
    log = [{"step": i + 1, "tokens": w // 2, "padded_tokens": w, "time_s": fixed + per_token * w}
           for i, w in enumerate(widths)]
    timed = [s for s in log if s["step"] > warmup]
    tps = sum(s["tokens"] for s in timed) / sum(s["time_s"] for s in timed)
    return Result.from_dict({"status": "ok", "repeat": repeat, "framework": {"name": "trl", "version": "1.16.0"},
                             "train": {"tokens_per_s": tps, "warmup_steps": warmup, "log": log},
                             "gpu_clocks": {"timed": {"sm_mhz_mean": mhz, "power_capped_share": 1.0}} if mhz else None})


def test_fixed_part_moving_at_equal_clocks_is_the_host_side():
    (g,) = spread_section([_run(0, 0.25, 1e-4, 1900), _run(1, 0.30, 1e-4, 1901)])
    assert g["repeats"][0]["fixed_s"] == pytest.approx(0.25) and g["repeats"][1]["per_token_us"] == pytest.approx(100)
    assert g["spread"] > 0.01 and "host side" in g["cause"] and "same clocks (0.1%)" in g["cause"]


def test_clock_moving_as_much_as_the_speed_is_the_gpu():
    # the per-token part slows by 5% because the clock fell by 5%
    (g,) = spread_section([_run(0, 0.1, 1.00e-4, 1900), _run(1, 0.1, 1.05e-4, 1805)])
    assert "GPU clock moved" in g["cause"] and "power management" in g["cause"] and "°C" not in g["cause"]
    hot, cool = _run(0, 0.1, 1.05e-4, 1805), _run(1, 0.1, 1.00e-4, 1900)
    hot.gpu_clocks.timed.temperature_c_mean, cool.gpu_clocks.timed.temperature_c_mean = 63.4, 55.6
    (g,) = spread_section([hot, cool])
    assert g["cause"].endswith("(GPU at 56, 63 °C on average, fastest repeat first)")


def test_per_token_part_moving_at_equal_clocks_is_the_gpu_work():
    (g,) = spread_section([_run(0, 0.1, 1.00e-4, 1900), _run(1, 0.1, 1.06e-4, 1900)])
    assert "per-token part moved" in g["cause"]


def test_repeats_timed_over_different_steps_are_named_not_explained():
    (g,) = spread_section([_run(0, 0.25, 1e-4, None, warmup=2), _run(1, 0.25, 1e-4, None, warmup=5)])
    assert "different steps (after steps 2, 5)" in g["cause"]


def test_single_runs_and_failures_give_no_row():
    assert spread_section([_run(0, 0.25, 1e-4, 1900)]) == []
    failed = _run(1, 0.25, 1e-4, 1900)
    failed.status = "crashed"
    assert spread_section([_run(0, 0.25, 1e-4, 1900), failed]) == []


def test_driver_allocations_summed_over_the_timed_steps_only():
    run = _run(0, 0.25, 1e-4, 1900)
    for s in run.train.log:  # the warm-up steps (1, 2) allocate a lot
        s["cuda_mallocs"] = 50 if s["step"] <= 2 else 1
    (g,) = spread_section([run, _run(1, 0.25, 1e-4, 1900)])
    first, older = g["repeats"]
    assert first["cuda_mallocs"] == 8
    assert older["cuda_mallocs"] is None  # results recorded before session 5


def test_collector_time_that_makes_up_the_slower_window_is_named():
    fast, slow = _run(0, 0.25, 1e-4, 1900), _run(1, 0.25, 1e-4, 1900)
    for run, pause in ((fast, 0.0), (slow, 0.2)):
        for s in run.train.log:
            s["gc_s"], s["gc_gen2"] = 0.001, 0
        step = run.train.log[5]  # a timed step: the slow repeat spent 0.2 s more there, all of it collecting
        step["time_s"] += pause
        step["gc_s"] += pause
        step["gc_gen2"] = 1 if pause else 0
    slow.train.tokens_per_s *= sum(s["time_s"] for s in fast.train.log[2:]) / sum(s["time_s"] for s in slow.train.log[2:])
    (g,) = spread_section([fast, slow])
    assert "garbage collector: 0.20 s" in g["cause"] and "(1 full collections against 0)" in g["cause"]
    assert g["repeats"][1]["gc_s"] == pytest.approx(0.208)


def test_collector_time_too_small_to_explain_the_window_is_not_blamed():
    fast, slow = _run(0, 0.25, 1e-4, 1900), _run(1, 0.30, 1e-4, 1900)
    for run in (fast, slow):
        for s in run.train.log:
            s["gc_s"], s["gc_gen2"] = 0.001, 0
    (g,) = spread_section([fast, slow])
    assert "garbage collector" not in g["cause"] and "host side" in g["cause"]


def _with_host_work(run, host_s_per_step: float):
    for s in run.train.log:
        s["compute_s"] = s["time_s"] - host_s_per_step
    return run


def test_host_work_apart_far_more_than_the_speed_and_in_its_order_is_the_hosts_speed():
    # the slower repeat is the one whose host took longer for the same work between steps
    runs = [_with_host_work(_run(0, 0.25, 1e-4, 1900), 0.004), _with_host_work(_run(1, 0.27, 1e-4, 1900), 0.005),
            _with_host_work(_run(2, 0.26, 1e-4, 1900), 0.0045)]
    (g,) = spread_section(runs)
    assert "the host's speed" in g["cause"] and "took 22% longer" in g["cause"]
    assert [r["host_work_s"] for r in g["repeats"]] == pytest.approx([0.032, 0.040, 0.036])


def test_host_work_in_another_order_than_the_speed_is_not_blamed():
    runs = [_with_host_work(_run(0, 0.25, 1e-4, 1900), 0.005), _with_host_work(_run(1, 0.27, 1e-4, 1900), 0.004),
            _with_host_work(_run(2, 0.26, 1e-4, 1900), 0.0045)]
    (g,) = spread_section(runs)
    assert "the host's speed" not in g["cause"] and "host side" in g["cause"]


def _with_timed_tokens(run: Result) -> Result:
    run.train.timed_tokens = sum(s["tokens"] for s in run.train.log if s["step"] > run.train.warmup_steps)
    return run


def test_one_stalled_step_is_named_with_the_spread_without_it():
    slow = _with_timed_tokens(_run(1, 0.25, 1e-4, 1900))
    slow.train.log[6]["time_s"] += 0.5  # step 7 stalls once
    slow.train.log[6]["compiles"], slow.train.log[6]["compile_s"] = 2, 0.45
    slow.train.tokens_per_s = slow.train.timed_tokens / sum(s["time_s"] for s in slow.train.log[2:])
    (g,) = spread_section([_with_timed_tokens(_run(0, 0.25, 1e-4, 1900)), slow])
    assert g["spread"] > 0.05
    assert g["cause"].startswith("one step: step 7 took 0.50 s longer in r1 than in r0")
    assert "100% of the 0.50 s" in g["cause"] and "compiled 2 graph(s) in it (0.45 s)" in g["cause"]
    assert g["cause"].endswith("without it the repeats are 0.0% apart")


def test_a_slower_process_is_not_taken_for_one_step():
    (g,) = spread_section([_with_timed_tokens(_run(0, 0.25, 1e-4, 1900)), _with_timed_tokens(_run(1, 0.30, 1e-4, 1901))])
    assert not g["cause"].startswith("one step") and "host side" in g["cause"]


def test_session_9s_unsloth_spread_is_its_step_45():
    """The committed H200 repeats under train.sdpa_backend=efficient: unsloth's 2.0% is one step."""
    from pathlib import Path

    from harness.results.load import load_records

    root = Path(__file__).resolve().parents[2] / "results/h200/session9/spread-sdpa_efficient/throughput_7b"
    groups = {g["label"]: g for g in spread_section(load_records([root]))}
    cause = groups["unsloth-2026.10.9"]["cause"]
    assert cause.startswith("one step: step 45 took 0.39 s longer in r1 than in r0 (1.66 vs 1.27 s")
    assert cause.endswith("without it the repeats are 0.6% apart")
    assert groups["trl-1.16.0"]["spread"] < 0.01 < groups["llamafactory-0.9.5"]["spread"]


def test_a_step_that_differs_by_noise_is_not_named_a_stall():
    slow = _with_timed_tokens(_run(1, 0.25, 1e-4, 1900))
    slow.train.log[6]["time_s"] += 0.001  # 1 ms in a ~4.5 s window: noise, even if it is all the difference
    slow.train.tokens_per_s = slow.train.timed_tokens / sum(s["time_s"] for s in slow.train.log[2:])
    (g,) = spread_section([_with_timed_tokens(_run(0, 0.25, 1e-4, 1900)), slow])
    assert not g["cause"].startswith("one step")
