"""The host-pause readings: collector time and counts come from the interpreter's own gc callbacks."""
from __future__ import annotations

import gc
import itertools

from harness.worker.host_pauses import HostPauseMeter


def test_collections_between_takes_are_counted_and_timed_with_the_meters_clock() -> None:
    ticks = itertools.count(0.0, 0.25)  # every clock read advances 0.25 s: one collection reads it twice
    meter = HostPauseMeter(clock=lambda: next(ticks))
    gc.disable()  # only the collections this test asks for (explicit collects still call the callbacks)
    meter.start()
    try:
        gc.collect(0)
        gc.collect(2)
        taken = meter.take()
        assert taken["gc_collections"] == 2 and taken["gc_gen2"] == 1
        assert taken["gc_s"] == 0.5
        assert meter.take()["gc_collections"] == 0  # reset by the take
    finally:
        meter.stop()
        gc.enable()
    gc.collect()
    assert meter.take()["gc_collections"] == 0  # stopped: no longer called
    assert meter._on_gc not in gc.callbacks


def test_involuntary_switches_are_the_threads_own_count_over_the_window() -> None:
    import resource

    def switches() -> int:
        return resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw

    before = switches()  # a reference read just outside the meter's window, on the same thread
    meter = HostPauseMeter()
    meter.start()
    sum(i * i for i in range(200_000))
    taken = meter.take()
    after = switches()
    meter.stop()
    assert isinstance(taken["involuntary_switches"], int)
    assert 0 <= taken["involuntary_switches"] <= after - before


def test_involuntary_switches_are_differences_between_takes(monkeypatch) -> None:
    from harness.worker import host_pauses

    readings = iter([10, 10, 13, 20])  # at construction, start, then two takes
    monkeypatch.setattr(host_pauses, "_involuntary_switches", lambda: next(readings))
    meter = HostPauseMeter()
    meter.start()
    assert meter.take()["involuntary_switches"] == 3
    assert meter.take()["involuntary_switches"] == 7
    meter.stop()


def test_a_pinned_process_records_its_cpus_as_ranges_and_an_unpinned_one_nothing() -> None:
    import os
    import subprocess
    import sys

    from harness.results.machine import cpu_affinity

    cpu = min(os.sched_getaffinity(0))  # a CPU this machine lets us use (a container's set may lack CPU 0)
    code = (f"import os; os.sched_setaffinity(0, {{{cpu}}}); from harness.results.machine import cpu_affinity; "
            "print(cpu_affinity())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (str(cpu) if os.cpu_count() > 1 else "None")
    two = sorted(os.sched_getaffinity(0))[:2]
    if len(two) == 2 and two[1] == two[0] + 1 and os.cpu_count() > 2:  # a range, when there is one to pin to
        code = code.replace(f"{{{cpu}}}", repr(set(two)))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == f"{two[0]}-{two[1]}"


def test_a_compilation_is_counted_in_the_take_it_happened_in_and_a_cached_call_is_not() -> None:
    """A real torch.compile (the eager backend: dynamo's tracing without a C compiler), a new shape recompiling
    it, and the backward graph compiled at its first backward (aot_eager), each read where it happened."""
    import torch

    meter = HostPauseMeter()
    meter.start()
    f = torch.compile(lambda x: (x * 2).sin().sum(), backend="aot_eager", dynamic=False)
    y = f(torch.randn(8, requires_grad=True))
    first = meter.take()
    y.backward()
    backward = meter.take()
    f(torch.randn(8, requires_grad=True))
    cached = meter.take()
    f(torch.randn(16, requires_grad=True))  # a new shape: the guards fail, dynamo compiles again
    new_shape = meter.take()
    meter.stop()
    assert first["compiles"] == 1 and first["compile_s"] > 0
    assert backward["compiles"] == 1  # the lazy backward compilation
    assert cached["compiles"] == 0 and cached["compile_s"] == 0
    assert new_shape["compiles"] == 1


def test_a_dynamo_reset_between_takes_counts_from_zero_not_below() -> None:
    """torch._dynamo.reset() empties dynamo's timings (unsloth_zoo resets when a compile fails): the take after
    it counts what was compiled since, never a negative number."""
    import torch

    meter = HostPauseMeter()
    meter.start()
    torch.compile(lambda x: x.cos() + 1, backend="eager", dynamic=False)(torch.randn(4))
    torch.compile(lambda x: x.sin() * 3, backend="eager", dynamic=False)(torch.randn(4))
    assert meter.take()["compiles"] == 2
    torch._dynamo.reset()
    torch.compile(lambda x: x.tan() - 1, backend="eager", dynamic=False)(torch.randn(4))
    after = meter.take()
    meter.stop()
    assert after["compiles"] == 1 and after["compile_s"] > 0


def test_a_torch_without_dynamos_timings_gives_no_reading_rather_than_zero(monkeypatch) -> None:
    import torch._dynamo.utils as utils

    meter = HostPauseMeter()
    meter.start()
    monkeypatch.delattr(utils, "compilation_time_metrics")
    taken = meter.take()
    meter.stop()
    assert taken["compiles"] is None and taken["compile_s"] is None
