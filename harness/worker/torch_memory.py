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
