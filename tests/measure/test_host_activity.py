"""What else ran on the host: the run's own CPU is told apart from its neighbours', and reports get words."""
from __future__ import annotations

import subprocess
import sys
import time

from harness.sampling.host_activity import HostActivity, host_disclosure

SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


def test_the_watched_tree_is_the_run():
    import psutil

    run = subprocess.Popen([sys.executable, "-c", SPIN])
    monitor = HostActivity(interval_s=0.2)
    monitor.watch(run.pid)
    try:
        # the reference: the spinner's own CPU time read around the same window (whatever share of a core a
        # loaded machine gives it, the monitor must see that share, not a fixed figure)
        spinner = psutil.Process(run.pid)
        t0, cpu0 = time.monotonic(), sum(spinner.cpu_times()[:2])
        monitor.start()
        deadline = time.monotonic() + 20
        while monitor.summary()["samples"] < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        monitor.stop()
        reference = (sum(spinner.cpu_times()[:2]) - cpu0) / (time.monotonic() - t0)
    finally:
        run.kill()
        run.wait()
    s = monitor.summary()
    assert s["samples"] >= 5 and s["cpu_count"] >= 1
    assert reference > 0
    assert 0.5 * reference <= s["run_busy_cores_mean"] <= 2 * reference, (s["run_busy_cores_mean"], reference)
    # host CPU (/proc/stat) and the run's (its CPU times) are read at slightly different instants, so only
    # their presence is checked, not an order between them
    assert s["host_busy_cores_mean"] is not None and s["parent_busy_cores_mean"] is not None
    assert s["other_busy_cores_mean"] >= 0 and s["load_avg_1m_start"] is not None


def test_disclosure_names_every_neighbour_in_words():
    host = {"samples": 60, "cpu_count": 32, "cpu_shared": True, "other_busy_cores_mean": 1.4, "other_busy_cores_max": 2.2,
            "other_gpu_processes": [{"pid": 4242, "name": "python3", "nvml_index": 0, "used_bytes": 3 * 2**30}],
            "other_busy_gpus": [{"nvml_index": 1, "max_util_pct": 100, "processes": 1}]}
    d = host_disclosure(host)
    assert d["shared"] is True and len(d["because"]) == 3
    assert "process 4242 (python3) used 3.0 GiB on GPU 0" in d["because"][0]
    assert "GPU 1 of the host" in d["because"][1] and "100%" in d["because"][1]
    assert "1.4 of 32 CPU cores" in d["because"][2]
    # Below one busy core of other processes is not a shared host (session 3's parent sampler: ~0.5 core).
    quiet = host_disclosure({"samples": 60, "cpu_count": 16, "cpu_shared": True, "other_busy_cores_mean": 0.53,
                             "other_gpu_processes": [], "other_busy_gpus": []})
    assert quiet == {"shared": False, "because": []}
    # On a 2-core machine a quarter of it is: one other busy core is half the host (a new user's run beside a
    # test suite ran 14x slower and was not disclosed).
    small = host_disclosure({"samples": 60, "cpu_count": 2, "other_busy_cores_mean": 0.999, "other_busy_cores_max": 1.3,
                             "other_gpu_processes": [], "other_busy_gpus": []})
    assert small["shared"] is True and "1.0 of 2 CPU cores" in small["because"][0]
    assert host_disclosure({"samples": 60, "cpu_count": 2, "other_busy_cores_mean": 0.2, "other_gpu_processes": [],
                            "other_busy_gpus": []})["shared"] is False
    assert host_disclosure(None)["shared"] is None  # older results: not recorded, and said so
    assert host_disclosure({"samples": 0})["shared"] is None
