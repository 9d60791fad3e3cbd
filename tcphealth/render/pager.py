"""A pager for output taller than the terminal, as git and systemctl do it.

Only at a terminal (:attr:`Environment.pager` is None into a pipe or a file, and with
``--no-pager``): the output is written into memory first, then straight to the terminal when
it fits the screen, else through the pager, so the verdict at the top can be read before the
detail scrolls it away.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import signal
from collections.abc import Iterator

from tcphealth.render.environment import DEFAULT_PAGER, Environment


def fits(text: str, height: int | None) -> bool:
    """Whether ``text`` fits a screen of ``height`` lines with the prompt's line left over."""
    return height is None or text.count("\n") < height


@contextlib.contextmanager
def paged(env: Environment) -> Iterator[Environment]:
    """An environment to render into; on leaving, what was rendered goes to the terminal,
    through the pager when it is taller than the screen. Without a pager, ``env`` itself."""
    if env.pager is None:
        yield env
        return
    buffer = io.StringIO()
    yield dataclasses.replace(env, stdout=buffer)
    text = buffer.getvalue()
    if fits(text, env.height) or not show_in_pager(env.pager, text):
        env.stdout.write(text)


def pager_environment(command: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The pager's environment: ``LESS=FRX`` for less when LESS is not set (leave at once when
    it fits, keep the colours, leave the text on the screen), as git does."""
    child = dict(os.environ if environ is None else environ)
    if command == DEFAULT_PAGER or command.split()[:1] == ["less"]:
        child.setdefault("LESS", "FRX")
    child.setdefault("LV", "-c")  # lv, the other common pager, keeps colours with -c
    return child


def show_in_pager(command: str, text: str) -> bool:
    """Run ``command`` through the shell (``$PAGER`` may carry options) with ``text`` on its
    standard input, and wait for it. False if it could not start: the caller prints the text
    itself, so a wrong $PAGER never loses the report."""
    import subprocess  # only a paged run needs it

    try:
        pager = subprocess.Popen(
            command, shell=True, stdin=subprocess.PIPE, env=pager_environment(command)
        )
    except OSError:
        return False
    assert pager.stdin is not None
    # Ctrl-C belongs to the pager while it runs (less uses it to stop a search); this
    # process waits for the pager to end instead of dying under it.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with contextlib.suppress(BrokenPipeError):  # the person quit before the end
            pager.stdin.write(text.encode("utf-8", "replace"))
        with contextlib.suppress(BrokenPipeError):
            pager.stdin.close()
        status = pager.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    # 126/127: the shell could not find or run the command; the text was not shown.
    return status not in (126, 127)
