"""A worker whose harness parent is gone ends its own process group.

The parent ends the worker's group on every signal it can catch (harness.launch.interrupts), but nothing
runs in a parent killed with SIGKILL (``kill -9``, the kernel's OOM killer, a job scheduler's hard kill):
the worker, in a session of its own, trained on to its end as an orphan, holding the GPU that the next
sweep then measured beside it, and its result was never assembled. The parent passes its pid and start
time (``HARNESS_PARENT``: ``PID:START``, the start time so that a reused pid is not mistaken for it); a
daemon thread checks once a second and, once the parent is gone, sends SIGTERM to the worker's process
group: this worker, and under torchrun the agent and every rank (started in one session by the parent).
"""
from __future__ import annotations

import os
import signal
import threading
import time

PARENT_ENV = "HARNESS_PARENT"
POLL_S = 1.0


def parent_token() -> str:
    """``PID:START`` of this process, for its worker's environment."""
    import psutil  # noqa: PLC0415

    return f"{os.getpid()}:{psutil.Process().create_time():.3f}"


def parent_alive(token: str) -> bool:
    """Whether the process ``token`` names still runs (not exited, not a zombie, not a newer one on its pid)."""
    import psutil  # noqa: PLC0415

    pid_text, _, start = token.partition(":")
    try:
        parent = psutil.Process(int(pid_text))
        return parent.status() != psutil.STATUS_ZOMBIE and f"{parent.create_time():.3f}" == start
    except (psutil.NoSuchProcess, ValueError):
        return False
    except psutil.Error:  # not ours to inspect: assume it runs rather than end a run wrongly
        return True


def watch_parent(token: str | None = None, poll_s: float = POLL_S) -> threading.Thread | None:
    """Start the watch (a daemon thread) when the environment names a parent; None when it names none (a
    worker started by hand or by a test)."""
    token = token if token is not None else os.environ.get(PARENT_ENV)
    if not token:
        return None

    def watch() -> None:
        while parent_alive(token):
            time.sleep(poll_s)
        print(f"worker: the harness parent ({token.split(':')[0]}) is gone; ending this run's process group",
              flush=True)
        os.killpg(os.getpgrp(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="harness-parent-watch", daemon=True)
    thread.start()
    return thread
