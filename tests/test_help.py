"""Every command and sub-command answers ``--help`` with its help and exit 0 (issue 12).

The commands are discovered from the CLI itself: the ``commands:`` section of ``python -m harness --help``
and, recursively, of each command's own help (argparse lists sub-commands as ``{build,list}`` there), so a
new command or sub-command is walked without touching this test.
"""
from __future__ import annotations

import re

from tests.cli import harness


def subcommands(help_text: str) -> list[str]:
    """The names listed under a ``commands:`` heading: ``  NAME  synopsis`` lines or argparse's ``{a,b}``."""
    lines = help_text.splitlines()
    if "commands:" not in lines:
        return []
    names: list[str] = []
    for line in lines[lines.index("commands:") + 1:]:
        if not line.strip():
            break
        choices = re.match(r"^\s+\{([^}]+)\}", line)
        if choices:
            return choices[1].split(",")
        if re.match(r"^  \S", line):  # deeper-indented lines are descriptions
            names.append(line.split()[0])
    return names


def walk(path: tuple[str, ...]) -> list[tuple[str, ...]]:
    run = harness(*path, "--help", timeout=120)
    assert run.returncode == 0, f"`python -m harness {' '.join(path)} --help`: rc={run.returncode}\n{run.stderr}"
    assert run.stdout.strip(), f"`{' '.join(path)} --help` printed no help"
    assert "Traceback" not in run.stdout + run.stderr
    assert "error:" not in run.stderr
    if path:
        assert path[-1] in run.stdout or path == ("run",), run.stdout  # the help is the command's own
    walked = [path]
    for name in subcommands(run.stdout):
        walked += walk((*path, name))
    return walked


def test_every_command_and_subcommand_has_help():
    walked = walk(())
    # the walk found the commands (it cannot pass by finding none); their number comes from the CLI itself
    from harness.__main__ import COMMANDS

    assert {p[0] for p in walked if p} == set(COMMANDS)
    assert any(len(p) == 2 for p in walked), walked  # env build / env list were reached


def test_subcommand_parser_reads_both_layouts():
    assert subcommands("usage: x\ncommands:\n  run   [A]  does\n  env   b\n\nmore") == ["run", "env"]
    assert subcommands("commands:\n  {build,list}\n    build  x\n    list  y\n") == ["build", "list"]
    assert subcommands("no commands here") == []


def test_run_help_is_what_a_user_types_not_the_composed_config():
    run = harness("run", "--help", timeout=120)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and lines[0].startswith("python -m harness run [GROUP=OPTION ...]")
    assert len(lines) < 40, len(lines)  # Hydra's default printed the whole composed config: 261 lines
    assert any(line.startswith("framework: ") for line in lines) and "plan [OVERRIDES] --json" in run.stdout


def test_a_reader_that_leaves_early_gets_no_traceback():
    """``python -m harness plan --json | head -1``: the pipe closes; the harness exits quietly."""
    import subprocess
    import sys

    from tests.cli import REPO_ROOT

    proc = subprocess.Popen([sys.executable, "-m", "harness", "plan", "framework=trl,llamafactory,swift,axolotl",
                             "train.seed=1,2,3,4,5,6,7,8", "repeats=20", "-m", "--json"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.read(1) == b"["
    proc.stdout.close()  # the reader leaves while ~120 KB, more than a pipe holds, are still to come
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) in (0, 141) and "Traceback" not in err and "BrokenPipe" not in err, err
