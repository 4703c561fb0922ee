"""Which GPUs a run uses, asked of NVML so the parent needs no torch: CUDA_VISIBLE_DEVICES mapped to NVML
indices (integers, GPU-/MIG- UUIDs, as CUDA reads them), the devices' names and driver, and whether CUDA is
available at all. Without NVML (CPU machine, no driver) nothing raises: the answers say why."""
from __future__ import annotations

import os
from typing import Any


def import_nvml():
    import pynvml  # noqa: PLC0415  (optional dependency; absent on CPU-only installs)

    return pynvml


def nvml_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def nvml_indices_for_visible(spec: str | None, nvml=None) -> list[int]:
    """NVML indices of the devices a CUDA process would see for ``CUDA_VISIBLE_DEVICES=spec``.

    Entries may be integers, ``GPU-<uuid>`` (or a unique prefix of one, as CUDA accepts) or
    ``MIG-<uuid>`` (mapped to its parent GPU: NVML reports memory per physical device). Like CUDA, the
    list stops at the first entry that matches nothing. None means "all devices". Integer entries are
    CUDA ordinals; they equal NVML's PCI-bus order when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or when all
    GPUs are the same model (CUDA's FASTEST_FIRST then breaks ties by bus id), which is our case;
    on a mixed box set CUDA_DEVICE_ORDER=PCI_BUS_ID or pass UUIDs.
    """
    nvml = nvml or import_nvml()
    count = nvml.nvmlDeviceGetCount()
    if spec is None:
        return list(range(count))
    uuids = [nvml_text(nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(i))) for i in range(count)]
    out: list[int] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            break
        index: int | None = None
        if entry.lstrip("-").isdigit():
            i = int(entry)
            index = i if 0 <= i < count else None
        elif entry.startswith("MIG-"):
            try:
                mig = nvml.nvmlDeviceGetHandleByUUID(entry.encode() if isinstance(uuids[0], bytes) else entry)
                parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig)
                index = uuids.index(nvml_text(nvml.nvmlDeviceGetUUID(parent)))
            except Exception:  # noqa: BLE001  (unknown MIG id: CUDA would stop here too)
                index = None
        else:
            key = entry if entry.startswith("GPU-") else "GPU-" + entry
            hits = [i for i, u in enumerate(uuids) if u.startswith(key)]
            index = hits[0] if len(hits) == 1 else None
        if index is None:
            break
        if index not in out:
            out.append(index)
    return out


def device_facts(nvml, indices: list[int]) -> dict[str, Any]:
    """Name, count, driver and CUDA driver version of the NVML devices ``indices`` (NVML initialised)."""
    names = [nvml_text(nvml.nvmlDeviceGetName(nvml.nvmlDeviceGetHandleByIndex(i))) for i in indices]
    try:
        cuda = nvml.nvmlSystemGetCudaDriverVersion()
        cuda_text = f"{cuda // 1000}.{(cuda % 1000) // 10}"
    except Exception:  # noqa: BLE001
        cuda_text = None
    try:
        driver = nvml_text(nvml.nvmlSystemGetDriverVersion())
    except Exception:  # noqa: BLE001
        driver = None
    return {"gpu_name": names[0] if names else None, "gpu_names": names, "gpu_count": len(indices),
            "driver": driver, "cuda_driver_version": cuda_text}


def gpu_environment() -> dict[str, Any]:
    """gpu_name, gpu_count, driver, cuda_driver_version of the devices CUDA_VISIBLE_DEVICES names;
    ``{'gpu_count': 0, 'reason': ...}`` when NVML is unavailable. Never raises."""
    try:
        nvml = import_nvml()
        nvml.nvmlInit()
    except Exception as err:  # noqa: BLE001
        return {"gpu_count": 0, "reason": f"NVML not available: {err}"}
    try:
        return device_facts(nvml, nvml_indices_for_visible(os.environ.get("CUDA_VISIBLE_DEVICES"), nvml))
    except Exception as err:  # noqa: BLE001
        return {"gpu_count": 0, "reason": f"NVML query failed: {err}"}
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def cuda_available() -> bool:
    """Whether at least one CUDA device is visible, asked of NVML so the parent needs no torch
    (used to refuse 4-bit quantisation, which needs CUDA, before spawning anything)."""
    return gpu_environment().get("gpu_count", 0) > 0


def read_used(nvml: Any, handle: Any) -> int | None:
    """Device-used memory in bytes (CUDA context, NCCL buffers and allocator slack included)."""
    try:
        return int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:  # noqa: BLE001
        return None


def read_energy(nvml: Any, handle: Any) -> int | None:
    """The device's total-energy counter in mJ, or None where it has none."""
    try:
        return int(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
    except Exception:  # noqa: BLE001  (pre-Volta, vGPU, MIG: unsupported)
        return None


def power_limit_w(nvml: Any, handles: list[Any]) -> float | None:
    """The highest enforced power limit of the boards in watts (each board is capped on its own), or None."""
    limits = []
    for handle in handles:
        try:
            limits.append(nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000.0)
        except Exception:  # noqa: BLE001
            pass
    return max(limits) if limits else None
