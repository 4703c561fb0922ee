"""Signals that stop a sweep: SIGINT (Ctrl-C), SIGTERM (Slurm's scancel, ``timeout``, ``kill``) and
SIGHUP (a closed ssh session) all end the sweep the same way, in the parent's main thread.

Python's defaults differ (SIGINT raises KeyboardInterrupt, SIGTERM and SIGHUP end the process at
once, which orphans the worker: it is in a session of its own and keeps training on the GPU). While a
sweep runs, each of the three raises :class:`SweepInterrupted` instead, a KeyboardInterrupt that
knows its signal, so every ``except KeyboardInterrupt`` on the way up (the runner ending the worker's
process group, the run recorded ``interrupted``) runs for all three. The parent then exits 128+N.

Two sections must not be cut in half: ending the worker's process group (a second Ctrl-C must not
leave ranks behind) and writing a finished run's result and history line. :func:`shielded` holds a
signal that arrives inside them until the section is done.
"""
from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class SweepInterrupted(KeyboardInterrupt):
    """The sweep was told to stop by ``signum``; the parent exits ``128 + signum``."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        self.signum = int(signum)
        super().__init__(f"interrupted by {self.name}")

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def as_interruption(err: BaseException) -> SweepInterrupted:
    """A plain KeyboardInterrupt (Python's own SIGINT handler, outside a sweep) counts as SIGINT."""
    return err if isinstance(err, SweepInterrupted) else SweepInterrupted(signal.SIGINT)


def reason(err: BaseException) -> str:
    """The ``reason`` of a run the signal interrupted."""
    stop = as_interruption(err)
    how = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "e.g. scancel, timeout, kill",
           signal.SIGHUP: "the terminal or ssh session closed"}.get(signal.Signals(stop.signum), "")
    return f"interrupted by {stop.name}" + (f" ({how})" if how else "") + "; the worker's process group was ended"


def child_signal(err: BaseException) -> int:
    """What the worker's process group is sent first: SIGINT stays SIGINT, the others become SIGTERM
    (what torchrun forwards to its ranks and what a Python worker dies of by default). The runner
    escalates to SIGKILL after its grace period either way."""
    return signal.SIGINT if as_interruption(err).signum == signal.SIGINT else signal.SIGTERM


class _State:
    installed = False
    first: int | None = None      # the signal that stopped the sweep (decides the exit status)
    shield_depth = 0
    pending = False               # the first signal arrived inside a shielded section
    abortable = False             # a later signal may cut short what runs now (the partial report)
    quiet = False                 # the sweep is over: a signal only decides the exit status


def _handler(signum: int, frame: FrameType | None) -> None:
    if _State.quiet:
        _State.first = _State.first or signum
        return
    if _State.first is not None:
        # Already stopping: the worker is being ended and its run recorded. A second signal must not
        # cut that short (it would orphan ranks or lose the record); it only skips the final report.
        if _State.abortable:
            raise SweepInterrupted(_State.first)
        note(f"{signal.Signals(signum).name}: already stopping (ending the worker, recording its run)")
        return
    _State.first = signum
    if _State.shield_depth:
        _State.pending = True
        return
    raise SweepInterrupted(signum)


def received() -> int | None:
    """The first stop signal received since :func:`handling` began, or None."""
    return _State.first


@contextmanager
def handling() -> Iterator[None]:
    """Install the stop handlers for the body (main thread only); restore the previous ones after."""
    if threading.current_thread() is not threading.main_thread() or _State.installed:
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _State.installed, _State.first, _State.pending, _State.shield_depth = True, None, False, 0
    _State.abortable = _State.quiet = False
    for s in STOP_SIGNALS:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _State.installed = False


@contextmanager
def shielded() -> Iterator[None]:
    """Hold a stop signal until the body is done; then raise it, unless an exception (the
    interruption being handled, say) is already on its way out."""
    _State.shield_depth += 1
    try:
        yield
    except KeyboardInterrupt:
        _State.pending = False  # the interruption is already on its way out
        raise
    finally:
        _State.shield_depth -= 1
    if not _State.shield_depth and _State.pending:
        _State.pending = False
        raise SweepInterrupted(_State.first or signal.SIGINT)


def quiet() -> None:
    """The sweep is over (locks being released): no signal raises until :func:`handling` ends."""
    _State.quiet = True


@contextmanager
def abortable() -> Iterator[None]:
    """After an interruption: a further signal may end the body (it is only the report)."""
    _State.abortable = True
    try:
        yield
    finally:
        _State.abortable = False


def note(message: str) -> None:
    """A line on stderr that never raises (stderr may be a closed pipe or a hung-up terminal)."""
    try:
        print(message, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
