"""Building one framework's virtual environment over the base interpreter (``python -m harness env build``,
or on a run's first use): a ``--without-pip`` venv, the pinned packages installed ``--no-deps`` by the
base's pip, a ``.pth`` that appends the base's site-packages, the marker, a rename into place.

Only the standard library is used here (no torch import). No value is ever passed through a shell;
every subprocess gets an argument list."""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.launch.venvs import (MARKER_NAME, PTH_NAME, EnvError, env_dir, env_python, read_marker, requirements_file,
                                  requirements_hash)

log = logging.getLogger(__name__)


# Run by the base interpreter: every directory where its packages may live, in its own order.
_BASE_SITE_SCRIPT = r"""
import json, site, sys, sysconfig
paths = sysconfig.get_paths()
dirs = [paths["purelib"], paths["platlib"]]
try:
    dirs += site.getsitepackages()
except AttributeError:
    pass
dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
print(json.dumps({"dirs": dirs, "version": list(sys.version_info[:2]), "executable": sys.executable}))
"""


def _query_base(base_python: str) -> tuple[str, list[str]]:
    """``(sys.executable, package dirs)`` as reported by the base interpreter itself."""
    try:
        proc = subprocess.run([base_python, "-I", "-c", _BASE_SITE_SCRIPT], capture_output=True, text=True)
    except OSError as err:
        raise EnvError(f"cannot run base interpreter {base_python!r}: {err}") from err
    if proc.returncode != 0:
        raise EnvError(f"cannot query base interpreter {base_python}: {proc.stderr.strip()}")
    info = json.loads(proc.stdout)
    dirs: list[str] = []
    for d in info["dirs"]:
        real = os.path.realpath(d)
        if os.path.isdir(real) and real not in dirs:
            dirs.append(real)
    if not dirs:
        raise EnvError(f"base interpreter {base_python} reports no site-packages directory")
    return str(info["executable"]), dirs


def base_site_dirs(base_python: str) -> list[str]:
    """The base interpreter's package directories (purelib, platlib, ``site.getsitepackages()``).

    Asked of the base interpreter itself, so a base that is a venv reports its own site-packages.
    Only existing directories are returned, without duplicates, in the base's order.
    """
    return _query_base(base_python)[1]


def _run(cmd: list[str], what: str) -> None:
    log.debug("running %s", cmd)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise EnvError(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive fcntl lock on ``path`` (created if needed), waiting for other holders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process building %s", path.stem.lstrip("."))
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _site_packages(python: Path) -> Path:
    proc = subprocess.run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise EnvError(f"cannot query new env interpreter {python}: {proc.stderr.strip()}")
    return Path(proc.stdout.strip())


def _relocate_scripts(env: Path, new: Path) -> None:
    """Rewrite the temp build path to the final path in bin/ scripts (shebangs, activate) and pyvenv.cfg."""
    old_b, new_b = str(env).encode(), str(new).encode()
    for item in [*(env / "bin").iterdir(), env / "pyvenv.cfg"]:
        if item.is_symlink() or not item.is_file():
            continue
        data = item.read_bytes()
        if old_b in data and b"\0" not in data[:4096]:
            item.write_bytes(data.replace(old_b, new_b))


def build_env(
    framework: str,
    version: str,
    *,
    wheelhouse: Path | None = None,
    base_python: str = sys.executable,
    force: bool = False,
) -> Path:
    """Build (or reuse) the env of one framework version and return its folder.

    Steps: ``venv --without-pip`` in a temp folder beside the final one; ``pip --python ENV install
    --no-deps --no-compile -r envs/<framework>-<version>.txt`` run by the base interpreter's pip (from
    PyPI, or offline with ``--no-index --find-links wheelhouse``); then a ``.pth`` naming the base's
    site-packages (written after the install so pip never sees, nor touches, the base's packages);
    a check that torch resolves from the base; the marker file; and a rename into place, so a
    half-built env never looks ready. An existing env is reused unless ``force`` is set, its
    requirements hash changed, or it was built over another base interpreter. An fcntl lock keeps
    two processes from building the same env at once.
    """
    req = requirements_file(framework, version)
    req_hash = requirements_hash(req)
    final = env_dir(framework, version)
    root = final.parent
    found = shutil.which(base_python) if os.sep not in base_python else base_python
    if not found or not os.path.exists(found):
        raise EnvError(f"base interpreter {base_python!r} not found")
    # Its own sys.executable: stable across shims and relative names, and a venv base stays itself.
    base_python, site_dirs = _query_base(os.path.abspath(found))
    if wheelhouse is not None:
        wheelhouse = Path(wheelhouse).resolve()
        if not wheelhouse.is_dir():
            raise EnvError(f"wheelhouse {wheelhouse} is not a directory")

    with _locked(root / f".{final.name}.lock"):
        marker = read_marker(final)
        if (
            not force
            and marker is not None
            and env_python(final).exists()
            and marker.get("requirements_hash") == req_hash
            and marker.get("base_python") == base_python
        ):
            log.info("env %s is up to date", final)
            return final

        # Holding the lock, any temp folder of this env is a leftover of a killed build.
        for leftover in root.glob(f".{final.name}.*"):
            if leftover.is_dir() and leftover.suffix in (".building", ".old"):
                shutil.rmtree(leftover, ignore_errors=True)

        started = _dt.datetime.now(_dt.timezone.utc)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".building", dir=root))
        try:
            _run([base_python, "-m", "venv", "--without-pip", "--clear", str(tmp)], "creating venv")
            py = env_python(tmp)
            cmd = [
                base_python, "-m", "pip", "--python", str(py), "install",
                "--no-deps", "--no-compile", "--disable-pip-version-check", "--no-input",
            ]
            if wheelhouse is not None:
                cmd += ["--no-index", "--find-links", str(wheelhouse)]
            cmd += ["-r", str(req)]
            _run(cmd, f"installing {req.name}")

            site_pkgs = _site_packages(py)
            # addsitedir also processes the base's own .pth files (editable installs, etc.).
            lines = [f"import site; site.addsitedir({d!r})" for d in site_dirs]
            (site_pkgs / PTH_NAME).write_text(
                "# written by harness.launch.venvs: the base interpreter's packages, after this env's own\n"
                + "\n".join(lines) + "\n",
                encoding="utf-8",
            )
            _run(
                [str(py), "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)"],
                f"finding torch from the base interpreter {base_python} in the new env",
            )

            _relocate_scripts(tmp, final)
            info = {
                "framework": framework,
                "version": version,
                "requirements_file": str(req),
                "requirements_hash": req_hash,
                "base_python": base_python,
                "base_site_dirs": site_dirs,
                "wheelhouse": str(wheelhouse) if wheelhouse else None,
                "created": started.isoformat(timespec="seconds"),
                "build_seconds": round((_dt.datetime.now(_dt.timezone.utc) - started).total_seconds(), 1),
            }
            (tmp / MARKER_NAME).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

            old = None
            if final.exists() or final.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=root))
                os.replace(final, old / "env")
            os.replace(tmp, final)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("built env %s in %.1f s", final, info["build_seconds"])
    return final
