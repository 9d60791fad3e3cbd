"""Tell what a file holds from its first lines: a tcphealth snapshot, a /proc/net/tcp copy, or
the text of ss/netstat runs (whose rows the paste reader recognises one by one)."""

from __future__ import annotations

from tcphealth.sources.text import proc_copy

SNAPSHOT = "snapshot"
PROC = "proc"
TEXT = "text"


def detect(text: str) -> str:
    """``snapshot``, ``proc`` or ``text``.

    >>> detect('{"format": "tcphealth.snapshot"}')
    'snapshot'
    >>> detect("  sl  local_address rem_address   st tx_queue rx_queue")
    'proc'
    >>> detect("State  Recv-Q Send-Q Local Address:Port Peer Address:Port")
    'text'
    """
    body = text.lstrip("\ufeff \t\r\n")
    if body.startswith("{"):
        return SNAPSHOT
    first_line = body.split("\n", 1)[0]
    if proc_copy.looks_like(first_line):
        return PROC
    return TEXT
