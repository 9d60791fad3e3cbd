"""tcphealth as a person sees it: run in a real pseudo-terminal of a given size, its output fed
to a terminal emulator (pyte), and the screen read back row by row.

Only what a test starts is stopped (by its pid), and every run is bounded in time: a child
still running at the deadline is killed and the test fails.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pyte

ROOT = Path(__file__).resolve().parent.parent
TCPHEALTH = [sys.executable, "-m", "tcphealth"]


@dataclass
class Run:
    """What one run left: its exit status, every byte it wrote to the terminal, and the
    rows as the emulator shows them (``transcript``: the rows scrolled off the top too)."""

    status: int
    raw: bytes
    screen: list[str]
    transcript: list[str]

    def visible(self, text: str) -> bool:
        return any(text in row for row in self.screen)


def _rows(screen: pyte.Screen, lines: object) -> list[str]:
    return [
        "".join(line[column].data for column in range(screen.columns)).rstrip()
        for line in lines  # type: ignore[attr-defined]
    ]


def emulate(raw: bytes, columns: int, lines: int) -> tuple[list[str], list[str]]:
    """The screen ``raw`` leaves on a terminal of that size, and the whole transcript."""
    screen = pyte.HistoryScreen(columns, lines, history=100_000, ratio=0.5)
    pyte.ByteStream(screen).feed(raw)
    shown = _rows(screen, (screen.buffer[row] for row in range(screen.lines)))
    scrolled = _rows(screen, screen.history.top)
    return shown, scrolled + shown


def _clean_environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    environ = {
        key: value
        for key, value in os.environ.items()
        # the terminal's own size must decide, and no pager or colour choice of the caller's
        if key not in ("COLUMNS", "LINES", "PAGER", "TCPHEALTH_PAGER", "LESS", "NO_COLOR")
    }
    environ.update(TERM="xterm-256color", PYTHONPATH=str(ROOT))
    environ.update(extra or {})
    return environ


def run_in_terminal(
    args: list[str],
    columns: int = 80,
    lines: int = 24,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    answer: Callable[[bytes], bytes | None] | None = None,
    interrupt_when: Callable[[bytes], bool] | None = None,
    stdout_to: int | None = None,
) -> Run:
    """Run ``tcphealth ARGS`` with stdin, stdout and stderr on a new pseudo-terminal of
    ``columns`` x ``lines``. ``answer(raw so far)`` may return keys to type (``b"q"`` to leave
    a pager); ``interrupt_when(raw so far)`` true sends one SIGINT, as Ctrl-C does.
    ``stdout_to``: a file descriptor for stdout instead (piped output, stderr on the terminal)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    child = subprocess.Popen(
        [*TCPHEALTH, *args],
        stdin=slave,
        stdout=slave if stdout_to is None else stdout_to,
        stderr=slave,
        cwd=ROOT,
        env=_clean_environment(env),
        start_new_session=True,  # its own session: the pty becomes its controlling terminal
        # Ctrl-C must reach it even when this test runs under a shell that ignores SIGINT
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    os.close(slave)
    raw = bytearray()
    interrupted = False
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"tcphealth {' '.join(args)} still ran after {timeout} s")
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every holder of the terminal's other side is gone
                    break
                if not chunk:
                    break
                raw.extend(chunk)
                if answer is not None:
                    keys = answer(bytes(raw))
                    if keys:
                        os.write(master, keys)
                if interrupt_when is not None and not interrupted and interrupt_when(bytes(raw)):
                    child.send_signal(signal.SIGINT)
                    interrupted = True
            elif child.poll() is not None:
                # exited; what it wrote is read above until EIO
                ready, _, _ = select.select([master], [], [], 0.2)
                if not ready:
                    break
        status = child.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    screen, transcript = emulate(bytes(raw), columns, lines)
    return Run(status, bytes(raw), screen, transcript)
