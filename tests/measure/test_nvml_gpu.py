"""Known-answer test of the NVML sampler on a real GPU: a child holds exactly 2 GiB for 2 s.

Run with ``python3 -m pytest tests/measure -m gpu``; skipped where NVML sees no GPU or torch has no CUDA.
"""
import json
import subprocess
import sys
import time

import pytest

from harness.sampling.devices import cuda_available
from harness.sampling.sampler import NvmlSampler

GIB = 1 << 30

CHILD = r"""
import json, sys, time
import torch
n = int(sys.argv[1])
torch.zeros(1, device="cuda"); torch.cuda.synchronize()    # CUDA context + one small block in both children
x = None
if n:
    x = torch.empty(n, dtype=torch.uint8, device="cuda"); x.fill_(1); torch.cuda.synchronize()
t0 = time.time()
time.sleep(2.0)
del x
torch.cuda.empty_cache(); torch.cuda.synchronize()
t1 = time.time()
print(json.dumps({"t0": t0, "t1": t1}), flush=True)
time.sleep(0.3)
"""


def _torch_cuda() -> bool:
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                         capture_output=True, text=True)
    return out.stdout.strip() == "True"


def _measure(nbytes: int):
    sampler = NvmlSampler(interval_s=0.01)
    sampler.start()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(nbytes)], stdout=subprocess.PIPE, text=True)
    sampler.watch_pids(proc.pid)
    out, _ = proc.communicate(timeout=120)
    time.sleep(0.1)
    sampler.stop()
    assert proc.returncode == 0
    return sampler, json.loads(out.strip().splitlines()[-1])


@pytest.mark.gpu
def test_two_gib_child_peak_and_hold_time():
    if not cuda_available() or not _torch_cuda():
        pytest.skip("needs an NVIDIA GPU and torch with CUDA")
    empty, _ = _measure(0)
    overhead = empty.summary()["peak_used_bytes"]  # context + allocator's first block
    full, times = _measure(2 * GIB)
    summary = full.summary()
    assert summary["available"] and summary["samples"] > 100
    assert summary["interval_s"] == pytest.approx(0.01, rel=0.5)
    extra = summary["peak_used_bytes"] - overhead
    assert extra == pytest.approx(2 * GIB, rel=0.02), (extra, overhead)
    if summary["peak_process_bytes"] is not None:  # None when NVML sees another PID namespace
        assert summary["peak_process_bytes"] >= 2 * GIB

    # The 2 GiB are held from t0 to t1 (child's wall clock): the sampler's timeline must show the same window.
    device = summary["per_device"][0]
    high = [r["t"] for r in full.timeline() if r["device"] == device["nvml_index"] and r["used_bytes"] is not None
            and r["used_bytes"] - device["baseline_used_bytes"] > overhead + GIB]
    held = high[-1] - high[0]
    assert held == pytest.approx(times["t1"] - times["t0"], rel=0.02)
    assert abs(high[0] - times["t0"]) < 0.04 and abs(high[-1] - times["t1"]) < 0.04

    energy = full.energy_between(times["t0"], times["t1"])
    assert energy is None or energy > 0


@pytest.mark.gpu
def test_real_gpu_reports_its_clocks_and_power_limit():
    sampler = NvmlSampler(interval_s=0.01)
    if not sampler.available:
        pytest.skip(f"NVML sees no GPU: {sampler.reason}")
    with sampler:
        time.sleep(0.5)
    points = sampler.clocks.points
    assert len(points) >= 3
    assert all(p.sm_mhz is not None and 0 < p.sm_mhz < 5000 for p in points)
    assert all(p.temperature_c is not None and 0 < p.temperature_c < 120 for p in points)
    assert sampler.power_limit_w() is not None and 50 < sampler.power_limit_w() < 2000
