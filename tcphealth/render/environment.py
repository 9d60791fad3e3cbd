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


@dataclass(frozen=True)
class Environment:
    stdout: TextIO
    stderr: TextIO
    stdout_isatty: bool = False
    color: bool = False
    width: int = DEFAULT_WIDTH

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
    ) -> Environment:
        """Look at the real streams: colour only on a terminal, never with ``NO_COLOR`` set
        (https://no-color.org: any non-empty value) or ``TERM=dumb``. The width is
        ``$COLUMNS`` when set, else the terminal's, else 80."""
        out = stdout if stdout is not None else sys.stdout
        err = stderr if stderr is not None else sys.stderr
        env = os.environ if environ is None else environ
        isatty = _isatty(out)
        color = isatty and not env.get("NO_COLOR") and env.get("TERM") != "dumb"
        width: int | None = None
        columns = env.get("COLUMNS", "")
        if columns.isdigit() and int(columns) > 0:
            width = int(columns)
        elif isatty:
            width = _terminal_width(out)
        return cls(
            stdout=out,
            stderr=err,
            stdout_isatty=isatty,
            color=color,
            width=width or DEFAULT_WIDTH,
        )
