"""``python -m harness env build [framework=NAME[,NAME...]] [version=V] [wheelhouse=DIR] [force=true]
[python=BASE]`` and ``python -m harness env list``: build or show the per-framework environments
(harness/launch/venvs.py)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.launch import venv_build, venvs
from harness.cli.args import OneLineParser, parse
from harness.frameworks import registry

BUILD_OPTIONS = ("framework", "version", "wheelhouse", "force", "python")


def default_version(framework: str) -> str:
    """The version ``conf/framework/NAME.yaml`` runs by default, for a framework with a pinned env."""
    if framework not in registry.buildable():
        raise venvs.EnvError(f"framework: Unknown framework {framework!r}. Available: {', '.join(registry.buildable())}")
    return registry.entry(framework).default_version


def _parse(argv: list[str]) -> dict[str, str]:
    options = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in BUILD_OPTIONS:
            raise venvs.EnvError(f"unknown argument {arg!r} (expected {'=, '.join(BUILD_OPTIONS)}=)")
        options[key] = value
    return options


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m harness env", description="Build or list the per-framework "
                           "environments (a venv per framework version over this interpreter's torch).")
    commands = parser.add_subparsers(dest="command", title="commands", required=True, parser_class=OneLineParser)
    build = commands.add_parser("build", help="build (or reuse) environments from envs/NAME-VERSION.txt",
                                description="Build the environment of each framework and version (default: "
                                "every framework with an envs/NAME-VERSION.txt, at its conf/framework/ version).")
    build.add_argument("options", nargs="*", metavar="KEY=VALUE",
                       help="framework=NAME[,NAME...] version=V[,V...] wheelhouse=DIR (offline) force=true "
                            "python=BASE_INTERPRETER")
    commands.add_parser("list", help="list the pinned versions and the state of their environments",
                        description="List every pinned framework version, its environment's state and folder.")
    return parser


def _list() -> None:
    for framework in registry.buildable():
        for version in registry.pinned_versions(framework):
            state, _ = venvs.env_status(framework, version)
            print(f"{framework:13s} {version:12s} {state:10s} {venvs.env_dir(framework, version)}")


def main(argv: list[str]) -> int:
    args = parse(_parser(), argv)
    if isinstance(args, int):
        return args
    try:
        if args.command == "list":
            _list()
            return 0
        options = _parse(args.options)
        frameworks = options.get("framework", ",".join(registry.buildable())).split(",")
        for framework in frameworks:
            versions = options.get("version") or default_version(framework)
            for version in versions.split(","):
                env = venv_build.build_env(framework, version,
                                     wheelhouse=Path(options["wheelhouse"]) if options.get("wheelhouse") else None,
                                     base_python=options.get("python", sys.executable),
                                     force=options.get("force", "false").lower() == "true")
                print(f"{framework} {version}: {env}")
    except venvs.EnvError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
