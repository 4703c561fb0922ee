"""pytest-benchmark suite of the harness: machine info (GPU, driver, harness machine_id, git commit) and test
selection.

``pytest benchmarks/`` runs the suite: the project-wide ``-m 'not gpu'`` (pyproject addopts) is widened to
``(not gpu) or bench`` for this folder's tests unless ``-m`` is given on the command line; a ``gpu``-marked
benchmark is skipped (with the reason) on a machine without an NVIDIA GPU.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


def gpu_info() -> dict[str, Any]:
    """gpu_name, gpu_count, driver from NVML (harness.sampling.devices); ``gpu_count`` 0 and a reason
    when NVML, the sampler module or its function are missing. Never raises."""
    try:
        from harness.sampling.devices import gpu_environment

        info = gpu_environment()
    except Exception as err:  # noqa: BLE001 - machine info must never break the session
        return {"gpu_count": 0, "reason": f"gpu_environment unavailable: {type(err).__name__}: {err}"}
    return dict(info) if isinstance(info, dict) else {"gpu_count": 0, "reason": f"unexpected {info!r}"}


def harness_machine_id(gpu: dict[str, Any]) -> str | None:
    try:
        from harness.results.machine import machine_id

        return machine_id(gpu)
    except Exception:  # noqa: BLE001
        return None


def git_info() -> dict[str, Any]:
    try:
        from harness.results.machine import git_commit

        return git_commit()
    except Exception as err:  # noqa: BLE001
        return {"commit": None, "dirty": None, "reason": str(err)}


def _has_gpu() -> bool:
    return (gpu_info().get("gpu_count") or 0) > 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench: harness benchmark (benchmarks/), selected by `pytest benchmarks/`")
    args = [str(a) for a in config.invocation_params.args]
    explicit = any(a == "-m" or (a.startswith("-m") and not a.startswith("--")) for a in args)
    expr = getattr(config.option, "markexpr", "")
    if expr and not explicit and "bench" not in expr:
        config.option.markexpr = f"({expr}) or bench"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [i for i in items if BENCH_DIR in Path(str(i.fspath)).resolve().parents]
    if not any(i.get_closest_marker("gpu") for i in ours) or _has_gpu():
        return
    skip = pytest.mark.skip(reason=f"needs an NVIDIA GPU ({gpu_info().get('reason', 'none visible')}); "
                                   f"HARNESS_BENCH_ALLOW_CPU=1 runs the suite on CPU")
    for item in ours:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    gpu = gpu_info()
    machine_info["gpu"] = {"name": gpu.get("gpu_name"), "count": gpu.get("gpu_count") or 0,
                           "driver": gpu.get("driver"), "cuda_driver_version": gpu.get("cuda_driver_version")}
    if gpu.get("reason"):
        machine_info["gpu"]["reason"] = gpu["reason"]
    machine_info["harness_machine_id"] = harness_machine_id(gpu)
    machine_info["git"] = git_info()
