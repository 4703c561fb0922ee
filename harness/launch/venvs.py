"""Per-framework virtual environments layered over a base interpreter.

The frameworks' pins conflict (see ``envs/README.md``), so each framework and version runs under
its own interpreter: a venv made ``--without-pip`` whose site-packages holds only the packages of
``envs/<framework>-<version>.txt`` (installed with ``--no-deps``), plus a ``.pth`` file that appends
the *base* interpreter's site-packages, so the env's own packages win and torch (and everything
else shared) comes from the base. This also works when the base interpreter is itself a venv,
where ``--system-site-packages`` would reach the wrong site-packages.

Only the standard library is used here (no torch import): the lead process stays light.
No value is ever passed through a shell; every subprocess gets an argument list."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any


__all__ = [
    "EnvError",
    "MARKER_NAME",
    "REPO_ROOT",
    "REQUIREMENTS_DIR",
    "env_dir",
    "env_python",
    "env_root",
    "env_status",
    "python_for",
    "read_marker",
    "requirements_file",
    "requirements_hash",
]

log = logging.getLogger(__name__)


REPO_ROOT: Path = Path(__file__).resolve().parents[2]
"""The repository root (the folder holding ``harness/`` and ``envs/``)."""


REQUIREMENTS_DIR: Path = REPO_ROOT / "envs"
"""Where the pinned ``<framework>-<version>.txt`` requirement files live."""


MARKER_NAME = "harness-env.json"
"""File written last into a finished env; an env without it is not ready."""


PTH_NAME = "_harness_base.pth"
"""The ``.pth`` file in the env's site-packages that appends the base's site-packages."""


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class EnvError(RuntimeError):
    """A framework environment is missing, stale, or could not be built."""


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value:
        raise EnvError(f"invalid {kind} {value!r}: expected letters, digits and . _ + -")
    return value


def _env_name(framework: str, version: str) -> str:
    return f"{_check_name('framework', framework)}-{_check_name('version', version)}"


def env_root() -> Path:
    """The folder holding all envs: ``$HARNESS_ENV_ROOT`` if set, else ``<repo>/.envs``."""
    root = os.environ.get("HARNESS_ENV_ROOT")
    return Path(root).expanduser().resolve() if root else REPO_ROOT / ".envs"


def env_dir(framework: str, version: str) -> Path:
    """The env folder of one framework version, e.g. ``<repo>/.envs/trl-1.16.0``."""
    return env_root() / _env_name(framework, version)


def env_python(env: Path) -> Path:
    """The interpreter inside an env folder."""
    return env / "bin" / "python"


def requirements_file(framework: str, version: str) -> Path:
    """The pinned requirements file ``envs/<framework>-<version>.txt``.

    Raises EnvError naming the expected file (and the versions that do have one) if it is missing.
    """
    path = REQUIREMENTS_DIR / f"{_env_name(framework, version)}.txt"
    if not path.is_file():
        known = sorted(p.stem[len(framework) + 1:] for p in REQUIREMENTS_DIR.glob(f"{framework}-*.txt"))
        hint = f"pinned versions of {framework}: {', '.join(known)}" if known else f"no {framework} version is pinned"
        raise EnvError(f"no pinned requirements for {framework} {version}: {path} does not exist ({hint})")
    return path


def requirements_hash(path: Path) -> str:
    """sha256 of the requirement lines of ``path`` (comments and blank lines ignored)."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("--") else raw.strip()
        if line:
            lines.append(line)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def read_marker(env: Path) -> dict[str, Any] | None:
    """The marker of a finished env, or None when the env is absent or unfinished."""
    try:
        data = json.loads((env / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def env_status(framework: str, version: str) -> tuple[str, dict[str, Any] | None]:
    """``("ready" | "missing" | "stale", marker)`` for one framework version.

    An env is stale when its requirements hash differs from the pinned file's current one.
    """
    env = env_dir(framework, version)
    marker = read_marker(env)
    if marker is None or not env_python(env).exists():
        return "missing", marker
    if marker.get("requirements_hash") != requirements_hash(requirements_file(framework, version)):
        return "stale", marker
    return "ready", marker


def python_for(framework: str, version: str, *, use_current: bool) -> str:
    """The interpreter to run a framework worker with.

    ``use_current`` returns ``sys.executable`` (the framework is installed where the harness runs);
    otherwise the env's python, raising EnvError with the command to build it when it is missing
    or stale.
    """
    if use_current:
        return sys.executable
    status, _ = env_status(framework, version)
    hint = f"run `python -m harness env build framework={framework} version={version}`"
    if status == "missing":
        raise EnvError(f"environment for {framework} {version} not built ({env_dir(framework, version)}): {hint}")
    if status == "stale":
        raise EnvError(
            f"environment for {framework} {version} is stale (envs/{_env_name(framework, version)}.txt "
            f"changed since it was built): {hint}"
        )
    return str(env_python(env_dir(framework, version)))
