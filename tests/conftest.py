"""Shared fixtures. Tests run from the repository root; `gpu` tests are deselected by default
(pyproject addopts) and run on the GPU machine with `pytest -m gpu`."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# Read before _isolated_environment unsets it (tests/helpers/hub_mirror.py): only the hub_mirror fixture hands it on.
from tests.helpers.hub_mirror import exported_mirror  # noqa: E402

# What tests may create in the checkout: bytecode, git's own files, and the framework environments, which are
# built there on first use by design (HARNESS_ENV_ROOT moves them). Source files are left out of the check, so
# that editing one while the suite runs is not reported: a run writes results, reports, caches and logs.
_CHECKOUT_WRITABLE = {".git", "__pycache__", ".envs"}
_SOURCE_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".sh", ".cfg", ".ini"}


def _checkout_files() -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for root, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in _CHECKOUT_WRITABLE]
        for name in files:
            if os.path.splitext(name)[1] in _SOURCE_SUFFIXES:
                continue
            path = os.path.join(root, name)
            try:
                stat = os.stat(path)
            except OSError:
                continue
            found[os.path.relpath(path, REPO_ROOT)] = (stat.st_size, stat.st_mtime_ns)
    return found


@pytest.fixture(scope="session", autouse=True)
def _checkout_stays_untouched():
    """No test writes into the checkout: results, reports, the model cache and everything else a run writes go
    under tmp paths. Checked over the whole session (module and session fixtures included): a file created,
    changed or removed under the checkout fails the session at its end, naming the files."""
    before = _checkout_files()
    yield
    after = _checkout_files()
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"tests wrote into the checkout {REPO_ROOT}: {', '.join(changed[:20])}"


@pytest.fixture(scope="session", autouse=True)
def _isolated_environment(tmp_path_factory, _checkout_stays_untouched):
    """Set for the whole session, before any module or session fixture starts a run (a function-scoped
    fixture would come after those): random-weight models are cached per session, a test that forgets
    results_dir= or reports_dir= writes under the session's tmp folder, and the offline mirror is unset (a test
    that needs it asks for the ``hub_mirror`` fixture, which holds the value exported when the session started).

    On a machine without a GPU the workers and framework probes also run torch with one intra-op thread. With
    torch's default (one OpenMP thread per core) every op of the tiny model ends at a barrier that waits for a
    thread the kernel has descheduled whenever anything else wants a core: the parent's sampler, torchrun's
    second rank, an environment being built, another job on a shared 2-core machine. The quick-start trl run
    (60 steps) took 47 s wall and 39-45 s CPU with two threads on a busy 2-core machine, 15 s and 12 s with one.
    No CPU test asserts a speed, and every framework of a comparison runs with the same setting. An
    OMP_NUM_THREADS already set is kept."""
    from harness.sampling.devices import cuda_available

    scratch = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HARNESS_CACHE", str(scratch / "harness-cache"))
        env.delenv("HARNESS_HUB_MIRROR", raising=False)
        env.setenv("HARNESS_RESULTS_DIR", str(scratch / "default-results"))
        env.setenv("HARNESS_REPORTS_DIR", str(scratch / "default-reports"))
        if "OMP_NUM_THREADS" not in os.environ and not cuda_available():
            env.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="session")
def hub_mirror() -> Path:
    """The offline Hub mirror the user exported (HARNESS_HUB_MIRROR) for the tests that need Qwen's config and
    tokenizer or the medical sample; they pass it into the harness subprocess (tests.helpers.hub_mirror.mirror_env).
    The session's own environment stays without it (_isolated_environment), so no other test sees a mirror.
    Skips when none was exported; a value that is not a folder fails, naming it (a typo must not read as a skip)."""
    mirror = exported_mirror()
    if mirror is None:
        pytest.skip("needs HARNESS_HUB_MIRROR (the offline Hub mirror: Qwen2.5 configs and tokenizer, the medical sample)")
    if not mirror.is_dir():
        pytest.fail(f"HARNESS_HUB_MIRROR={mirror} is not a folder")
    return mirror
