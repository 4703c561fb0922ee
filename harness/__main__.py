"""Command line: ``python -m harness {run,plan,report,compare,audit,env} ...`` (``COMMANDS``).

``run`` hands its arguments to Hydra (``-m`` for a sweep) after checking every job of the sweep;
a bad value exits 2 with one line before anything trains. Every command and sub-command answers
``--help`` with its help and exit 0 (tests/test_help.py walks them from the ``commands:`` list of
``python -m harness --help``). The run history (``results/history/*.jsonl``) has no command of its
own: ``report --trend`` renders it and ``compare`` checks against accepted baselines.
"""
from __future__ import annotations

import gc
import os
import sys

from harness.cli.args import fail as _fail, single_line as _single_line

# name -> ("module:function" that takes the argv after the name and returns the exit code, one-line synopsis)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("harness.cli.run:main", "[OVERRIDES...] [-m]   train and measure (Hydra; -m sweeps, e.g. "
                                "framework=NAME,NAME)"),
    "plan": ("harness.cli.plan:main", "[OVERRIDES...] [-m]   print the jobs (point hash, run folders) a run command "
                                  "would start; runs nothing (--json)"),
    "report": ("harness.cli.report:main", "[RESULTS...]          render the HTML comparison report (--trend: history)"),
    "compare": ("harness.cli.compare:main", "[--accept] ...        check results against the machine's baseline "
                                   "(exit 1 on a regression)"),
    "audit": ("harness.cli.audit:main", "[RESULTS...]          fairness audit of finished runs (exit 3 if a strict "
                                   "comparison is refused)"),
    "env": ("harness.cli.env:main", "build|list ...        build or list the per-framework environments"),
}
USAGE = ("usage: python -m harness COMMAND [ARGS]   (python -m harness COMMAND --help for a command's help)\n"
         "commands:\n" + "".join(f"  {name:8s} {synopsis}\n" for name, (_, synopsis) in COMMANDS.items()))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        return _fail(f"unknown command {command!r} (commands: {', '.join(COMMANDS)}; python -m harness --help)")
    import importlib

    module, function = COMMANDS[command][0].split(":")
    if command == "run":  # handles its own failures (preflight, Hydra, the sweep's results)
        return getattr(importlib.import_module(module), function)(rest)
    try:
        return getattr(importlib.import_module(module), function)(rest)
    except BrokenPipeError:
        raise  # the reader of our output left (`| head`): console_main exits quietly
    except Exception as err:  # a bug, or input no check foresaw: still one readable line
        if os.environ.get("HARNESS_DEBUG"):
            raise
        return _fail(_single_line(f"{command} failed unexpectedly ({type(err).__name__}: {err}); "
                                  "set HARNESS_DEBUG=1 for the traceback"), code=1)


def console_main() -> None:
    try:
        code = main(sys.argv[1:])
    except BrokenPipeError:
        # `python -m harness run --help | head`: the reader left; no traceback (Python's documented recipe:
        # point stdout at devnull so the interpreter's own flush at exit does not raise again).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 141  # 128 + SIGPIPE, as a shell reports a command a pipe ended
    except KeyboardInterrupt:
        # Ctrl-C before a sweep installs its own handlers (preflight reading a large dataset, a Hub lookup) or
        # in another command: one line and 130, not a traceback. Results are written atomically, so nothing
        # is torn; a sweep's own interruptions never get here (harness.launch.interrupts, exit 128 + N).
        before = " before any run started" if sys.argv[1:2] == ["run"] else ""
        code = _fail(f"interrupted by SIGINT (Ctrl-C){before}", code=130)
    # Done: spare the exit a garbage collection of every object Hydra, pandas and matplotlib created (a tenth
    # of a second or more per command); atexit handlers still run and the standard streams are still flushed.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    console_main()
