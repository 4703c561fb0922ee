"""The host-pause readings: collector time and counts come from the interpreter's own gc callbacks."""
from __future__ import annotations

import gc
import itertools

from harness.worker.host_pauses import HostPauseMeter


def test_collections_between_takes_are_counted_and_timed_with_the_meters_clock() -> None:
    ticks = itertools.count(0.0, 0.25)  # every clock read advances 0.25 s: one collection reads it twice
    meter = HostPauseMeter(clock=lambda: next(ticks))
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


def test_a_pinned_process_records_its_cpus_as_ranges_and_an_unpinned_one_nothing() -> None:
    import os
    import subprocess
    import sys

    from harness.results.machine import cpu_affinity

    assert cpu_affinity() is None or len(os.sched_getaffinity(0)) < os.cpu_count()
    code = "import os; os.sched_setaffinity(0, {0}); from harness.results.machine import cpu_affinity; print(cpu_affinity())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("0" if os.cpu_count() > 1 else "None")
