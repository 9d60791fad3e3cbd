"""A copy of /proc/net/tcp or /proc/net/tcp6 pasted as text: one capture or several.

The rows are read by :class:`tcphealth.sources.procfs.TableReader`; this module only finds
the pieces. The family comes from the address width (8 hex digits IPv4, 32 IPv6). A new capture
starts where the header repeats or ``sl`` restarts at 0 -- unless the piece is of the other
family (``cat /proc/net/tcp /proc/net/tcp6`` is one look at both tables).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tcphealth.errors import ProcParseError
from tcphealth.model import Family, Socket
from tcphealth.sources import procfs

NAME = "proc"
# The most lines a copy may hold before its first header or row: the command that printed it
# (``cat /proc/net/tcp6``, ``watch -n1 "grep 1F90 tcp6"``) or a prompt, as pasted above it.
LEADING_LINES = 3
_ROW = re.compile(r"^\s*(?P<sl>[0-9]{1,9}):\s+(?P<address>[0-9A-Fa-f]+):[0-9A-Fa-f]{4}\s")


def looks_like(first_line: str) -> bool:
    """The first non-blank line of a /proc/net/tcp copy: its header, or a row."""
    words = first_line.split()
    return ("local_address" in words and "st" in words) or _ROW.match(first_line) is not None


def starts_copy(lines: list[str]) -> bool:
    """Whether the first non-blank lines of a text begin a /proc/net/tcp copy: a header or row
    first, or after at most ``LEADING_LINES`` lines (the command pasted above the table)."""
    return any(looks_like(line) for line in lines[: LEADING_LINES + 1])


@dataclass
class CopyCapture:
    sockets: list[Socket] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    first_line: int = 0
    last_line: int = 0


_DEFAULT_HEADER = {
    Family.IPV4: "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
    "  timeout inode",
    Family.IPV6: "  sl  local_address                         remote_address"
    "                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode",
}


def _family_of_row(line: str) -> Family | None:
    match = _ROW.match(line)
    if match is None:
        return None
    return Family.IPV6 if len(match.group("address")) == 32 else Family.IPV4


def parse(lines: Iterable[str], where: str, *, strict: bool = False) -> list[CopyCapture]:
    """Every capture in a /proc/net/tcp{,6} copy, read in one pass over ``lines`` (which may be
    a generator: no line is kept once read). Refuses a UDP table by its header."""
    reader = _CopyReader(where, strict)
    for number, raw in enumerate(lines, start=1):
        reader.add(number, raw)
    return reader.finish()


class _CopyReader:
    """Groups the lines into captures, each of pieces (one per table read), and hands each
    piece's rows to a :class:`procfs.TableReader` as they come."""

    def __init__(self, where: str, strict: bool) -> None:
        self.where = where
        self.strict = strict
        self.captures: list[CopyCapture] = []
        self.capture: CopyCapture | None = None
        self.families: set[Family] = set()  # of the current capture's pieces
        self.table: procfs.TableReader | None = None  # the current piece's
        self.header: str | None = None  # a header line not yet followed by a row
        self.first_header: str | None = None
        self.last_sl = -1
        self.leading = 0  # lines before the first header or row, passed over

    def add(self, number: int, raw: str) -> None:
        line = raw.rstrip("\r\n")
        if not line.strip():
            return
        if (
            self.capture is None
            and not self.captures
            and self.header is None
            and not looks_like(line)
            and self.leading < LEADING_LINES
        ):
            # The command (or prompt) pasted above the table: not part of it.
            self.leading += 1
            return
        words = line.split()
        if "local_address" in words:
            self.header = line
            self.first_header = self.first_header or line
            self._close_piece()
            self.last_sl = -1
            return
        family = _family_of_row(line)
        sl = int(line.split(":", 1)[0]) if family is not None else None
        starts_over = sl is not None and sl <= self.last_sl
        table = self.table
        if table is None or (family is not None and (family is not table.family or starts_over)):
            new_family = family or (table.family if table else Family.IPV4)
            if self.header is None and family is None:
                raise ProcParseError(self.where, "not a /proc/net/tcp table", line=number)
            header = self.header or _DEFAULT_HEADER[new_family]
            self.header = None
            self._close_piece()
            if self.capture is not None and new_family in self.families:
                self.captures.append(self.capture)
                self.capture = None
            if self.capture is None:
                self.capture = CopyCapture(first_line=number)
                self.families = set()
            self.families.add(new_family)
            # A bad header is reported at the line before the piece's first row (its own line,
            # unless blank lines come between).
            procfs.check_header(header, self.where, max(number - 1, 1))
            table = self.table = procfs.TableReader(new_family, self.where, strict=self.strict)
        if sl is not None:
            self.last_sl = sl
        assert self.capture is not None
        self.capture.last_line = max(self.capture.last_line, number)
        table.add(number, line)

    def _close_piece(self) -> None:
        if self.table is None:
            return
        parsed = self.table.finish()
        self.table = None
        assert self.capture is not None
        self.capture.sockets.extend(parsed.sockets)
        self.capture.skipped.extend(parsed.skipped)
        if parsed.duplicates:
            self.capture.notes.append(
                f"{self.where}: {parsed.duplicates} row(s) listed a socket a second time "
                "(the kernel's table changed while it was read); counted once"
            )

    def finish(self) -> list[CopyCapture]:
        self._close_piece()
        if self.capture is not None:
            self.captures.append(self.capture)
        if not self.captures:
            # Headers and no rows: an empty table, once the header is known to be TCP's.
            procfs.parse_table(
                [self.first_header or ""], Family.IPV4, self.where, strict=self.strict
            )
            self.captures.append(CopyCapture())
        return self.captures
