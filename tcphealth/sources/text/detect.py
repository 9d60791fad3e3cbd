"""Tell what a file holds from its first lines: a tcphealth snapshot, a /proc/net/tcp copy, or
the text of ss/netstat runs (whose rows the paste reader recognises one by one)."""

from __future__ import annotations

import re

from tcphealth.sources.text import proc_copy

_FIRST_CHARACTER = re.compile(r"[^\ufeff \t\r\n]")

SNAPSHOT = "snapshot"
# How lsof -J's document and lsof -j's lines begin (lsof 4.99.7's src/print.c).
LSOF_JSON = ('{"lsof_version":', '{"pid":')
PROC = "proc"
TEXT = "text"


def detect(text: str) -> str:
    """``snapshot``, ``proc`` or ``text``. A /proc copy may have the command that printed it
    above it (:func:`proc_copy.starts_copy`).

    >>> detect('{"format": "tcphealth.snapshot"}')
    'snapshot'
    >>> detect("  sl  local_address rem_address   st tx_queue rx_queue")
    'proc'
    >>> detect("State  Recv-Q Send-Q Local Address:Port Peer Address:Port")
    'text'
    """
    # Found by position, not by lstrip() and split(): those would copy the whole text (up to
    # 256 MiB) to look at one line.
    first = _FIRST_CHARACTER.search(text)
    if first is None:
        return TEXT
    start = first.start()
    if text.startswith(LSOF_JSON, start):
        return TEXT  # lsof -J / -j: read as a paste, line by line
    if text.startswith("{", start):
        return SNAPSHOT
    if proc_copy.starts_copy(_first_lines(text, start, proc_copy.LEADING_LINES + 1)):
        return PROC
    return TEXT


def _first_lines(text: str, start: int, count: int) -> list[str]:
    """Up to ``count`` non-blank lines of ``text`` from ``start``, found by position."""
    lines: list[str] = []
    while len(lines) < count and start < len(text):
        end = text.find("\n", start)
        line = text[start:] if end < 0 else text[start:end]
        if line.strip():
            lines.append(line)
        if end < 0:
            break
        start = end + 1
    return lines
