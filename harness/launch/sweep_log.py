"""What a sweep prints goes to ``RESULTS_DIR/sweep.log`` as well, and a closed stdout never ends it.

``python -m harness run -m | head -1`` closes the pipe after one line; ssh hanging up leaves a
terminal that answers EIO. Python then raises on the next ``print`` (BrokenPipeError), which used to
end the sweep mid-run and orphan the worker. While a sweep runs, ``sys.stdout`` and ``sys.stderr``
are :class:`Tee` streams: every line is appended to each results dir's ``sweep.log`` (a header line
per sweep says who wrote what follows), and a console that has gone away is pointed at /dev/null
once, with one note in the log, so every later write (Hydra's logging handlers hold the stream too,
and the interpreter flushes it at exit) succeeds.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

LOG_NAME = "sweep.log"


class Tee:
    """A text stream writing to ``console`` (until it is gone) and to every log file."""

    def __init__(self, console: IO[str], logs: list[IO[str]], name: str) -> None:
        self.console, self.logs, self.name = console, logs, name
        self.console_gone = False

    def _console_failed(self) -> None:
        self.console_gone = True
        try:  # later writes through any reference to the old stream (and its exit flush) go nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.console.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        self._log(f"[{self.name} closed: the sweep goes on; its output continues only in this log]\n")

    def _log(self, text: str) -> None:
        for log in self.logs:
            try:
                log.write(text)
                log.flush()
            except (OSError, ValueError):  # a full disk must not end the sweep either
                pass

    def write(self, text: str) -> int:
        if not self.console_gone:
            try:
                self.console.write(text)
            except (OSError, ValueError):  # EPIPE, EIO, a full disk, a closed file: never the sweep's end
                self._console_failed()
        self._log(text)
        return len(text)

    def flush(self) -> None:
        if self.console_gone:
            return
        try:
            self.console.flush()
        except (OSError, ValueError):
            self._console_failed()

    def isatty(self) -> bool:
        return not self.console_gone and self.console.isatty()

    def fileno(self) -> int:
        return self.console.fileno()

    def __getattr__(self, name: str):  # encoding, errors, buffer...: what libraries ask of sys.stdout
        return getattr(self.console, name)


def header(command: str) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    return f"\n== sweep by pid {os.getpid()} on {socket.gethostname()} at {started}: {command}\n"


@contextmanager
def teeing(results_dirs: list[Path], command: str) -> Iterator[list[Path]]:
    """Send stdout and stderr to the console and to ``DIR/sweep.log`` of each results dir."""
    paths = [Path(d) / LOG_NAME for d in results_dirs]
    logs: list[IO[str]] = []
    for path in paths:
        try:
            logs.append(open(path, "a", encoding="utf-8", errors="replace"))  # noqa: SIM115  (closed below)
        except OSError as err:  # the sweep runs without this log rather than not at all
            print(f"warning: no sweep log at {path}: {err}", file=sys.stderr)
    out, err = Tee(sys.stdout, logs, "stdout"), Tee(sys.stderr, logs, "stderr")
    out._log(header(command))
    previous = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield paths
    finally:
        for stream in (out, err):
            try:
                stream.flush()
            except OSError:
                pass
        sys.stdout, sys.stderr = previous
        for log in logs:
            log.close()
