"""Where output goes and what it may look like, as one value the CLI builds and tests replace.

Nothing in the renderers asks the process whether stdout is a terminal or what ``NO_COLOR``
says; they read an :class:`Environment`. Tests build one around a ``StringIO`` with the width
and colour they want.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TextIO

DEFAULT_WIDTH = 80


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def _terminal_width(stream: TextIO) -> int | None:
    try:
        return os.get_terminal_size(stream.fileno()).columns or None
    except (AttributeError, ValueError, OSError):
        return None


def _terminal_height(stream: TextIO) -> int | None:
    try:
        return os.get_terminal_size(stream.fileno()).lines or None
    except (AttributeError, ValueError, OSError):
        return None


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and int(text) > 0 else None


# --color: auto (a terminal, unless NO_COLOR or TERM=dumb), always (also into `less -R` or a
# file), never.
COLOR_CHOICES = ("auto", "always", "never")
# The pager when neither TCPHEALTH_PAGER nor PAGER names one; LESS=FRX is set for it when
# LESS is not set (as git does): quit if one screen, keep colours, leave the text on screen.
DEFAULT_PAGER = "less"
PAGER_OFF = ("", "cat")  # TCPHEALTH_PAGER= or TCPHEALTH_PAGER=cat: no pager


def choose_pager(environ: Mapping[str, str], stdout_isatty: bool, no_pager: bool) -> str | None:
    """The pager command for this run, or None: never into a pipe or a file, never with
    ``--no-pager``; ``TCPHEALTH_PAGER`` first (empty or ``cat`` turns paging off), then
    ``PAGER``, then ``less``."""
    if not stdout_isatty or no_pager:
        return None
    for name in ("TCPHEALTH_PAGER", "PAGER"):
        if name in environ:
            command = environ[name].strip()
            return None if command in PAGER_OFF else command
    return DEFAULT_PAGER


@dataclass(frozen=True)
class Environment:
    stdout: TextIO
    stderr: TextIO
    stdout_isatty: bool = False
    color: bool = False
    width: int = DEFAULT_WIDTH
    height: int | None = None  # the terminal's lines; None when stdout is no terminal
    stderr_isatty: bool = False  # progress is drawn only on a terminal
    pager: str | None = None  # the command output taller than the screen goes through
    quiet: bool = False  # --quiet: no notes on stderr (warnings and errors still)

    @property
    def default_format(self) -> str:
        """A table for a person at a terminal; plain lines for a pipe or a file."""
        return "table" if self.stdout_isatty else "plain"

    @classmethod
    def detect(
        cls,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
        *,
        color: str = "auto",
        no_pager: bool = False,
        quiet: bool = False,
    ) -> Environment:
        """Look at the real streams: colour only on a terminal, never with ``NO_COLOR`` set
        (https://no-color.org: any non-empty value) or ``TERM=dumb``, unless ``color`` is
        ``always`` (or ``never``). The width is ``$COLUMNS`` when set, else the terminal's,
        else 80; the height ``$LINES``, else the terminal's."""
        out = stdout if stdout is not None else sys.stdout
        err = stderr if stderr is not None else sys.stderr
        env = os.environ if environ is None else environ
        isatty = _isatty(out)
        if color == "always":
            colored = True
        elif color == "never":
            colored = False
        else:
            colored = isatty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"
        width = _number(env.get("COLUMNS")) or (_terminal_width(out) if isatty else None)
        height = (_number(env.get("LINES")) or _terminal_height(out)) if isatty else None
        return cls(
            stdout=out,
            stderr=err,
            stdout_isatty=isatty,
            color=colored,
            width=width or DEFAULT_WIDTH,
            height=height,
            stderr_isatty=_isatty(err),
            pager=choose_pager(env, isatty, no_pager),
            quiet=quiet,
        )
