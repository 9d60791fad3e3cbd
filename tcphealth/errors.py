"""Errors a source raises when its input cannot be read. The CLI turns every one of them into a
single line on stderr and exit code 3."""

from __future__ import annotations


class InputError(Exception):
    """The input (a file, a /proc tree, a paste) could not be read as what it claims to be.

    ``where`` names the file (and ``line`` the 1-based line number where there is one), so the
    message points at the exact place.
    """

    def __init__(self, where: str, problem: str, *, line: int | None = None) -> None:
        self.where = where
        self.problem = problem
        self.line = line
        location = f"{where}:{line}" if line is not None else where
        super().__init__(f"{location}: {problem}")


class ProcParseError(InputError):
    """A /proc/net/tcp-style table is malformed or is not a TCP table at all."""


class SnapshotFormatError(InputError):
    """A snapshot file is not JSON, not ours, of a newer version, or of the wrong shape."""


class SourceUnavailableError(Exception):
    """The requested live source does not exist on this host (no /proc, no psutil support)."""
