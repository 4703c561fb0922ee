"""torch's view of device memory, for diagnosis beside NVML's (which the parent samples)."""
from __future__ import annotations

import torch


def sync_cuda() -> None:
    """Wait for the current CUDA device (timing a step needs its kernels finished); a no-op on CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def torch_memory() -> dict[str, int | None]:
    """torch's allocator peaks on the current CUDA device (None on CPU): what tensors needed
    (allocated) and what the caching allocator held (reserved). For diagnosis beside NVML's figure."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return {"torch_max_allocated_bytes": None, "torch_max_reserved_bytes": None}
    return {"torch_max_allocated_bytes": int(torch.cuda.max_memory_allocated()),
            "torch_max_reserved_bytes": int(torch.cuda.max_memory_reserved())}


# The caching allocator's lifetime counters that cost time inside a step: a cudaMalloc (``num_device_alloc``)
# or cudaFree (``num_device_free``, which synchronises the device) is milliseconds where a cached block is
# microseconds, and a retry (``num_alloc_retries``) frees the whole cache and allocates again. A step that
# does any of these after the warm-up is slow for the allocator's reasons, not the model's.
ALLOCATOR_COUNTERS = {"cuda_mallocs": "num_device_alloc", "cuda_frees": "num_device_free",
                      "alloc_retries": "num_alloc_retries"}


def allocator_counters() -> dict[str, int] | None:
    """The allocator's lifetime counters on the current CUDA device (None on CPU): a step's difference
    says how often it went to the driver for memory."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    stats = torch.cuda.memory_stats()
    return {ours: int(stats.get(theirs, 0)) for ours, theirs in ALLOCATOR_COUNTERS.items()}
