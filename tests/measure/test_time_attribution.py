"""Step-time attribution over hand-built Chrome traces whose answers are known by construction."""
from __future__ import annotations

import pytest

from harness.results.time_attribution import MARK, attribute_steps, first_step_only


def _mark(kind: str, ts: float) -> dict:
    return {"ph": "X", "cat": "user_annotation", "name": MARK + kind, "ts": ts, "dur": 0, "pid": 1, "tid": 1}


def _op(name: str, ts: float, dur: float, tid: int = 1, cat: str = "cpu_op", **args) -> dict:
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "pid": 1, "tid": tid, "args": args}


def _step(t0: float) -> list[dict]:
    """One 1000 us step: data 0-100, forward 100-400, loss 400-500, backward 500-900, optimizer 900-1000;
    ops cover all but 10 us of each part (the host's gaps: 50 us)."""
    return [
        _op("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", t0 + 5, 90, cat="user_annotation"),
        _mark("forward", t0 + 100), _op("aten::mm", t0 + 105, 290),
        _mark("head", t0 + 400), _op("aten::cross_entropy_loss", t0 + 405, 90),
        _op("autograd::engine::evaluate_function: MmBackward0", t0 + 500, 390, tid=2),
        _op("aten::mm", t0 + 505, 380, tid=2),
        _mark("head_grad", t0 + 520),
        _mark("pre_optimizer", t0 + 910), _op("Optimizer.step#AdamW.step", t0 + 905, 90, cat="user_annotation"),
        _mark("step_end", t0 + 1000),
    ]


def test_host_view_parts_add_up_to_the_window_and_match_the_construction():
    events = [_mark("step_end", 0.0)] + _step(0.0) + _step(1000.0)
    out = attribute_steps({"traceEvents": events})
    assert out["view"] == "host" and out["steps"] == 2 and out["window_s"] == pytest.approx(2000e-6)
    parts = out["parts_s"]
    assert parts == pytest.approx({"data": 180e-6, "forward": 580e-6, "loss": 180e-6, "backward": 780e-6,
                                   "optimizer": 180e-6, "gaps": 100e-6})
    assert sum(parts.values()) == pytest.approx(out["window_s"])
    assert out["top_ops"][0]["name"] == "aten::mm" and out["top_ops"][0]["count"] == 4
    # the backward op's own time excludes its child mm: 10 us self per step
    backward = next(o for o in out["top_ops"] if o["name"].startswith("autograd::engine"))
    assert backward["self_s"] == pytest.approx(20e-6)


def test_device_view_counts_each_gpu_instant_once_by_the_part_that_launched_it():
    events = [_mark("step_end", 0.0)] + _step(0.0)
    launches = [(1, 150.0), (2, 450.0), (3, 600.0), (4, 950.0)]  # forward, loss, backward, optimizer
    for corr, ts in launches:
        events.append(_op("cudaLaunchKernel", ts, 5, cat="cuda_runtime", correlation=corr))
    events += [_op("gemm_fwd", 160, 200, cat="kernel", correlation=1),       # 160-360 forward
               _op("ce_kernel", 350, 100, cat="kernel", correlation=2),      # 360-450 loss (10 us shared)
               _op("gemm_bwd", 610, 250, cat="kernel", correlation=3),       # backward
               _op("adam", 955, 40, cat="kernel", correlation=4)]            # optimizer
    out = attribute_steps({"traceEvents": events})
    assert out["view"] == "device"
    assert out["parts_s"] == pytest.approx({"data": 0.0, "forward": 200e-6, "loss": 90e-6, "backward": 250e-6,
                                            "optimizer": 40e-6, "gaps": 420e-6})
    assert sum(out["parts_s"].values()) == pytest.approx(1000e-6)
    assert out["host_parts_s"]["forward"] > 0 and out["top_kernels"][0]["name"] == "gemm_bwd"


def test_micro_batches_each_get_their_own_data_forward_loss_and_backward():
    t = 0.0
    events = [_mark("step_end", t)]
    for k in range(2):  # two micro-batches of 400 us: data 50, forward 150, loss 50, backward 150
        b = t + 400 * k
        events += [_mark("forward", b + 50), _mark("head", b + 200),
                   _op("autograd::engine::evaluate_function: X", b + 250, 150, tid=2)]
    events.append(_mark("step_end", 1000.0))  # optimizer: 800-1000
    parts = attribute_steps({"traceEvents": events})["parts_s"]
    covered = {k: v for k, v in parts.items() if k != "gaps"}
    # only the backward ops are recorded ops: everything else is host gaps in this trace
    assert covered == pytest.approx({"data": 0, "forward": 0, "loss": 0, "backward": 300e-6, "optimizer": 0})
    assert parts["gaps"] == pytest.approx(700e-6)


