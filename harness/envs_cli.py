"""``python -m harness env build framework=NAME[,NAME...] [version=V] [wheelhouse=DIR] [force=true]``
and ``python -m harness env list``: build or show the per-framework environments (harness/envs.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from harness import envs
from harness.preflight import CONF_DIR

BUILDABLE = ("trl", "unsloth", "llamafactory")


def default_version(framework: str) -> str:
    path = CONF_DIR / "framework" / f"{framework}.yaml"
    if framework not in BUILDABLE or not path.exists():
        raise envs.EnvError(f"framework: unknown framework {framework!r} (known: {', '.join(BUILDABLE)})")
    return str(OmegaConf.load(path).version)


def _parse(argv: list[str]) -> dict[str, str]:
    options = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in ("framework", "version", "wheelhouse", "force", "python"):
            raise envs.EnvError(f"unknown argument {arg!r} (expected framework=, version=, wheelhouse=, force=, python=)")
        options[key] = value
    return options


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["list"]:
            for framework in BUILDABLE:
                for req in sorted(envs.REQUIREMENTS_DIR.glob(f"{framework}-*.txt")):
                    version = req.stem.split("-", 1)[1]
                    state, _ = envs.env_status(framework, version)
                    print(f"{framework:13s} {version:12s} {state:10s} {envs.env_dir(framework, version)}")
            return 0
        if argv[:1] != ["build"]:
            print(__doc__, file=sys.stderr)
            return 2
        options = _parse(argv[1:])
        frameworks = options.get("framework", ",".join(BUILDABLE)).split(",")
        for framework in frameworks:
            versions = options.get("version") or default_version(framework)
            for version in versions.split(","):
                env = envs.build_env(framework, version,
                                     wheelhouse=Path(options["wheelhouse"]) if options.get("wheelhouse") else None,
                                     base_python=options.get("python", sys.executable),
                                     force=options.get("force", "false").lower() == "true")
                print(f"{framework} {version}: {env}")
    except envs.EnvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
