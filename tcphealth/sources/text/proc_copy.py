"""A copy of /proc/net/tcp or /proc/net/tcp6 pasted as text: one capture or several.

The rows are read by :func:`tcphealth.sources.procfs.parse_table`; this module only finds the
pieces. The family comes from the address width (8 hex digits IPv4, 32 IPv6). A new capture
starts where the header repeats or ``sl`` restarts at 0 -- unless the piece is of the other
family (``cat /proc/net/tcp /proc/net/tcp6`` is one look at both tables).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tcphealth.errors import ProcParseError
from tcphealth.model import Family, Socket
from tcphealth.sources import procfs

NAME = "proc"
_ROW = re.compile(r"^\s*(?P<sl>[0-9]{1,9}):\s+(?P<address>[0-9A-Fa-f]+):[0-9A-Fa-f]{4}\s")


def looks_like(first_line: str) -> bool:
    """The first non-blank line of a /proc/net/tcp copy: its header, or a row."""
    words = first_line.split()
    return ("local_address" in words and "st" in words) or _ROW.match(first_line) is not None


@dataclass
class Piece:
    family: Family
    header: str
    lines: list[tuple[int, str]] = field(default_factory=list)  # (line number, text)


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


def split_pieces(lines: list[str], where: str) -> list[list[Piece]]:
    """Group the lines into captures, each a list of pieces (one per table read)."""
    captures: list[list[Piece]] = []
    current: list[Piece] = []
    piece: Piece | None = None
    header: str | None = None
    last_sl = -1
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        words = line.split()
        if "local_address" in words:
            header = line
            piece = None
            last_sl = -1
            continue
        family = _family_of_row(line)
        sl = int(line.split(":", 1)[0]) if family is not None else None
        starts_over = sl is not None and sl <= last_sl
        if piece is None or (family is not None and (family is not piece.family or starts_over)):
            new_family = family or (piece.family if piece else Family.IPV4)
            if header is None and family is None:
                raise ProcParseError(where, "not a /proc/net/tcp table", line=number)
            piece = Piece(new_family, header or _DEFAULT_HEADER[new_family])
            header = None
            same_family_seen = any(p.family is new_family for p in current)
            if current and same_family_seen:
                captures.append(current)
                current = []
            current.append(piece)
        if sl is not None:
            last_sl = sl
        piece.lines.append((number, line))
    if current:
        captures.append(current)
    return captures


def parse(lines: list[str], where: str, *, strict: bool = False) -> list[CopyCapture]:
    """Every capture in a /proc/net/tcp{,6} copy. Refuses a UDP table by its header."""
    captures: list[CopyCapture] = []
    for pieces in split_pieces(lines, where):
        capture = CopyCapture()
        for piece in pieces:
            numbers = [number for number, _ in piece.lines]
            capture.first_line = capture.first_line or numbers[0]
            capture.last_line = max(capture.last_line, numbers[-1])
            table = [piece.header, *(text for _, text in piece.lines)]
            try:
                parsed = procfs.parse_table(table, piece.family, where, strict=strict)
            except ProcParseError as error:
                # parse_table counts lines from its own header: point at the file's line.
                line = error.line
                if line is not None and line >= 2:
                    line = numbers[line - 2]
                elif line is not None:
                    line = max(numbers[0] - 1, 1)
                raise ProcParseError(where, error.problem, line=line) from None
            capture.sockets.extend(parsed.sockets)
            for position, reason in parsed.skipped:
                capture.skipped.append((numbers[position - 2], reason))
            if parsed.duplicates:
                capture.notes.append(
                    f"{where}: {parsed.duplicates} row(s) listed a socket a second time "
                    "(the kernel's table changed while it was read); counted once"
                )
        captures.append(capture)
    return captures
