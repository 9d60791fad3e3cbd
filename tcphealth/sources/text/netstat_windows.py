"""Windows ``netstat -an``, ``-ano`` and ``-anob`` output (CRLF line ends are fine).

::

    Active Connections

      Proto  Local Address          Foreign Address        State           PID
      TCP    0.0.0.0:135            0.0.0.0:0              LISTENING       1712
      RpcSs
     [svchost.exe]
      TCP    [::]:445               [::]:0                 LISTENING       4
     Can not obtain ownership information
      TCP    192.168.31.221:4604    82.102.152.152:443     CLOSE_WAIT      27568
     [SearchApp.exe]

IPv6 addresses are in brackets (with a ``%zone``). ``-o`` adds the PID column; PID 0 is the
idle process, which Windows shows for TIME_WAIT: nobody holds those. ``-b`` adds lines under a
row: a service name, the executable in brackets, or a message that the owner is not readable.
Windows shows no queues, timers, uids or inodes: all unknown.
"""

from __future__ import annotations

from tcphealth.model import Family
from tcphealth.sources.text.lines import (
    Holder,
    NotTcp,
    Row,
    RowError,
    endpoints,
    parse_count,
    read_host,
    read_port,
    split_colon_endpoint,
    state_word,
)
from tcphealth.sources.text.parser import Context, RowParser

PROTOS = frozenset({"TCP", "UDP", "TCPv6", "UDPv6"})
NO_OWNER_MESSAGES = ("Can not obtain ownership information", "Cannot obtain ownership information")


def is_header(line: str) -> bool:
    words = line.split()
    return (
        len(words) >= 4
        and words[0] == "Proto"
        and "Local" in words
        and "Foreign" in words
        and "Recv-Q" not in words
    )


def header_has_pid(line: str) -> bool:
    return "PID" in line.split()


def looks_like_row(tokens: list[str]) -> bool:
    return len(tokens) >= 3 and tokens[0] in PROTOS and ":" in tokens[1]


def read_row(line: str, context: Context) -> Row:
    row = parse_row(line)
    header = context.header
    if header is not None and not header_has_pid(header):
        row.holders = None  # a number after the state is no PID without -o
    return row


def parse_row(line: str) -> Row:
    tokens = line.split()
    if not tokens or tokens[0] not in PROTOS:
        raise RowError("no TCP or UDP in the Proto column")
    if tokens[0].startswith("UDP"):
        raise NotTcp(tokens[0])
    if len(tokens) < 4:
        raise RowError(f"{len(tokens)} columns, at least 4 expected")
    local_host, local_port = split_colon_endpoint(tokens[1])
    remote_host, remote_port = split_colon_endpoint(tokens[2])
    family, local, remote = endpoints(
        (read_host(local_host), read_port(local_port)),
        (read_host(remote_host), read_port(remote_port)),
        Family.IPV6 if tokens[0] == "TCPv6" else None,
    )
    raw_state = tokens[3]
    state = state_word(raw_state)
    if state is None:
        raise RowError(f"{raw_state!r} is not a TCP state (a localised Windows?)")
    row = Row(family=family, local=local, remote=remote, state=state)
    if len(tokens) >= 5:
        pid = parse_count(tokens[4], "PID")
        row.holders = [] if pid == 0 else [Holder(pid)]
    if len(tokens) > 5:
        raise RowError(f"{len(tokens)} columns, at most 5 expected")
    return row


def is_continuation(line: str) -> bool:
    """A ``-b`` line under a row: `` [exe]``, a service name, or the no-owner message."""
    stripped = line.strip()
    if not line[:1].isspace() or not stripped:
        return False
    tokens = stripped.split()
    if looks_like_row(tokens):
        return False
    return (
        (stripped.startswith("[") and stripped.endswith("]"))
        or stripped in NO_OWNER_MESSAGES
        or len(tokens) == 1
    )


def read_continuation(line: str, row: Row) -> Row:
    stripped = line.strip()
    if stripped.startswith("[") and stripped.endswith("]") and row.holders:
        row.holders = [Holder(holder.pid, stripped[1:-1] or None) for holder in row.holders]
    # Any other line under a row (a service's name, "Can not obtain ownership information")
    # says nothing a socket keeps: passed over.
    return row


PARSER = RowParser(
    is_header=is_header,
    looks_like_row=looks_like_row,
    read_row=read_row,
    is_continuation=is_continuation,
    read_continuation=read_continuation,
    titles=("Active Connections",),
)