def test_a_trace_without_two_step_ends_is_refused_and_a_cut_keeps_the_first_step():
    with pytest.raises(ValueError, match="no whole profiled step"):
        attribute_steps({"traceEvents": [_mark("step_end", 0.0)]})
    trace = {"traceEvents": [_mark("step_end", 0.0)] + _step(0.0) + _step(1000.0), "deviceProperties": []}
    cut = first_step_only(trace)
    assert attribute_steps(cut)["steps"] == 1 and cut["deviceProperties"] == []


def test_a_trace_over_the_size_limit_is_cut_to_its_first_step_or_dropped_and_the_result_says_so(tmp_path):
    import gzip
    import json

    from harness.worker.time_profiler import TimeProfiler

    filler = [_op("aten::mm", 1500.0 + i, 0.5, name_pad="x" * 200) for i in range(400)]  # step 2 is heavy
    trace = {"traceEvents": [_mark("step_end", 0.0)] + _step(0.0) + _step(1000.0) + filler}
    whole = len(gzip.compress(json.dumps(trace).encode()))
    cut = len(gzip.compress(json.dumps(first_step_only(trace)).encode()))
    for limit, kept in ((whole + 1, "whole"), ((whole + cut) // 2, "cut"), (cut // 2, None)):
        prof = TimeProfiler({"trace_max_mb": limit / 2**20}, tmp_path, warmup_steps=0, max_steps=2)
        prof.trace = trace
        record = prof.finish([])
        assert record.status == "ok" and record.window_s == pytest.approx(2000e-6)
        path = tmp_path / "profile_trace.json.gz"
        if kept is None:
            assert record.trace_file is None and "not kept" in record.trace_note
        else:
            steps = attribute_steps(json.loads(gzip.decompress(path.read_bytes())))["steps"]
            assert steps == (2 if kept == "whole" else 1) and record.trace_bytes == path.stat().st_size
            assert (record.trace_note is None) == (kept == "whole")
        path.unlink(missing_ok=True)


def test_sdpa_backend_ops_are_counted_with_their_longest_call():
    # Three steps' forward attention through cuDNN: the first call of a new length builds its graph (58 ms),
    # the others take 1 ms; one backward call; the top-level op and calls outside the window are not counted.
    events = [_mark("step_end", 0.0)] + _step(0.0) + _step(100_000.0) + _step(200_000.0)
    for t0, dur in ((0.0, 58_000.0), (100_000.0, 1_000.0), (200_000.0, 1_000.0)):
        events += [_op("aten::scaled_dot_product_attention", t0 + 110, dur + 20),
                   _op("aten::_scaled_dot_product_cudnn_attention", t0 + 120, dur)]
    events += [_op("aten::_scaled_dot_product_cudnn_attention_backward", 600.0, 2_000.0),
               _op("aten::_scaled_dot_product_cudnn_attention", 900_000.0, 5.0)]  # after the last step end
    ops = {o["name"]: o for o in attribute_steps({"traceEvents": events})["sdpa_ops"]}
    assert set(ops) == {"aten::_scaled_dot_product_cudnn_attention", "aten::_scaled_dot_product_cudnn_attention_backward"}
    fwd = ops["aten::_scaled_dot_product_cudnn_attention"]
    assert fwd["count"] == 3 and fwd["total_s"] == pytest.approx(60e-3)
    assert fwd["median_s"] == pytest.approx(1e-3) and fwd["max_s"] == pytest.approx(58e-3)
    assert fwd["slow_calls"] == 1 and fwd["slow_s"] == pytest.approx(58e-3)
    assert ops["aten::_scaled_dot_product_cudnn_attention_backward"]["count"] == 1


def _without(events: list[dict], kinds: tuple[str, ...], after: float = -1.0) -> list[dict]:
    return [e for e in events if not (e["name"] in {MARK + k for k in kinds} and e["ts"] > after)]


def test_steps_without_a_head_mark_have_no_loss_part_their_head_and_loss_are_in_forward():
    # unsloth's fused loss calls no module the head mark can hook: forward runs to the first autograd op
    events = _without([_mark("step_end", 0.0)] + _step(0.0) + _step(1000.0), ("head", "head_grad"))
    out = attribute_steps({"traceEvents": events})
    assert out["not_separated"] == {"loss": "forward"}
    assert out["parts_s"]["loss"] is None and out["host_parts_s"]["loss"] is None
    # the host view of _step: forward 100-400 and loss 400-500, each with 10 us uncovered, now one part
    assert out["parts_s"]["forward"] == pytest.approx(2 * (290e-6 + 90e-6))
    assert sum(v for v in out["parts_s"].values() if v is not None) == pytest.approx(out["window_s"])
    assert any("not separable" in n for n in out["notes"])


def test_a_window_where_only_some_micro_batches_lack_the_head_mark_keeps_its_loss_part_and_says_so():
    events = _without([_mark("step_end", 0.0)] + _step(0.0) + _step(1000.0), ("head", "head_grad"), after=1000.0)
    out = attribute_steps({"traceEvents": events})
    assert out["not_separated"] is None and out["parts_s"]["loss"] == pytest.approx(90e-6)
    assert any("1 of 2 profiled micro-batch(es) had no LM-head mark" in n for n in out["notes"])
