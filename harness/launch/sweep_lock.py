"""One sweep at a time per results dir: ``RESULTS_DIR/.sweep.lock``.

Two sweeps into one results dir would train the same run dirs at once, read each other's
``worker_result.json`` and slow each other down while both record ``ok``. The exclusion itself is an
``fcntl.flock`` on the lock file, held for the whole sweep: the kernel drops it when the holder
exits, however it exits, so a crashed sweep never blocks the next. The file's text (pid, host, start
time, command) is only for the refusal message and for naming a stale holder: text left behind by a
sweep that died (``kill -9``) is taken over with a one-line warning. The descriptor is not inherited
by workers (Python opens files non-inheritable), so an orphaned worker never holds the lock.

A released lock file is deleted (nothing is left in the results dir), which is why an acquired lock
is checked to still be the file at its path: a waiter may have locked the inode just unlinked.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from harness.launch.child import pid_alive

LOCK_NAME = ".sweep.lock"


class LockError(Exception):
    """The results dir cannot be locked; the message is the one line the user sees (exit 2)."""


class LockBusy(LockError):
    """Another live sweep holds the results dir."""


@dataclass
class Holder:
    pid: int
    host: str
    since: str
    command: str = ""

    @staticmethod
    def me(command: str) -> "Holder":
        return Holder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"), command)

    @staticmethod
    def parse(text: str) -> "Holder | None":
        try:
            data = json.loads(text)
            return Holder(int(data["pid"]), str(data["host"]), str(data["since"]), str(data.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} since {self.since}"


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace").strip()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


class SweepLock:
    """The lock on one results dir. ``acquire`` raises LockBusy (or waits); ``release`` is idempotent."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / LOCK_NAME
        self.fd: int | None = None

    def _busy_message(self, text: str) -> str:
        holder = Holder.parse(text)
        who = holder.describe() if holder else "another sweep"
        return f"{self.results_dir} is in use by {who}; wait_for_lock=true waits"

    def acquire(self, command: str, *, wait: bool = False, warn: Callable[[str], None] = print) -> None:
        announced = False
        while True:
            try:
                self.results_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise LockError(f"results_dir: cannot lock {self.path}: {err.strerror or err}") from None
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    message = self._busy_message(_read(fd))
                    if not wait:
                        raise LockBusy(message) from None
                    if not announced:
                        warn(f"waiting: {message.split(';')[0]}")
                        announced = True
                    fcntl.flock(fd, fcntl.LOCK_EX)  # a stop signal raises out of the wait
                if not _same_file(fd, self.path):  # the holder released (deleted) it while we waited
                    os.close(fd)
                    continue
                self._take_over(fd, warn)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            text = json.dumps(asdict(Holder.me(command))) + "\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, text.encode(), 0)
            os.fsync(fd)
            return

    def _take_over(self, fd: int, warn: Callable[[str], None]) -> None:
        """We hold the flock; text in the file means its writer died without releasing it."""
        text = _read(fd)
        if not text:
            return
        holder = Holder.parse(text)
        if holder is None:
            warn(f"warning: {self.path}: unreadable lock text ({text[:60]!r}); taking the lock over")
        elif holder.pid == os.getpid() and holder.host == socket.gethostname():
            return
        else:
            gone = ("its pid is gone" if not pid_alive(holder.pid) else "pid reused; it no longer holds the lock") \
                if holder.host == socket.gethostname() else "it no longer holds the lock"
            warn(f"warning: taking over the stale lock of {self.results_dir} from {holder.describe()} ({gone})")

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)  # while still holding it: see the module docstring
        finally:
            os.close(fd)  # drops the flock
