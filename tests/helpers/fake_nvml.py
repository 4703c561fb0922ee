"""Just enough NVML for the sampler, with known readings: tests swap it in for pynvml
(``monkeypatch.setattr(devices, "import_nvml", lambda: FakeNvml(...))``, devices: harness.sampling.devices)."""
from __future__ import annotations

from typing import Any


class FakeNvml:
    """``devices`` GPUs reading ``used`` bytes, 50% utilisation, ``power_mw``; with ``clocks``, an SM clock of
    ``sm_mhz``, ``temperature_c`` and the clocks-event bitmask ``reasons`` (without: those calls are absent,
    as in old bindings)."""
    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    def __init__(self, devices: int = 2, power_mw: int = 100_000, clocks: bool = False, sm_mhz: int = 1755,
                 temperature_c: int = 61, reasons: int = 0x4, power_limit_mw: int = 700_000) -> None:
        self.values: dict[str, Any] = {
            "nvmlDeviceGetCount": devices, "nvmlDeviceGetName": "GPU", "nvmlSystemGetCudaDriverVersion": 13000,
            "nvmlSystemGetDriverVersion": "580", "nvmlDeviceGetTotalEnergyConsumption": 1000,
            "nvmlDeviceGetPowerUsage": power_mw, "nvmlDeviceGetComputeRunningProcesses": []}
        if clocks:
            self.values.update({"nvmlDeviceGetCurrentClocksEventReasons": reasons,
                                "nvmlDeviceGetEnforcedPowerLimit": power_limit_mw,
                                "nvmlDeviceGetTemperature": temperature_c})
        self.clocks, self.sm_mhz = clocks, sm_mhz

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("values", {})
        if name in values:
            return lambda *a: values[name]
        if name == "nvmlDeviceGetClockInfo" and self.__dict__.get("clocks"):
            return lambda h, kind: self.sm_mhz if kind == self.NVML_CLOCK_SM else 0
        if name == "nvmlDeviceGetHandleByIndex":
            return lambda i: i
        if name == "nvmlDeviceGetUUID":
            return lambda h: f"GPU-{h}"
        if name == "nvmlDeviceGetMemoryInfo":
            return lambda h: type("M", (), {"used": 10, "total": 100})()
        if name == "nvmlDeviceGetUtilizationRates":
            return lambda h: type("U", (), {"gpu": 50})()
        if name in ("nvmlInit", "nvmlShutdown"):
            return lambda: None
        raise AttributeError(name)
