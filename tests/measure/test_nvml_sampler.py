import csv

from harness.sampling import devices
from harness.sampling.sampler import NvmlSampler
from harness.sampling.timeline import BoundedTimeline, downsample_max_pairs


def test_downsampling_keeps_the_peak():
    samples = [(float(i), 100, 10, 50.0, None) for i in range(1001)]
    samples[333] = (333.0, 9_999, 99, 400.0, 7)  # a one-sample spike at an odd index
    halved = downsample_max_pairs(samples)
    assert len(halved) == 501
    assert max(s[1] for s in halved) == 9_999 and max(s[3] for s in halved) == 400.0
    assert halved[166] == (332.0, 9_999, 99, 400.0, 7)  # earlier time, max of each value, None-aware
    assert halved[-1] == samples[-1]  # odd tail kept


def test_bounded_timeline_stays_bounded_and_uniform():
    line = BoundedTimeline(cap=100)
    for i in range(10_000):
        line.add((float(i), 5_000 if i == 7_777 else i % 50, None, None, None))
    points = line.all()
    assert len(points) <= 100 + 1
    assert max(p[1] for p in points) == 5_000
    gaps = {points[i + 1][0] - points[i][0] for i in range(len(points) - 2)}
    assert len(gaps) == 1  # every stored point covers the same number of raw samples


def test_no_nvml_is_a_noop(monkeypatch, tmp_path):
    def missing():
        raise ImportError("No module named 'pynvml'")

    monkeypatch.setattr(devices, "import_nvml", missing)
    with NvmlSampler() as sampler:
        sampler.watch_pids(1)
    summary = sampler.summary()
    assert summary["available"] is False and "NVML not available" in summary["reason"]
    assert summary["peak_used_bytes"] is None and summary["samples"] == 0
    assert sampler.energy_between(0.0, 1.0) is None
    sampler.write_timeline(tmp_path / "t.csv")
    assert list(csv.reader(open(tmp_path / "t.csv")))[0][0] == "t"
    assert devices.gpu_environment()["gpu_count"] == 0
    assert devices.cuda_available() is False


def test_this_machine_never_raises():
    # On a CPU box the real pynvml import succeeds but nvmlInit fails: still no exception.
    sampler = NvmlSampler(interval_s=0.005)
    sampler.start()
    sampler.stop()
    summary = sampler.summary()
    assert isinstance(summary["available"], bool)
    if not summary["available"]:
        assert summary["reason"]
    env = devices.gpu_environment()
    assert "gpu_count" in env


class _FakeNvml:
    """Four GPUs with known UUIDs, enough for CUDA_VISIBLE_DEVICES mapping."""

    UUIDS = ["GPU-aaaa-1111", "GPU-bbbb-2222", "GPU-abcd-3333", "GPU-cccc-4444"]

    def nvmlDeviceGetCount(self):
        return 4

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetUUID(self, handle):
        return self.UUIDS[handle]


def test_visible_devices_mapping():
    fake = _FakeNvml()
    assert devices.nvml_indices_for_visible(None, fake) == [0, 1, 2, 3]
    assert devices.nvml_indices_for_visible("2,0", fake) == [2, 0]
    assert devices.nvml_indices_for_visible("GPU-cccc-4444,GPU-bbbb", fake) == [3, 1]
    assert devices.nvml_indices_for_visible("GPU-a,1", fake) == []  # ambiguous prefix stops the list
    assert devices.nvml_indices_for_visible("1,7,2", fake) == [1]  # CUDA stops at an invalid entry
    assert devices.nvml_indices_for_visible("", fake) == []
