"""Helpers for the child processes a collection forks (the fd walk, the dump relay)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def can_fork() -> bool:
    """Whether forking a helper is safe here. fork() copies only the calling thread: with
    others running, a lock one of them holds would stay held in the child forever. (Without
    threading imported, no other thread was started from Python.)"""
    threading = sys.modules.get("threading")
    return hasattr(os, "fork") and (threading is None or threading.active_count() == 1)


def stop(pid: int) -> None:
    """Kill our child ``pid`` if it still runs, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
