"""``lsof -i`` output: one line per open descriptor of a network socket.

::

    COMMAND  PID  USER FD  TYPE DEVICE SIZE/OFF NODE NAME
    homed    485 moritz 19u IPv4 0x23e9f3 0t0 TCP fitz.haus:49182->hue.haus:8080 (ESTABLISHED)
    node    4981 james   8u IPv4 825503     0t0 TCP 127.0.0.1:53629->127.0.0.1:3306 (CLOSE_WAIT)
    nginx    911 root    6u IPv6 21402      0t0 TCP *:80 (LISTEN)

Every row names its holder (COMMAND and PID), so a socket two processes share is two rows;
lsof on Linux adds a TID column with ``-K`` or by default on some builds, which is passed over.
Without ``-n``/``-P`` hosts and ports are names (kept as such). lsof shows no queues, timers
or states of sockets nobody holds (TIME_WAIT): those are unknown, not absent.
"""

from __future__ import annotations

import re

from tcphealth.model import Family, IPAddress
from tcphealth.sources.text.lines import (
    Holder,
    NotTcp,
    Row,
    RowError,
    endpoints,
    read_host,
    read_port,
    split_colon_endpoint,
    state_word,
)
from tcphealth.sources.text.parser import Context, RowParser

_TYPES = frozenset({"IPv4", "IPv6"})
_STATE = re.compile(r"\(\s*(?P<state>[A-Z_][A-Z_ ]*[A-Z0-9_])\s*\)\s*$")


def is_header(line: str) -> bool:
    words = line.split()
    return len(words) >= 8 and words[:2] == ["COMMAND", "PID"] and words[-1] == "NAME"


def _tokens(tokens: list[str]) -> list[str]:
    """A row as quoted in a thread (``> java 22664 ...``) is still the row."""
    return tokens[1:] if tokens[:1] == [">"] else tokens


def _proto_index(tokens: list[str]) -> int | None:
    """Where the protocol (TCP/UDP) stands: after a TYPE of IPv4/IPv6 and DEVICE, SIZE/OFF."""
    for index in range(4, min(len(tokens), 10)):
        if tokens[index] in _TYPES and index + 3 < len(tokens):
            for proto in range(index + 2, min(index + 5, len(tokens))):
                if tokens[proto] in ("TCP", "UDP"):
                    return proto
            return None
    return None


def looks_like_row(tokens: list[str]) -> bool:
    tokens = _tokens(tokens)
    if len(tokens) < 8 or not tokens[1].isdigit():
        return False
    proto = _proto_index(tokens)
    return proto is not None and proto + 1 < len(tokens) and ":" in tokens[proto + 1]


def read_row(line: str, context: Context) -> Row:
    return parse_row(line)


def parse_row(line: str) -> Row:
    tokens = _tokens(line.split())
    proto = _proto_index(tokens)
    if proto is None or len(tokens) < 2 or not tokens[1].isdigit():
        raise RowError("not an lsof row (COMMAND PID ... IPv4/IPv6 ... TCP NAME)")
    if tokens[proto] != "TCP":
        raise NotTcp(tokens[proto])
    family_type = next(word for word in tokens[4:proto] if word in _TYPES)
    family = Family.IPV6 if family_type == "IPv6" else Family.IPV4
    name = tokens[proto + 1]
    rest = " ".join(tokens[proto + 2 :])
    found = _STATE.search(rest)
    if found is None:
        raise RowError("no (STATE) after the socket's name (was lsof run with -i?)")
    raw_state = found.group("state").replace(" ", "")  # a paste split "(CLOSE _WAIT)"
    state = state_word(raw_state)
    if state is None:
        raise RowError(f"{raw_state!r} is not a TCP state")
    local_text, arrow, remote_text = name.partition("->")
    local_host, local_port = split_colon_endpoint(local_text)
    remote: tuple[IPAddress | str | None, int | None] = (None, None)
    if arrow:
        remote_host, remote_port = split_colon_endpoint(remote_text)
        remote = (read_host(remote_host), read_port(remote_port))
    family, local, peer = endpoints((read_host(local_host), read_port(local_port)), remote, family)
    pid = int(tokens[1])
    return Row(
        family=family,
        local=local,
        remote=peer,
        state=state,
        holders=[Holder(pid, tokens[0])],
        raw_state=found.group("state"),
    )


PARSER = RowParser(
    is_header=is_header,
    looks_like_row=looks_like_row,
    read_row=read_row,
)
